"""The built-in evaluation: answer matching and cosine on their own, then ``evaluate_model``
against the session's real embedded neuron (SmolLM2 135M, nothing mocked)."""

from __future__ import annotations

import asyncio
import math

import pytest

from neurons.client import NodeClient
from neurons.library.evaluation import (
    EMBEDDING_SET,
    GENERAL_SET,
    EvaluationResult,
    _answered,
    _cosine,
    evaluate_model,
)
from neurons.neuron.process import NeuronProcess

SMOL = "smollm2:135m"


@pytest.mark.parametrize(
    ("answer", "accepted", "expected"),
    [
        ("It is 12.", ("12", "twelve"), True),
        ("12", ("12", "twelve"), True),
        ("112", ("12", "twelve"), False),
        ("The answer is 1234", ("12", "twelve"), False),
        ("TWELVE!", ("12", "twelve"), True),
        ("twelves", ("12", "twelve"), False),
        ("Water freezes at 0 degrees.", ("0", "zero"), True),
        ("Water freezes at 10 degrees.", ("0", "zero"), False),
        ("100", ("0", "zero"), False),
        ("Zero degrees Celsius", ("0", "zero"), True),
        ("Carbon Dioxide (CO2).", ("carbon dioxide", "co2"), True),
        ("carbon  dioxide", ("carbon dioxide", "co2"), False),  # two spaces: not the phrase
        ("Plants take in CO2", ("carbon dioxide", "co2"), True),
        ("co2e emissions", ("carbon dioxide", "co2"), False),
        ("Paris.", ("paris",), True),
        ("Parisian food", ("paris",), False),
        ("H2O", ("h2o",), True),
        ("Twenty-seven.", ("27", "twenty-seven", "twenty seven"), True),
        ("`def`", ("def",), True),
        ("define it", ("def",), False),
        ("", ("paris",), False),
    ],
    ids=[
        "number-in-sentence",
        "number-alone",
        "number-inside-number",
        "number-prefix",
        "word-uppercase",
        "word-plural",
        "zero-digit",
        "zero-inside-ten",
        "zero-inside-hundred",
        "zero-word",
        "phrase-case-insensitive",
        "phrase-needs-exact-spacing",
        "formula",
        "formula-with-suffix",
        "city",
        "city-as-prefix",
        "chemical",
        "hyphenated",
        "in-backticks",
        "keyword-as-prefix",
        "empty",
    ],
)
def test_answered(answer: str, accepted: tuple[str, ...], expected: bool) -> None:
    assert _answered(answer, accepted) is expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([1.0, 0.0], [1.0, 0.0], 1.0),
        ([1.0, 0.0], [0.0, 1.0], 0.0),
        ([1.0, 0.0], [-1.0, 0.0], -1.0),
        ([1.0, 2.0], [2.0, 4.0], 1.0),  # scale does not matter
        ([3.0, 4.0], [4.0, 3.0], 24 / 25),  # 24 / (5 · 5)
        ([1.0, 1.0], [1.0, 0.0], 1 / math.sqrt(2)),
        ([0.0, 0.0], [1.0, 1.0], 0.0),  # a zero vector: 0, not a division by zero
    ],
    ids=["same", "orthogonal", "opposite", "scaled", "3-4-5", "45-degrees", "zero-vector"],
)
def test_cosine(a: list[float], b: list[float], expected: float) -> None:
    assert _cosine(a, b) == pytest.approx(expected)


def test_built_in_sets_are_the_documented_sizes() -> None:
    assert len(GENERAL_SET) == 16
    assert len(EMBEDDING_SET) == 6


def _evaluate(url: str, *, embedding: bool, limit: int) -> EvaluationResult:
    async def run() -> EvaluationResult:
        async with NodeClient(url) as node:
            return await evaluate_model(node, SMOL, embedding=embedding, limit=limit)

    return asyncio.run(run())


def test_evaluate_general_on_a_real_neuron(neuron: NeuronProcess) -> None:
    result = _evaluate(neuron.url, embedding=False, limit=2)
    assert result.model == SMOL
    assert result.node == neuron.url  # a NodeClient without a name is named by its URL
    assert result.evaluation_set == "general-v1"
    assert result.items == 2
    assert 0.0 <= result.score <= 1.0
    assert result.tokens_per_second is not None and result.tokens_per_second > 0
    answers = result.details["answers"]
    assert [a["question"] for a in answers] == [q for q, _ in GENERAL_SET[:2]]
    assert all(isinstance(a["answer"], str) and a["answer"] for a in answers)
    assert all(len(a["answer"]) <= 200 for a in answers)
    assert result.score == sum(a["correct"] for a in answers) / 2


def test_evaluate_embedding_on_a_real_neuron(neuron: NeuronProcess) -> None:
    result = _evaluate(neuron.url, embedding=True, limit=1)
    assert result.evaluation_set == "embedding-v1"
    assert result.items == 1
    assert result.score in (0.0, 1.0)
    assert result.tokens_per_second is None
    assert result.details == {}
