"""EventRepository on a real SQLite file and a real PostgreSQL server: ids in order,
``after``, the kinds filter, the limit's bounds, pruning (ids are never given out again) and
what ``to_dict`` shows."""

from __future__ import annotations

from datetime import UTC

import pytest

from neurons.errors import InvalidRequestError
from neurons.store import Store
from tests.pg import db_url

__all__ = ["db_url"]  # the fixture, run on both backends (tests/pg.py)


def test_appended_events_get_growing_ids_and_read_back_in_order(store: Store) -> None:
    assert store.events.latest_id() == 0
    first = store.events.append("node.up", "alpha", {"to": "online"})
    second = store.events.append("node.down", "alpha", {"to": "offline", "error": "gone"})
    third = store.events.append("snapshot.saved", "v1")
    assert first.id < second.id < third.id
    assert store.events.latest_id() == third.id
    listed = store.events.list()
    assert [e.id for e in listed] == [first.id, second.id, third.id]
    assert listed[1].payload == {"to": "offline", "error": "gone"}
    assert listed[2].subject == "v1" and listed[2].payload == {}
    assert listed[0].at.tzinfo is not None and listed[0].at == first.at


def test_after_and_kinds_filter_and_limit(store: Store) -> None:
    ids = [store.events.append(k, str(i)).id for i, k in enumerate(["a.x", "b.y", "a.x", "c.z"])]
    assert [e.id for e in store.events.list(after=ids[1])] == ids[2:]
    assert [e.id for e in store.events.list(kinds={"a.x"})] == [ids[0], ids[2]]
    assert [e.id for e in store.events.list(kinds=["a.x", "c.z"], after=ids[0])] == ids[2:]
    assert store.events.list(kinds=set()) == []
    assert [e.id for e in store.events.list(limit=2)] == ids[:2]
    assert store.events.list(after=ids[-1]) == []


@pytest.mark.parametrize("limit", [0, -1, 5001])
def test_a_limit_outside_1_to_5000_is_refused(store: Store, limit: int) -> None:
    with pytest.raises(InvalidRequestError, match="limit must be 1-5000"):
        store.events.list(limit=limit)


def test_prune_keeps_the_newest_and_ids_are_never_reused(store: Store) -> None:
    ids = [store.events.append("a.x", str(i)).id for i in range(5)]
    assert store.events.prune(keep_last=2) == 3
    assert [e.id for e in store.events.list()] == ids[3:]
    assert store.events.prune(keep_last=10) == 0
    assert store.events.prune(keep_last=0) == 2
    assert store.events.list() == [] and store.events.latest_id() == 0
    # AUTOINCREMENT: a reader that remembered ids[-1] still reads the next event.
    assert store.events.append("a.x").id > ids[-1]
    with pytest.raises(InvalidRequestError):
        store.events.prune(keep_last=-1)


def test_to_dict_and_bad_events(store: Store) -> None:
    event = store.events.append("model.created", "llama3", {"nodes": ["a"], "operation": "pull"})
    shown = event.to_dict()
    assert shown == {
        "id": event.id,
        "at": event.at.astimezone(UTC).isoformat(),
        "kind": "model.created",
        "subject": "llama3",
        "payload": {"nodes": ["a"], "operation": "pull"},
    }
    with pytest.raises(InvalidRequestError):
        store.events.append("a.x", "s", {"when": object()})
    with pytest.raises(InvalidRequestError):
        store.events.append("a.x", "s", {"ratio": float("nan")})
    with pytest.raises(InvalidRequestError):
        store.events.append("", "s")
