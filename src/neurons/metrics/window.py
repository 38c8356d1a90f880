"""The last few minutes of inference, second by second: what the dashboard's live charts and
``neurons top`` draw (requests/s, error rate, tokens/s, p50/p95 latency).

Prometheus histograms answer "how many under 0.5 s since start"; a live chart needs rates and
percentiles over a sliding window, which a scrape-less client cannot derive from them. So the
recorder also keeps one small bucket per second for ``span_s`` seconds. Each bucket keeps at
most ``SAMPLES`` latencies, chosen by reservoir sampling, so a burst costs bounded memory and
the percentiles stay fair.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SAMPLES", "RecentWindow", "percentile"]

SAMPLES = 256  # latencies kept per second: enough for a p95 that moves smoothly


@dataclass
class _Second:
    requests: int = 0
    errors: int = 0
    tokens: int = 0
    timed: int = 0  # latencies offered, kept or not
    latencies: list[float] = field(default_factory=list)

    def add_latency(self, latency_s: float, rng: random.Random) -> None:
        self.timed += 1
        if len(self.latencies) < SAMPLES:
            self.latencies.append(latency_s)
        else:  # reservoir sampling: each latency offered stays with equal chance
            slot = rng.randrange(self.timed)
            if slot < SAMPLES:
                self.latencies[slot] = latency_s


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) by the nearest-rank rule; None for no values.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 0.5), percentile([1.0, 2.0, 3.0, 4.0], 0.95)
    (2.0, 4.0)
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


class RecentWindow:
    """Per-second counts of finished inferences over the last ``span_s`` seconds.

    ``add`` takes the time (epoch seconds) from the caller, so tests and the recorder agree on
    the clock; seconds with no request are simply absent and read as zero."""

    def __init__(self, span_s: int = 900, *, seed: int = 0) -> None:
        self.span_s = span_s
        self._seconds: dict[int, _Second] = {}
        self._rng = random.Random(seed)

    def add(self, now: float, latency_s: float | None, *, error: bool, tokens: int) -> None:
        second = int(now)
        bucket = self._seconds.get(second)
        if bucket is None:
            bucket = self._seconds[second] = _Second()
            self._forget(second)
        bucket.requests += 1
        bucket.tokens += max(0, tokens)
        if error:
            bucket.errors += 1
        elif latency_s is not None:
            bucket.add_latency(latency_s, self._rng)

    def _forget(self, second: int) -> None:
        oldest = second - self.span_s
        for old in [s for s in self._seconds if s <= oldest]:
            del self._seconds[old]

    def stats(self, start: float, end: float) -> dict[str, Any]:
        """Rates and latency percentiles of the seconds in ``[start, end)``."""
        requests = errors = tokens = 0
        latencies: list[float] = []
        for second in range(int(start), int(math.ceil(end))):
            bucket = self._seconds.get(second)
            if bucket is None:
                continue
            requests += bucket.requests
            errors += bucket.errors
            tokens += bucket.tokens
            latencies.extend(bucket.latencies)
        span = max(end - start, 1e-9)
        p50, p95 = percentile(latencies, 0.5), percentile(latencies, 0.95)
        return {
            "requests": requests,
            "errors": errors,
            "tokens": tokens,
            "requests_per_s": round(requests / span, 4),
            "error_rate": round(errors / requests, 4) if requests else 0.0,
            "tokens_per_s": round(tokens / span, 4),
            "p50_ms": None if p50 is None else round(p50 * 1000, 3),
            "p95_ms": None if p95 is None else round(p95 * 1000, 3),
        }

    def series(self, now: float, window_s: int, step_s: int) -> list[dict[str, Any]]:
        """One point per ``step_s`` over the last ``window_s`` seconds, oldest first; the last
        step ends at the current second (included)."""
        end = int(now) + 1
        steps = max(1, window_s // step_s)
        points = []
        for index in range(steps, 0, -1):
            stop = end - (index - 1) * step_s
            stats = self.stats(stop - step_s, stop)
            points.append({"t": stop - step_s, **_rates(stats)})
        return points


def _rates(stats: dict[str, Any]) -> dict[str, Any]:
    return {
        k: stats[k] for k in ("requests_per_s", "error_rate", "tokens_per_s", "p50_ms", "p95_ms")
    }
