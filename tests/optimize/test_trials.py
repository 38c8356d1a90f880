"""Pure parts of a trial: request options per case and the aggregation of case results."""

from __future__ import annotations

from typing import Any

import pytest

from neurons.optimize.evalsets import EvalCase
from neurons.optimize.trials import DEFAULT_NUM_PREDICT, CaseResult, aggregate, request_options


def case(max_tokens: int | None) -> EvalCase:
    return EvalCase(id="c", prompt="p", reference="r", max_tokens=max_tokens)


@pytest.mark.parametrize(
    ("options", "max_tokens", "expected"),
    [
        ({}, None, DEFAULT_NUM_PREDICT),
        ({}, 24, 24),
        ({"num_predict": 128}, 24, 24),
        ({"num_predict": 16}, 24, 16),
        ({"num_predict": 300}, None, 300),
    ],
)
def test_num_predict_is_always_bounded(
    options: dict[str, Any], max_tokens: int | None, expected: int
) -> None:
    merged = request_options({"temperature": 0.3, **options}, case(max_tokens))
    assert merged == {"temperature": 0.3, "num_predict": expected}


def result(score: float, ttft: float, total: float, tokens: int, ns: int) -> CaseResult:
    return CaseResult("c", "a", score, ttft, total, tokens, ns, 0.0)


def test_aggregate_means_per_prompt_and_throughput_over_all_tokens() -> None:
    metrics = aggregate(
        [result(1.0, 10, 100, 30, 1_000_000_000), result(0.5, 30, 300, 10, 1_000_000_000)],
        memory_bytes=123,
    )
    assert metrics.quality == 0.75
    assert (metrics.ttft_ms, metrics.total_ms) == (20.0, 200.0)
    assert metrics.tokens_per_s == 20.0  # 40 tokens in 2 s, not the mean of 30 and 10
    assert metrics.memory_bytes == 123


def test_aggregate_without_eval_time_and_without_results() -> None:
    assert aggregate([result(0.0, 0, 0, 0, 0)], 0).tokens_per_s == 0.0
    with pytest.raises(ValueError, match="no case results"):
        aggregate([], 0)
