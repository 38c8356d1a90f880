"""EvaluationRepository on a real SQLite file: add, latest per model, history, round-trips."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import numpy as np
import pytest

from neurons.store import Store, open_store
from neurons.store.engine import from_db_time


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "db.sqlite"


@pytest.fixture
def evaluations_store(db_path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{db_path}")
    try:
        yield opened
    finally:
        opened.close()


def test_add_returns_the_stored_record(evaluations_store: Store) -> None:
    details = {"answers": [{"question": "What is 7 plus 5?", "answer": "12", "correct": True}]}
    record = evaluations_store.evaluations.add(
        model="smollm2:135m",
        node="node-a",
        evaluation_set="general-v1",
        items=16,
        score=0.8125,
        tokens_per_second=82.37,
        digest="sha256:" + "ab" * 32,
        details=details,
    )
    assert record.id >= 1
    assert (record.model, record.node, record.evaluation_set) == (
        "smollm2:135m",
        "node-a",
        "general-v1",
    )
    assert record.items == 16
    assert record.score == 0.8125
    assert record.tokens_per_second == 82.37
    assert record.digest == "sha256:" + "ab" * 32
    assert record.details == details
    assert from_db_time(record.created_at).tzinfo == UTC


def test_none_scores_and_defaults(evaluations_store: Store) -> None:
    record = evaluations_store.evaluations.add(
        model="nomic-embed-text:v1.5",
        node="node-a",
        evaluation_set="embedding-v1",
        items=6,
        score=None,
        tokens_per_second=None,
    )
    assert record.score is None and record.tokens_per_second is None
    assert record.digest is None
    assert record.details == {}
    assert evaluations_store.evaluations.latest()["nomic-embed-text:v1.5"] == record


@pytest.mark.parametrize(
    ("score", "tps", "expected_score", "expected_tps"),
    [
        (0.1 + 0.2, 1 / 3, 0.1 + 0.2, 1 / 3),  # repr keeps every bit
        (1, 12, 1.0, 12.0),  # ints come back as floats
        (0.0, 0.0, 0.0, 0.0),  # zero is a value, not None
        # numpy floats (float subclasses) are stored as plain numbers, not "np.float64(...)"
        (np.float64(0.75), np.float64(12.5), 0.75, 12.5),
    ],
    ids=["exact-floats", "ints", "zeros", "numpy-floats"],
)
def test_numbers_round_trip(
    evaluations_store: Store, score: float, tps: float, expected_score: float, expected_tps: float
) -> None:
    repo = evaluations_store.evaluations
    repo.add(model="m", node="n", evaluation_set="v1", items=1, score=score, tokens_per_second=tps)
    (record,) = repo.for_model("m")
    assert record.score == expected_score and type(record.score) is float
    assert record.tokens_per_second == expected_tps and type(record.tokens_per_second) is float
    assert repo.latest()["m"] == record


def test_latest_and_history(evaluations_store: Store) -> None:
    repo = evaluations_store.evaluations
    assert repo.latest() == {}
    assert repo.for_model("a") == []

    def add(model: str, node: str, score: float | None) -> int:
        return repo.add(
            model=model,
            node=node,
            evaluation_set="general-v1",
            items=4,
            score=score,
            tokens_per_second=10.0,
        ).id

    first = add("a", "node-1", 0.5)
    other = add("b", "node-1", 0.25)
    second = add("a", "node-2", 0.75)
    third = add("a", "node-1", None)  # the newest wins even with no score
    assert first < other < second < third
    latest = repo.latest()
    assert set(latest) == {"a", "b"}
    assert (latest["a"].id, latest["a"].node, latest["a"].score) == (third, "node-1", None)
    assert (latest["b"].id, latest["b"].score) == (other, 0.25)
    history = repo.for_model("a")
    assert [r.id for r in history] == [third, second, first]  # newest first
    assert [r.score for r in history] == [None, 0.75, 0.5]
    assert [r.created_at for r in history] == sorted((r.created_at for r in history), reverse=True)
    assert repo.for_model("missing") == []


def test_evaluations_survive_reopening(db_path: Path) -> None:
    details = {"nested": {"list": [1, 2.5, None, "x"], "flag": False}, "unicode": "naïve ✓"}
    first = open_store(f"sqlite:///{db_path}")
    try:
        saved = first.evaluations.add(
            model="m",
            node="n",
            evaluation_set="general-v1",
            items=2,
            score=0.5,
            tokens_per_second=3.25,
            details=details,
        )
    finally:
        first.close()
    again = open_store(f"sqlite:///{db_path}")
    try:
        assert again.evaluations.latest() == {"m": saved}
        assert again.evaluations.for_model("m")[0].details == details
    finally:
        again.close()
