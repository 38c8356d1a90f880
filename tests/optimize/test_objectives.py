from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from optuna.study import StudyDirection

from neurons.errors import InvalidRequestError
from neurons.optimize.objectives import (
    OBJECTIVES,
    TrialMetrics,
    directions,
    is_multi_objective,
    knee_point,
    overall_score,
    pareto_front,
    values,
)

MAX, MIN = StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE
METRICS = TrialMetrics(quality=0.6, ttft_ms=120.0, total_ms=900.0, tokens_per_s=30.0,
                       memory_bytes=2 << 30)  # fmt: skip
BASELINE = TrialMetrics(quality=0.5, ttft_ms=200.0, total_ms=1800.0, tokens_per_s=15.0,
                        memory_bytes=4 << 30)  # fmt: skip


def metrics(**changes: Any) -> TrialMetrics:
    return dataclasses.replace(METRICS, **changes)


@pytest.mark.parametrize(
    ("objective", "expected_directions", "expected_values"),
    [
        ("maximize_quality", [MAX], 0.6),
        ("minimize_latency", [MIN], 900.0),
        ("minimize_memory", [MIN], float(2 << 30)),
        ("maximize_throughput", [MAX], 30.0),
        ("balance_quality_speed", [MAX, MAX], (0.6, 30.0)),
    ],
)
def test_directions_and_values(
    objective: str, expected_directions: list[StudyDirection], expected_values: object
) -> None:
    assert directions(objective) == expected_directions
    assert values(objective, METRICS) == expected_values
    assert is_multi_objective(objective) == (len(expected_directions) > 1)


@pytest.mark.parametrize("function", [directions, is_multi_objective])
def test_unknown_objective_lists_the_valid_ones(function: Callable[[str], object]) -> None:
    with pytest.raises(InvalidRequestError, match="maximize_quality, minimize_latency"):
        function("fastest")
    with pytest.raises(InvalidRequestError, match="unknown objective"):
        overall_score("fastest", METRICS)


@pytest.mark.parametrize(
    "changes",
    [{"quality": 1.5}, {"quality": -0.1}, {"total_ms": -1.0}, {"tokens_per_s": float("nan")}],
)
def test_trial_metrics_are_validated(changes: dict[str, float]) -> None:
    with pytest.raises(InvalidRequestError):
        metrics(**changes)


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("baseline", [None, BASELINE])
def test_overall_score_is_bounded(objective: str, baseline: TrialMetrics | None) -> None:
    extremes = [
        metrics(quality=0.0, total_ms=0.0, tokens_per_s=0.0, memory_bytes=0),
        metrics(quality=1.0, total_ms=1e12, tokens_per_s=1e12, memory_bytes=1 << 50),
        METRICS,
    ]
    for m in extremes:
        assert 0.0 <= overall_score(objective, m, baseline) <= 1.0


@pytest.mark.parametrize(
    ("objective", "field", "better_when_higher"),
    [
        ("maximize_quality", "quality", True),
        ("minimize_latency", "total_ms", False),
        ("minimize_memory", "memory_bytes", False),
        ("maximize_throughput", "tokens_per_s", True),
        ("balance_quality_speed", "quality", True),
        ("balance_quality_speed", "tokens_per_s", True),
    ],
)
def test_overall_score_is_strictly_monotonic(
    objective: str, field: str, better_when_higher: bool
) -> None:
    ladder = [0.0, 0.1, 0.5, 0.9, 1.0] if field == "quality" else [0, 1, 10, 1000, 1e9]
    scores = [overall_score(objective, metrics(**{field: value}), BASELINE) for value in ladder]
    ordered = scores if better_when_higher else scores[::-1]
    assert all(a < b for a, b in zip(ordered, ordered[1:], strict=False))


def test_overall_score_is_a_half_at_the_baseline() -> None:
    for objective in ("minimize_latency", "minimize_memory", "maximize_throughput"):
        assert overall_score(objective, BASELINE, BASELINE) == pytest.approx(0.5)
    # Without a baseline (or with a zero one) the reference scales apply: 20 tokens/s, 1 s.
    assert overall_score("maximize_throughput", metrics(tokens_per_s=20.0)) == 0.5
    zero = metrics(tokens_per_s=0.0)
    assert overall_score("maximize_throughput", metrics(tokens_per_s=20.0), zero) == 0.5
    assert overall_score("minimize_latency", metrics(total_ms=1000.0)) == 0.5
    assert overall_score("balance_quality_speed", BASELINE, BASELINE) == pytest.approx(
        0.7 * 0.5 + 0.3 * 0.5
    )


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        ([], []),
        ([(0.5, 10.0)], [0]),
        ([(0.9, 5.0), (0.5, 20.0), (0.4, 4.0), (0.7, 15.0), (0.5, 20.0)], [0, 1, 3, 4]),
        ([(1.0, 1.0), (0.0, 0.0)], [0]),
        ([(1.0, 0.0), (0.0, 1.0), (0.5, 0.5)], [0, 1, 2]),
    ],
)
def test_pareto_front(points: list[tuple[float, float]], expected: list[int]) -> None:
    assert pareto_front(points) == expected


@pytest.mark.parametrize(
    ("front", "expected"),
    [
        ([(0.5, 10.0)], 0),
        # Normalised: (1, 0), (0, 1), (0.75, 0.8) -> the compromise is nearest (1, 1).
        ([(0.9, 10.0), (0.5, 30.0), (0.8, 26.0)], 2),
        # Units do not matter: the same front with speed in tokens/ms.
        ([(0.9, 0.010), (0.5, 0.030), (0.8, 0.026)], 2),
        # Symmetric extremes tie: higher quality wins.
        ([(0.5, 30.0), (0.9, 10.0)], 1),
        # One axis constant: the best on the other one.
        ([(0.7, 10.0), (0.7, 30.0), (0.7, 20.0)], 1),
    ],
)
def test_knee_point(front: list[tuple[float, float]], expected: int) -> None:
    assert knee_point(front) == expected


def test_knee_point_of_an_empty_front() -> None:
    with pytest.raises(ValueError, match="at least one point"):
        knee_point([])
