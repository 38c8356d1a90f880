"""The optimization session repository on a real SQLite file: creation, ids from requests,
and the sessions' table under the jobs runtime's lease table (its moves, progress with the
lease)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from neurons.errors import InvalidRequestError, SessionNotFoundError, SessionStateError
from neurons.optimize.runner import session_leases
from neurons.optimize.sessions import SessionConfig
from neurons.store import Store, open_store
from neurons.store.optimization import progress_columns


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path}/s.db")
    try:
        yield opened
    finally:
        opened.close()


def _config(**overrides: Any) -> dict[str, Any]:
    config = SessionConfig.create(model_name="smollm2:135m", max_iterations=5, **overrides)
    return config.to_dict()


def test_create_get_and_list(store: Store) -> None:
    first = store.optimization.create(_config())
    second = store.optimization.create(_config(objective="minimize_latency"))
    assert (first.session_id, first.status, first.current_iteration) == ("1", "pending", 0)
    assert first.study_name != second.study_name
    assert store.optimization.get("1").config == first.config
    assert [r.session_id for r in store.optimization.list()] == ["2", "1"]
    assert [r.session_id for r in store.optimization.list("pending")] == ["2", "1"]
    assert store.optimization.list("running") == []
    shape = first.to_dict()
    assert shape["best_result"] is None
    assert {"session_id", "model_name", "status", "objective", "strategy"} <= set(shape)
    assert shape["current_iteration"] == 0 and shape["max_iterations"] == 5


@pytest.mark.parametrize("bad", ["0", "99", "../etc/passwd", "1; DROP TABLE x", "", "9" * 40])
def test_unknown_or_malformed_ids_are_not_found(store: Store, bad: str) -> None:
    store.optimization.create(_config())
    with pytest.raises(SessionNotFoundError):
        store.optimization.get(bad)


def test_unknown_status_filter_is_refused(store: Store) -> None:
    with pytest.raises(InvalidRequestError, match="unknown session status"):
        store.optimization.list("sleeping")


def test_the_lease_table_moves_sessions_by_compare_and_set(store: Store) -> None:
    leases = session_leases(store)
    record = store.optimization.create(_config())
    leases.transition(record.session_id, ("pending",), "running", runner="a")
    running = store.optimization.get(record.session_id)
    assert (running.status, running.runner) == ("running", "a")
    assert running.started_at is not None and running.heartbeat_at is not None
    with pytest.raises(SessionStateError, match="session 1 is running, not pending"):
        leases.transition(record.session_id, ("pending",), "running", runner="b")
    with pytest.raises(SessionNotFoundError):
        leases.lease("99")
    leases.transition(record.session_id, ("running",), "failed", error="boom")
    done = store.optimization.get(record.session_id)
    assert (done.status, done.runner, done.error) == ("failed", None, "boom")
    assert done.finished_at is not None


def test_progress_is_written_with_the_lease(store: Store) -> None:
    leases = session_leases(store)
    sid = store.optimization.create(_config()).session_id
    best = {"overall_score": 0.7, "parameters": {"temperature": 0.5}}
    progress = progress_columns(current_iteration=2, best=best, elapsed_s=1.5)
    assert not leases.renew(sid, "a", progress)  # pending: no one holds it
    leases.transition(sid, ("pending",), "running", runner="a")
    assert leases.renew(sid, "a", progress)
    assert not leases.renew(sid, "b", progress_columns(current_iteration=3, best=None, elapsed_s=2))
    stored = store.optimization.get(sid)
    assert (stored.current_iteration, stored.best, stored.elapsed_s) == (2, best, 1.5)
    assert stored.to_dict()["best_result"] == best


def test_sessions_survive_reopening_the_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    first = open_store(url)
    try:
        created = first.optimization.create(_config(strategy="grid_search"))
    finally:
        first.close()
    again = open_store(url)
    try:
        assert again.optimization.get(created.session_id).config["strategy"] == "grid_search"
    finally:
        again.close()
