"""The seed's five objectives: what a trial's measurements are optimised for, and how they are
reported as one ``overall_score``.

Optuna optimises the raw values (:func:`values` in :func:`directions`); the score is only for
people and for ranking sessions, so it must be bounded and monotonic, not comparable across
objectives.

**overall_score** (always in ``[0, 1]``, higher is better). With ``b`` the baseline's value
(the session's first trial, Ollama's defaults) or, without a usable baseline, the reference
scale in ``REFERENCE`` (1 s total latency, 1 GiB, 20 tokens/s):

- ``maximize_quality``: ``quality`` itself (already ``0..1``).
- ``minimize_latency``: ``b / (b + total_ms)``; ``minimize_memory``: ``b / (b + memory_bytes)``.
- ``maximize_throughput``: ``tokens_per_s / (tokens_per_s + b)``.
- ``balance_quality_speed``: ``0.7 * quality + 0.3 * throughput score`` (quality dominates so
  that a fast configuration producing wrong answers never wins).

The ratio scores are 0.5 at the baseline, tend to 1 for a perfect (instant, free, infinitely
fast) configuration and to 0 for a hopeless one, and are strictly monotonic in between, unlike
a clipped ``baseline / value`` that saturates at the first improvement.

**knee point** of a ``balance_quality_speed`` Pareto front: both axes are min-max normalised over
the front (an axis on which all points are equal counts as 1), and the point at the smallest
Euclidean distance to the ideal ``(1, 1)`` wins; ties go to higher quality, then the earlier
point. It is the compromise nearest "best at both", and insensitive to units.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from optuna.study import StudyDirection

from neurons.errors import InvalidRequestError

__all__ = [
    "OBJECTIVES",
    "QUALITY_WEIGHT",
    "REFERENCE",
    "Objective",
    "TrialMetrics",
    "directions",
    "is_multi_objective",
    "knee_point",
    "overall_score",
    "pareto_front",
    "values",
]

Objective = Literal[
    "maximize_quality",
    "minimize_latency",
    "minimize_memory",
    "balance_quality_speed",
    "maximize_throughput",
]
OBJECTIVES: tuple[str, ...] = (
    "maximize_quality",
    "minimize_latency",
    "minimize_memory",
    "balance_quality_speed",
    "maximize_throughput",
)
QUALITY_WEIGHT = 0.7
# Scales used when there is no baseline (or its value is 0): total_ms, memory_bytes, tokens/s.
REFERENCE: dict[str, float] = {
    "total_ms": 1000.0,
    "memory_bytes": float(1 << 30),
    "tokens_per_s": 20.0,
}

_MAX, _MIN = StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE
_DIRECTIONS: dict[str, tuple[StudyDirection, ...]] = {
    "maximize_quality": (_MAX,),
    "minimize_latency": (_MIN,),
    "minimize_memory": (_MIN,),
    "balance_quality_speed": (_MAX, _MAX),
    "maximize_throughput": (_MAX,),
}


@dataclass(frozen=True)
class TrialMetrics:
    """What one trial measured: reference-based quality in ``0..1``, time to first token and
    total time in milliseconds, eval tokens per second, and memory in bytes."""

    quality: float
    ttft_ms: float
    total_ms: float
    tokens_per_s: float
    memory_bytes: int

    def __post_init__(self) -> None:
        if not 0.0 <= self.quality <= 1.0:
            raise InvalidRequestError(f"quality must be within 0..1, got {self.quality}")
        for name in ("ttft_ms", "total_ms", "tokens_per_s", "memory_bytes"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise InvalidRequestError(f"{name} must be a finite number >= 0, got {value}")


def _check(objective: str) -> str:
    if objective not in _DIRECTIONS:
        raise InvalidRequestError(
            f"unknown objective '{objective}'; valid: {', '.join(OBJECTIVES)}"
        )
    return objective


def directions(objective: str) -> list[StudyDirection]:
    """The ``directions=`` of the Optuna study for ``objective``."""
    return list(_DIRECTIONS[_check(objective)])


def is_multi_objective(objective: str) -> bool:
    """Multi-objective studies cannot report intermediate values, so they are never pruned."""
    return len(_DIRECTIONS[_check(objective)]) > 1


def values(objective: str, metrics: TrialMetrics) -> float | tuple[float, float]:
    """What the trial returns to Optuna: one value, or (quality, tokens/s) for the balance."""
    objective = _check(objective)
    if objective == "maximize_quality":
        return metrics.quality
    if objective == "minimize_latency":
        return metrics.total_ms
    if objective == "minimize_memory":
        return float(metrics.memory_bytes)
    if objective == "maximize_throughput":
        return metrics.tokens_per_s
    return (metrics.quality, metrics.tokens_per_s)


def _scale(field: str, baseline: TrialMetrics | None) -> float:
    value = float(getattr(baseline, field)) if baseline is not None else 0.0
    return value if value > 0 else REFERENCE[field]


def _lower_is_better(value: float, scale: float) -> float:
    return scale / (scale + value)


def _higher_is_better(value: float, scale: float) -> float:
    return value / (value + scale)


def overall_score(
    objective: str, metrics: TrialMetrics, baseline: TrialMetrics | None = None
) -> float:
    """``metrics`` as one number in ``[0, 1]``, defined in the module docstring."""
    objective = _check(objective)
    if objective == "maximize_quality":
        return metrics.quality
    if objective == "minimize_latency":
        return _lower_is_better(metrics.total_ms, _scale("total_ms", baseline))
    if objective == "minimize_memory":
        return _lower_is_better(metrics.memory_bytes, _scale("memory_bytes", baseline))
    speed = _higher_is_better(metrics.tokens_per_s, _scale("tokens_per_s", baseline))
    if objective == "maximize_throughput":
        return speed
    return QUALITY_WEIGHT * metrics.quality + (1 - QUALITY_WEIGHT) * speed


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(x >= y for x, y in zip(a, b, strict=True)) and any(
        x > y for x, y in zip(a, b, strict=True)
    )


def pareto_front(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices (in input order) of the points no other point dominates, all axes maximised.
    Equal points are all kept."""
    return [
        i
        for i, point in enumerate(points)
        if not any(_dominates(other, point) for j, other in enumerate(points) if j != i)
    ]


def knee_point(front: Sequence[tuple[float, float]]) -> int:
    """Index of the knee of a (quality, speed) maximise/maximise front; see the module
    docstring. Raises ``ValueError`` for an empty front."""
    if not front:
        raise ValueError("knee_point needs at least one point")

    def normalise(axis: int) -> list[float]:
        column = [p[axis] for p in front]
        low, high = min(column), max(column)
        return [1.0 if high == low else (v - low) / (high - low) for v in column]

    qualities, speeds = normalise(0), normalise(1)

    def rank(i: int) -> tuple[float, float, int]:
        distance = math.hypot(1.0 - qualities[i], 1.0 - speeds[i])
        return (round(distance, 12), -front[i][0], i)

    return min(range(len(front)), key=rank)
