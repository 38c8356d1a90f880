"""Language memory in state snapshots: a version holds every namespace's entries with their
embeddings, and a restore puts exactly those back (ids, texts, metadata, vectors), so a
search after it answers as before; a version saved before memory existed leaves it alone."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from neurons.config import Settings
from neurons.memory import Embeddings, MemoryService
from neurons.persistence import COMPONENTS, PersistenceService
from neurons.store import Store, open_store
from neurons.store.memory import MemoryRepository


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", ollama_base_url="", import_default_models=False)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    opened = open_store(settings.resolved_database_url)
    try:
        yield opened
    finally:
        opened.close()


def _search(service: MemoryService, namespace: str, query: str) -> list[tuple[int, float]]:
    hits = asyncio.run(service.search(namespace, query, 3))
    return [(h.entry.id, round(h.score, 5)) for h in hits]


def test_a_snapshot_round_trips_memory(
    store: Store, settings: Settings, minilm: Embeddings
) -> None:
    memory = MemoryService(store, minilm)
    persistence = PersistenceService(store, settings)
    for namespace, text, meta in [
        ("alice", "The garden has red roses.", {"room": "garden"}),
        ("alice", "The kitchen tap drips.", {}),
        ("bob", "Bob's bike has a flat tyre.", {"urgent": True}),
    ]:
        asyncio.run(memory.add(namespace, text, meta))
    repository = MemoryRepository(store.engine)
    before = repository.list(with_embedding=True)
    searched = _search(memory, "alice", "flowers in the garden")
    saved = persistence.save()
    shown = persistence.show(saved.version, "memory")["data"]
    assert [(e["namespace"], e["text"]) for e in shown] == [(e.namespace, e.text) for e in before]
    assert all(e["digest"].startswith("sha256:") and e["embedding"] for e in shown)

    # Change everything: remove one, add one, in another namespace too.
    asyncio.run(memory.delete("alice", before[0].id))
    asyncio.run(memory.add("carol", "Carol's new note.", {}))
    result = persistence.restore(saved.version)

    after = repository.list(with_embedding=True)
    assert after == before  # ids, texts, metadata, model, digest, times and vectors
    assert _search(memory, "alice", "flowers in the garden") == searched
    changes = result["changes"]["memory"]
    assert changes["removed"] == [str(before[-1].id + 1)] and changes["added"] == [
        str(before[0].id)
    ]
    assert "memory" not in result["not_restored"]
    # An id given out before the restore is never given again.
    new, _ = asyncio.run(memory.add("alice", "After the restore.", {}))
    assert new.id == before[-1].id + 2


def test_a_version_without_memory_leaves_it_alone(
    store: Store, settings: Settings, minilm: Embeddings
) -> None:
    older = PersistenceService(store, settings, [c for c in COMPONENTS if c.name != "memory"])
    saved = older.save()
    memory = MemoryService(store, minilm)
    asyncio.run(memory.add("default", "kept across the restore", {}))
    result = PersistenceService(store, settings).restore(saved.version)
    assert "memory" not in result["changes"]
    assert [e.text for e in MemoryRepository(store.engine).list()] == ["kept across the restore"]
