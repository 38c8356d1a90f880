"""The event bus's log in the shared database (migration ``m013_events``).

Every process that publishes (the control plane, a ``neurons learn run`` CLI) appends here,
and every subscriber reads from here, so the log is the one order all of them agree on. Ids
come from the row's INTEGER primary key; the table is AUTOINCREMENT, so an id is never reused,
not even after :meth:`EventRepository.prune` emptied the table, and a reader that remembers
the last id it saw reads on with ``after=`` and misses nothing.

"Misses nothing" needs ids to become visible in the order they were given. SQLite gives that
(one writer at a time: an insert's id is committed before the next writer gets one), and so
does PostgreSQL here: concurrent transactions could commit out of id order, but every write
transaction holds neurons' advisory lock (:func:`~neurons.store.engine.write_transaction`)
from before it takes an id from the sequence until it commits.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, MetaData, Row, Table, Text, func, select
from sqlalchemy.engine import Engine

from neurons.errors import InvalidRequestError
from neurons.store.engine import (
    from_db_time,
    read_connection,
    to_db_time,
    utc_now,
    write_transaction,
)

__all__ = ["MAX_LIMIT", "EventRepository", "StoredEvent", "events_table"]

MAX_LIMIT = 5000  # events one read may return: a page, not the whole log

# The schema as of the latest migration, for queries; migrations.py owns how it came to be.
# Integers are BigInteger as the migrations make them on PostgreSQL, so a large id binds.
events_table = Table(
    "events",
    MetaData(),
    Column("id", BigInteger, primary_key=True),
    Column("at", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("payload", Text, nullable=False),
)


@dataclass(frozen=True)
class StoredEvent:
    """One event as the log holds it: its id orders it among all events of all processes."""

    id: int
    at: datetime
    kind: str
    subject: str
    payload: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "kind": self.kind,
            "subject": self.subject,
            "payload": self.payload,
        }


def _event(row: Row[Any]) -> StoredEvent:
    return StoredEvent(
        id=int(row.id),
        at=from_db_time(row.at),
        kind=row.kind,
        subject=row.subject,
        payload=json.loads(row.payload),
    )


def encode_payload(payload: Mapping[str, Any]) -> str:
    """The payload as stored: a JSON object (NaN and infinities refused, since a browser's
    ``JSON.parse`` would refuse them on the other end)."""
    try:
        return json.dumps(dict(payload), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidRequestError(f"an event payload must be plain JSON: {exc}") from exc


class EventRepository:
    """Append-only log of events, read in id order."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def append(
        self, kind: str, subject: str = "", payload: Mapping[str, Any] | None = None
    ) -> StoredEvent:
        """Store one event; the answer carries the id the log gave it."""
        if not isinstance(kind, str) or not kind:
            raise InvalidRequestError("an event needs a kind")
        if not isinstance(subject, str):
            raise InvalidRequestError("an event's subject is text")
        encoded = encode_payload(payload or {})
        at = utc_now()
        with write_transaction(self._engine) as conn:
            result = conn.execute(
                events_table.insert().values(
                    at=to_db_time(at), kind=kind, subject=subject, payload=encoded
                )
            )
            key = result.inserted_primary_key
        assert key is not None
        return StoredEvent(int(key[0]), at, kind, subject, json.loads(encoded))

    def list(
        self,
        after: int = 0,
        kinds: Collection[str] | None = None,
        limit: int = 500,
    ) -> builtins.list[StoredEvent]:
        """Events with an id above ``after``, oldest first, at most ``limit`` of them;
        ``kinds`` keeps only those kinds (an empty collection keeps none)."""
        if isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
            raise InvalidRequestError(f"limit must be 1-{MAX_LIMIT}")
        if after < 0:
            raise InvalidRequestError("after must be 0 or more")
        query = (
            select(events_table)
            .where(events_table.c.id > after)
            .order_by(events_table.c.id)
            .limit(limit)
        )
        if kinds is not None:
            query = query.where(events_table.c.kind.in_(sorted(set(kinds))))
        with read_connection(self._engine) as conn:
            return [_event(row) for row in conn.execute(query)]

    def latest_id(self) -> int:
        """The newest event's id; 0 when the log is empty."""
        with read_connection(self._engine) as conn:
            value = conn.scalar(select(func.max(events_table.c.id)))
        return int(value or 0)

    def prune(self, keep_last: int) -> int:
        """Delete all but the newest ``keep_last`` events; the answer is how many went.

        Readers behind the cut simply read on from the oldest kept event: ids stay ordered
        and are never given out again.
        """
        if isinstance(keep_last, bool) or keep_last < 0:
            raise InvalidRequestError("keep_last must be 0 or more")
        with write_transaction(self._engine) as conn:
            if keep_last == 0:
                return int(conn.execute(events_table.delete()).rowcount)
            oldest_kept = conn.scalar(
                select(events_table.c.id)
                .order_by(events_table.c.id.desc())
                .offset(keep_last - 1)
                .limit(1)
            )
            if oldest_kept is None:
                return 0
            deleted = conn.execute(events_table.delete().where(events_table.c.id < oldest_kept))
        return int(deleted.rowcount)
