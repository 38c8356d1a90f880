"""The memory's table on a real SQLite file and a real PostgreSQL server (tests/pg.py):
namespaces keep entries apart, vectors round-trip as float32, ids are never reused, and a
restore puts exactly the given entries back."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import text

from neurons.errors import InvalidRequestError, MemoryNotFoundError
from neurons.store import Store
from neurons.store.memory import MemoryRepository, decode_vector, encode_vector
from tests.pg import db_url

__all__ = ["db_url"]  # the fixture, run on both backends


def _unit(*values: float) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


@pytest.fixture
def memory(store: Store) -> MemoryRepository:
    return MemoryRepository(store.engine)


def test_add_get_and_namespaces_keep_entries_apart(memory: MemoryRepository) -> None:
    a = memory.add("alice", "hello", {"tag": "x", "n": 1}, _unit(1, 0, 0), "m", "sha256:1")
    b = memory.add("bob", "hi", {}, _unit(0, 1, 0), "m", "sha256:1")
    assert b.id > a.id
    got = memory.get("alice", a.id)
    assert (got.text, got.metadata, got.namespace, got.digest) == (
        "hello",
        {"n": 1, "tag": "x"},
        "alice",
        "sha256:1",
    )
    # Another namespace's id is "not found", whatever the id.
    with pytest.raises(MemoryNotFoundError):
        memory.get("bob", a.id)
    with pytest.raises(MemoryNotFoundError):
        memory.delete("bob", a.id)
    assert memory.count("alice") == 1
    assert set(memory.get_many("alice", [a.id, b.id])) == {a.id}


def test_vectors_are_float32_of_one_digest(memory: MemoryRepository) -> None:
    first = memory.add("ns", "one", {}, _unit(3, 4), "m", "sha256:new")
    memory.add("ns", "old", {}, _unit(1, 1), "m-old", "sha256:old")
    third = memory.add("ns", "two", {}, _unit(0, 1), "m", "sha256:new")
    ids, matrix = memory.vectors("ns", "sha256:new")
    assert ids.tolist() == [first.id, third.id]
    assert matrix.dtype == np.float32 and matrix.shape == (2, 2)
    np.testing.assert_allclose(matrix[0], [0.6, 0.8], rtol=1e-6)
    assert [e.text for e in memory.stale("ns", "sha256:new", 10)] == ["old"]
    assert memory.count("ns", "sha256:new") == 2
    empty_ids, empty = memory.vectors("other", "sha256:new")
    assert empty_ids.size == 0 and empty.size == 0
    assert decode_vector(encode_vector([0.5, -2.0])).tolist() == [0.5, -2.0]


def test_set_embeddings_moves_entries_to_the_new_model(memory: MemoryRepository) -> None:
    old = memory.add("ns", "old", {}, _unit(1, 1), "m-old", "sha256:old")
    memory.set_embeddings([(old.id, _unit(1, 0, 0))], "m", "sha256:new")
    assert memory.stale("ns", "sha256:new", 10) == []
    ids, matrix = memory.vectors("ns", "sha256:new")
    assert ids.tolist() == [old.id] and matrix.shape == (1, 3)


def test_delete_and_ids_are_never_reused(memory: MemoryRepository, store: Store) -> None:
    entry = memory.add("ns", "gone", {}, _unit(1, 0), "m", "sha256:1")
    memory.delete("ns", entry.id)
    with pytest.raises(MemoryNotFoundError):
        memory.get("ns", entry.id)
    again = memory.add("ns", "new", {}, _unit(1, 0), "m", "sha256:1")
    assert again.id > entry.id
    if store.engine.dialect.name == "sqlite":  # PostgreSQL's sequences never go back anyway
        with store.engine.connect() as conn:
            ddl = conn.scalar(text("SELECT sql FROM sqlite_master WHERE name = 'memory_entries'"))
        assert "AUTOINCREMENT" in ddl


def test_replace_all_restores_exactly(memory: MemoryRepository) -> None:
    keep = memory.add("ns", "keep", {"a": 1}, _unit(1, 0), "m", "sha256:1")
    memory.add("ns", "drop", {}, _unit(0, 1), "m", "sha256:1")
    saved = [e for e in memory.list(with_embedding=True) if e.id == keep.id]
    assert saved[0].embedding == encode_vector(_unit(1, 0))
    memory.add("other", "later", {}, _unit(0, 1), "m", "sha256:1")
    memory.replace_all(saved)
    entries = memory.list(with_embedding=True)
    assert [(e.id, e.text, e.metadata, e.embedding) for e in entries] == [
        (keep.id, "keep", {"a": 1}, saved[0].embedding)
    ]
    # Ids given out before the restore are not given again (PostgreSQL: the sequence moved).
    assert memory.add("ns", "after", {}, _unit(1, 0), "m", "sha256:1").id > keep.id + 2
    assert memory.list()[0].embedding is None  # only asked for, never by default


def test_metadata_must_be_plain_json(memory: MemoryRepository) -> None:
    with pytest.raises(InvalidRequestError, match="plain JSON"):
        memory.add("ns", "x", {"bad": float("nan")}, _unit(1, 0), "m", "sha256:1")
    with pytest.raises(InvalidRequestError, match="non-empty vector"):
        memory.add("ns", "x", {}, np.zeros((0,), dtype=np.float32), "m", "sha256:1")


def test_an_id_past_any_integer_is_not_found(db_url: str) -> None:
    """On PostgreSQL the column is BIGINT: a huge id binds and is simply not there."""
    from neurons.errors import MemoryNotFoundError
    from neurons.store import open_store
    from neurons.store.memory import MemoryRepository

    store = open_store(db_url)
    try:
        repository = MemoryRepository(store.engine)
        with pytest.raises(MemoryNotFoundError):
            repository.get("default", 2**62)
    finally:
        store.close()
