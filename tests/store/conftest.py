"""The repository tests run on SQLite and on a real PostgreSQL server (tests/pg.py)."""

from __future__ import annotations

from tests.pg import db_url

__all__ = ["db_url"]
