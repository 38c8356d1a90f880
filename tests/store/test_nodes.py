"""NodeRepository against a real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from neurons.errors import (
    InvalidRequestError,
    NodeExistsError,
    NodeNotFoundError,
    NotFoundError,
)
from neurons.store import Store
from tests.pg import FOREIGN_KEY_FAILED


def test_add_and_get_by_id_or_name(store: Store) -> None:
    before = datetime.now(UTC)
    node = store.nodes.add("gpu-1", "http://10.0.0.2:11434", "ollama", {"gpu": "h100"}, 5)
    assert len(node.id) == 32
    int(node.id, 16)
    assert (node.name, node.url, node.kind) == ("gpu-1", "http://10.0.0.2:11434", "ollama")
    assert node.labels == {"gpu": "h100"}
    assert node.priority == 5
    assert node.status == "unknown"
    assert node.last_seen_at is None
    assert node.created_at.tzinfo is not None
    assert node.created_at.utcoffset() == UTC.utcoffset(None)
    assert before <= node.created_at <= datetime.now(UTC)
    assert node.updated_at == node.created_at

    assert store.nodes.get(node.id) == node
    assert store.nodes.get("gpu-1") == node


def test_timestamps_are_stored_as_iso_8601_utc(store: Store) -> None:
    node = store.nodes.add("a", "http://a", "embedded")
    with store.engine.connect() as conn:
        raw = conn.scalar(text("SELECT created_at FROM nodes WHERE id = :id"), {"id": node.id})
    assert raw.endswith("+00:00")
    assert datetime.fromisoformat(raw) == node.created_at


def test_duplicate_name_is_refused(store: Store) -> None:
    store.nodes.add("dup", "http://a", "embedded")
    with pytest.raises(NodeExistsError) as excinfo:
        store.nodes.add("dup", "http://b", "ollama")
    assert excinfo.value.http_status == 409
    assert excinfo.value.error_code == "node_exists"
    assert [n.url for n in store.nodes.list()] == ["http://a"]


def test_unknown_node_is_not_found(store: Store) -> None:
    for call in (
        lambda: store.nodes.get("ghost"),
        lambda: store.nodes.remove("ghost"),
        lambda: store.nodes.set_status("ghost", "healthy"),
        lambda: store.nodes.record_event("ghost", "health", {}),
        lambda: store.nodes.events("ghost"),
    ):
        with pytest.raises(NodeNotFoundError) as excinfo:
            call()
        assert isinstance(excinfo.value, NotFoundError)
        assert excinfo.value.http_status == 404
        assert excinfo.value.error_code == "node_not_found"


def test_invalid_input_is_refused_before_the_database(store: Store) -> None:
    with pytest.raises(InvalidRequestError, match="kind"):
        store.nodes.add("x", "http://x", "vllm")
    with pytest.raises(InvalidRequestError, match="name"):
        store.nodes.add("", "http://x", "ollama")
    with pytest.raises(InvalidRequestError, match="labels"):
        store.nodes.add("x", "http://x", "ollama", {"n": 1})  # type: ignore[dict-item]
    with pytest.raises(InvalidRequestError, match="JSON"):
        node = store.nodes.add("x", "http://x", "ollama")
        store.nodes.record_event(node.id, "bad", {"when": object()})
    assert store.nodes.events("x") == []


def test_list_orders_by_priority_then_name_and_filters_kind(store: Store) -> None:
    store.nodes.add("b", "http://b", "ollama", priority=1)
    store.nodes.add("a", "http://a", "ollama", priority=1)
    store.nodes.add("z", "http://z", "embedded", priority=9)
    store.nodes.add("c", "http://c", "embedded")
    assert [n.name for n in store.nodes.list()] == ["z", "a", "b", "c"]
    assert [n.name for n in store.nodes.list(kind="embedded")] == ["z", "c"]
    assert [n.name for n in store.nodes.list(kind="ollama")] == ["a", "b"]


def test_remove(store: Store) -> None:
    keep = store.nodes.add("keep", "http://k", "ollama")
    gone = store.nodes.add("gone", "http://g", "ollama")
    store.nodes.remove(gone.id)
    assert store.nodes.list() == [keep]
    store.nodes.remove("keep")
    assert store.nodes.list() == []


def test_upsert_inserts_then_updates_in_place(store: Store) -> None:
    first = store.nodes.upsert("n", "http://one", "ollama", {"a": "1"}, 1)
    store.nodes.set_status("n", "healthy")
    store.nodes.record_event("n", "health", {"ok": True})

    second = store.nodes.upsert("n", "http://two", "embedded", {"b": "2"}, 7)
    assert second.id == first.id
    assert (second.url, second.kind, second.labels, second.priority) == (
        "http://two",
        "embedded",
        {"b": "2"},
        7,
    )
    assert second.status == "healthy"
    assert second.created_at == first.created_at
    assert second.updated_at >= first.updated_at
    assert len(store.nodes.events(first.id)) == 1
    assert len(store.nodes.list()) == 1


def test_set_status_with_and_without_seen(store: Store) -> None:
    node = store.nodes.add("n", "http://n", "embedded")
    healthy = store.nodes.set_status(node.id, "healthy")
    assert healthy.status == "healthy"
    assert healthy.last_seen_at is not None
    assert healthy.last_seen_at.tzinfo is not None
    assert healthy.updated_at >= node.updated_at

    down = store.nodes.set_status("n", "unreachable", seen=False)
    assert down.status == "unreachable"
    assert down.last_seen_at == healthy.last_seen_at
    assert store.nodes.get("n") == down


def test_events_newest_first_with_limit(store: Store) -> None:
    node = store.nodes.add("n", "http://n", "embedded")
    other = store.nodes.add("o", "http://o", "embedded")
    for i in range(5):
        store.nodes.record_event(node.id, "tick", {"i": i})
    store.nodes.record_event(other.id, "tick", {"i": 99})

    events = store.nodes.events(node.id, limit=3)
    assert [e["detail"] for e in events] == [{"i": 4}, {"i": 3}, {"i": 2}]
    assert {e["node_id"] for e in events} == {node.id}
    assert all(e["kind"] == "tick" for e in events)
    assert all(isinstance(e["created_at"], datetime) for e in events)
    assert len(store.nodes.events(node.id)) == 5
    with pytest.raises(InvalidRequestError):
        store.nodes.events(node.id, limit=0)


def test_removing_a_node_cascades_to_its_events(store: Store) -> None:
    node = store.nodes.add("n", "http://n", "embedded")
    other = store.nodes.add("o", "http://o", "embedded")
    store.nodes.record_event(node.id, "a", {})
    store.nodes.record_event(other.id, "a", {})
    store.nodes.remove(node.id)
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT node_id FROM node_events")).scalars().all()
    assert rows == [other.id]


def test_foreign_keys_are_enforced(store: Store) -> None:
    with pytest.raises(Exception, match=FOREIGN_KEY_FAILED), store.engine.begin() as conn:
        conn.execute(
            text("INSERT INTO node_events (node_id, kind, created_at) VALUES ('nope', 'x', 't')")
        )
