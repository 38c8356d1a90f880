"""Fixtures: every test gets a real SQLite file of its own under tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from neurons.store import Store, open_store


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    # A nested directory, so the tests also cover creating the parent of the database file.
    return f"sqlite:///{tmp_path / 'home' / 'neurons.db'}"


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    opened = open_store(db_url)
    try:
        yield opened
    finally:
        opened.close()
