"""Fixtures: a real SQLite store and snapshot directory under tmp_path for every test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from neurons.config import Settings
from neurons.persistence import PersistenceService
from neurons.persistence.components import Nodes, Placements
from neurons.store import Store, open_store


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


@pytest.fixture
def service(store: Store, settings: Settings) -> PersistenceService:
    return PersistenceService(store, settings)


def registry(store: Store, settings: Settings) -> tuple[Any, Any]:
    """The node registry and the placements as a snapshot holds them."""
    return Nodes().collect(store, settings), Placements().collect(store, settings)


def snapshot_text(settings: Settings) -> str:
    """Every byte under the snapshot directory, as text (to search for secrets)."""
    root = settings.resolved_snapshot_path
    return "\n".join(p.read_text() for p in sorted(root.rglob("*")) if p.is_file())
