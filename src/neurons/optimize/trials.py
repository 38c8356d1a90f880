"""One trial: an evaluation set run on one node with one set of options, measured.

Every case is a streamed ``/api/generate`` with the trial's options (``num_predict`` capped by
the case's ``max_tokens``), so the time to the first token is seen, not guessed:

- **latency**: ``ttft_ms`` and ``total_ms`` per prompt, wall time at the client minus the
  node's ``load_duration`` (options such as ``num_ctx`` reload the model, once per trial; that
  cost is paid once per deployment, not per request, so it would only add noise);
- **throughput**: ``eval_count / eval_duration`` summed over the prompts, the node's own
  decode metrics (prompt processing excluded, as ``ollama run --verbose`` reports "eval rate");
- **memory**: the model's ``size`` in the node's ``/api/ps`` once the trial's options are
  loaded (weights + KV cache for its ``num_ctx`` on an embedded neuron; Ollama reports the
  same), else the estimator's figure when the caller has one;
- **quality**: each answer scored against the case's reference (``scoring.score``).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from neurons.client import error_message
from neurons.errors import NodeError, NodeUnreachableError
from neurons.ollama.names import canonical_name
from neurons.optimize.evalsets import EvalCase
from neurons.optimize.objectives import TrialMetrics
from neurons.optimize.scoring import Embedder, score

__all__ = ["DEFAULT_NUM_PREDICT", "CaseResult", "TrialEvaluator", "aggregate", "request_options"]

DEFAULT_NUM_PREDICT = 512


@dataclass(frozen=True)
class CaseResult:
    """One prompt's answer, score and timings (milliseconds, load time excluded)."""

    case_id: str
    answer: str
    score: float
    ttft_ms: float
    total_ms: float
    eval_count: int
    eval_duration_ns: int
    load_ms: float
    seed: int | None = None  # the sampling seed the request sent

    def to_dict(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "score": round(self.score, 4),
            "ttft_ms": round(self.ttft_ms, 2),
            "total_ms": round(self.total_ms, 2),
            "eval_count": self.eval_count,
            "seed": self.seed,
            "answer": self.answer[:200],
        }


def aggregate(results: Sequence[CaseResult], memory_bytes: int) -> TrialMetrics:
    """The trial's metrics over ``results`` (means per prompt; throughput over all tokens)."""
    if not results:
        raise ValueError("no case results to aggregate")
    count = len(results)
    tokens = sum(r.eval_count for r in results)
    seconds = sum(r.eval_duration_ns for r in results) / 1e9
    return TrialMetrics(
        quality=min(1.0, max(0.0, math.fsum(r.score for r in results) / count)),
        ttft_ms=math.fsum(r.ttft_ms for r in results) / count,
        total_ms=math.fsum(r.total_ms for r in results) / count,
        tokens_per_s=tokens / seconds if seconds > 0 else 0.0,
        memory_bytes=max(0, int(memory_bytes)),
    )


def request_options(options: Mapping[str, Any], case: EvalCase) -> dict[str, Any]:
    """The trial's options for ``case``: its ``max_tokens`` caps ``num_predict``; with
    neither, :data:`DEFAULT_NUM_PREDICT` does (Ollama's -1 lets a rambling configuration
    generate until the context is full, and one trial would take minutes)."""
    merged = dict(options)
    if case.max_tokens is None and merged.get("num_predict") is None:
        merged["num_predict"] = DEFAULT_NUM_PREDICT
    if case.max_tokens is not None:
        current = merged.get("num_predict")
        limit = case.max_tokens if current is None else min(int(current), case.max_tokens)
        merged["num_predict"] = limit
    return merged


class TrialEvaluator:
    """Runs cases of ``model`` on the node at ``url`` (an Ollama-API base URL)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        url: str,
        model: str,
        *,
        node: str | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        self._http = http
        self.url = url.rstrip("/")
        self.model = model
        self.node = node or url
        self._embedder = embedder

    async def run_case(self, case: EvalCase, options: Mapping[str, Any]) -> CaseResult:
        """Stream one generation and score it. Raises :class:`NodeError` when the node
        answers with an error, :class:`NodeUnreachableError` when it cannot be reached."""
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": case.prompt,
            "options": request_options(options, case),
            "stream": True,
        }
        if case.system is not None:
            body["system"] = case.system
        parts: list[str] = []
        final: dict[str, Any] = {}
        first: float | None = None
        start = time.perf_counter()
        try:
            async with self._http.stream("POST", self.url + "/api/generate", json=body) as resp:
                if resp.status_code != 200:
                    raw = await resp.aread()
                    raise NodeError(
                        f"node {self.node}: " + error_message(raw, f"HTTP {resp.status_code}")
                    )
                async for line in resp.aiter_lines():
                    if not line.strip():
                        continue
                    chunk = json.loads(line)
                    if "error" in chunk:
                        raise NodeError(f"node {self.node}: {chunk['error']}")
                    text = chunk.get("response") or ""
                    if text and first is None:
                        first = time.perf_counter()
                    parts.append(text)
                    if chunk.get("done"):
                        final = chunk
        except httpx.TransportError as exc:
            raise NodeUnreachableError(f"node {self.node} at {self.url}: {exc}") from exc
        end = time.perf_counter()
        load_ms = float(final.get("load_duration") or 0) / 1e6
        total_ms = max(0.0, (end - start) * 1000 - load_ms)
        ttft_ms = total_ms if first is None else max(0.0, (first - start) * 1000 - load_ms)
        answer = "".join(parts)
        seed = options.get("seed")
        seed = seed if isinstance(seed, int) else None
        # Embedding similarity runs a model on the CPU: keep it off the event loop.
        quality = await asyncio.to_thread(score, case, answer, self._embedder)
        return CaseResult(
            case_id=case.id,
            answer=answer,
            score=quality,
            ttft_ms=ttft_ms,
            total_ms=total_ms,
            eval_count=int(final.get("eval_count") or 0),
            eval_duration_ns=int(final.get("eval_duration") or 0),
            load_ms=load_ms,
            seed=seed,
        )

    async def loaded_size(self) -> int | None:
        """The model's size in the node's ``/api/ps`` (bytes), None when it is not loaded."""
        try:
            response = await self._http.get(self.url + "/api/ps", timeout=10.0)
        except httpx.TransportError as exc:
            raise NodeUnreachableError(f"node {self.node} at {self.url}: {exc}") from exc
        if response.status_code != 200:
            return None
        wanted = canonical_name(self.model)
        for entry in response.json().get("models") or []:
            name = entry.get("name") or entry.get("model") or ""
            if canonical_name(name) == wanted and isinstance(entry.get("size"), int):
                return int(entry["size"])
        return None
