"""A small key/value store for settings and state that do not deserve a table of their own.

Values are stored as JSON so any process (or a person with the sqlite3 shell) can read them
without knowing which Python type wrote them.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Column, ColumnElement, MetaData, Table, Text, select
from sqlalchemy.engine import Engine

from neurons.errors import InvalidRequestError
from neurons.store.engine import read_connection, to_db_time, utc_now, write_transaction

__all__ = ["KeyValueRepository", "kv_table"]

# The schema as of the latest migration, for queries; migrations.py owns how it came to be.
kv_table = Table(
    "kv",
    MetaData(),
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", Text, nullable=False),
)


class KeyValueRepository:
    """JSON values by string key, shared by every process using the database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get(self, key: str, default: Any = None) -> Any:
        with read_connection(self._engine) as conn:
            raw = conn.scalar(select(kv_table.c.value).where(kv_table.c.key == key))
        return default if raw is None else json.loads(raw)

    def items(self, prefix: str) -> dict[str, Any]:
        """Every key that starts with ``prefix`` (non-empty), with its value, by key."""
        if not prefix:
            raise InvalidRequestError("a prefix is needed")
        # A range instead of LIKE: no escaping of _ and %, and the primary key's index serves.
        key: ColumnElement[str] = kv_table.c.key
        if self._engine.dialect.name == "postgresql":
            # The range needs code-point order; a database created with a language's collation
            # (en_US.UTF-8) sorts "node:x" and "nodex" together and U+10FFFF nowhere useful.
            key = key.collate("C")
        query = select(kv_table.c.key, kv_table.c.value).where(
            key >= prefix, key < prefix + "\U0010ffff"
        )
        with read_connection(self._engine) as conn:
            return {row.key: json.loads(row.value) for row in conn.execute(query)}

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key``, replacing what was there."""
        try:
            encoded = json.dumps(value, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise InvalidRequestError(f"value for {key!r} is not JSON-serialisable: {exc}") from exc
        now = to_db_time(utc_now())
        # Update-then-insert under the write lock (SQLite's, or PostgreSQL's advisory lock)
        # instead of a dialect-specific upsert: no two writers can both find the key missing.
        with write_transaction(self._engine) as conn:
            updated = conn.execute(
                kv_table.update().where(kv_table.c.key == key).values(value=encoded, updated_at=now)
            )
            if updated.rowcount == 0:
                conn.execute(kv_table.insert().values(key=key, value=encoded, updated_at=now))

    def delete(self, key: str) -> None:
        """Remove ``key``; deleting a missing key is not an error (the outcome is the same)."""
        with write_transaction(self._engine) as conn:
            conn.execute(kv_table.delete().where(kv_table.c.key == key))
