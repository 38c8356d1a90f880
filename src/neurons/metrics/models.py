"""Seed 001's ``ModelMetrics``: per model and per node, how many inferences, how many failed,
their average latency, plus the throughput and the model's version (its digest).

Kept in memory by the control plane that routed the requests, since it started: a second
control plane keeps its own (the Prometheus counters, which a scraper sums, are the
network-wide view).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ModelMetrics", "ModelMetricsBook"]


@dataclass
class ModelMetrics:
    """The seed's three fields, and what a dashboard needs beside them.

    ``average_latency`` is the mean end-to-end time of the successful inferences, in seconds
    (a refused connection's millisecond would flatter it). ``tokens_per_s`` is the generated
    tokens over the time the node spent generating them, as the node measured it."""

    inference_count: int = 0
    average_latency: float = 0.0
    error_count: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    eval_seconds: float = 0.0
    last_used_at: float | None = None  # epoch seconds
    _timed: int = field(default=0, repr=False)

    def record(
        self,
        now: float,
        latency_s: float | None,
        *,
        error: bool,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        eval_s: float = 0.0,
    ) -> None:
        self.inference_count += 1
        self.last_used_at = now
        if error:
            self.error_count += 1
            return
        if latency_s is not None:
            self._timed += 1
            self.average_latency += (latency_s - self.average_latency) / self._timed
        self.prompt_tokens += max(0, prompt_tokens)
        self.completion_tokens += max(0, completion_tokens)
        self.eval_seconds += max(0.0, eval_s)

    @property
    def tokens_per_s(self) -> float | None:
        if self.eval_seconds <= 0:
            return None
        return self.completion_tokens / self.eval_seconds

    def merge(self, other: ModelMetrics) -> None:
        """Add ``other`` in (a model's total over its nodes)."""
        timed = self._timed + other._timed
        if timed:
            self.average_latency = (
                self.average_latency * self._timed + other.average_latency * other._timed
            ) / timed
        self._timed = timed
        self.inference_count += other.inference_count
        self.error_count += other.error_count
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.eval_seconds += other.eval_seconds
        if other.last_used_at is not None:
            self.last_used_at = max(self.last_used_at or 0.0, other.last_used_at)

    def to_dict(self) -> dict[str, Any]:
        rate = self.tokens_per_s
        return {
            "inference_count": self.inference_count,
            "error_count": self.error_count,
            "average_latency": round(self.average_latency, 6),
            "tokens_per_s": None if rate is None else round(rate, 3),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "last_used_at": self.last_used_at,
        }


class ModelMetricsBook:
    """ModelMetrics by (model, node)."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], ModelMetrics] = {}

    def of(self, model: str, node: str) -> ModelMetrics:
        entry = self.entries.get((model, node))
        if entry is None:
            entry = self.entries[(model, node)] = ModelMetrics()
        return entry

    def report(self, digest_of: Any = None, model: str | None = None) -> list[dict[str, Any]]:
        """Per model (sorted by name): the total and one entry per node. ``digest_of(node,
        model)`` gives the digest the node lists for the model, its version."""
        by_model: dict[str, list[tuple[str, ModelMetrics]]] = {}
        for (name, node), entry in sorted(self.entries.items()):
            if model is None or name == model:
                by_model.setdefault(name, []).append((node, entry))
        report = []
        for name, nodes in by_model.items():
            total = ModelMetrics()
            rows = []
            for node, entry in nodes:
                total.merge(entry)
                digest = digest_of(node, name) if digest_of is not None else None
                rows.append({"node": node, "digest": digest, **entry.to_dict()})
            digests = sorted({r["digest"] for r in rows if r["digest"]})
            report.append({"model": name, **total.to_dict(), "digests": digests, "nodes": rows})
        return report
