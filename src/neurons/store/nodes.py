"""The registry of nodes (neurons and Ollama servers) and their event history.

Callers name a node by id or by name interchangeably, because people type names and programs
keep ids. Reads return immutable :class:`NodeRecord` values, so a record handed to another
thread or cached cannot drift from what was read.
"""

from __future__ import annotations

import builtins
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    MetaData,
    Row,
    Table,
    Text,
    case,
    or_,
    select,
)
from sqlalchemy.engine import Connection, Engine

from neurons.errors import InvalidRequestError, NodeExistsError, NodeNotFoundError
from neurons.store.engine import (
    from_db_time,
    read_connection,
    to_db_time,
    utc_now,
    write_transaction,
)

__all__ = ["NODE_KINDS", "NodeRecord", "NodeRepository", "node_events_table", "nodes_table"]

# "openai": an OpenAI-compatible server (neurons.network.openai_nodes).
NODE_KINDS: tuple[str, ...] = ("embedded", "ollama", "openai")

# The schema as of the latest migration, for queries; migrations.py owns how it came to be.
# Integers are BigInteger as the migrations make them on PostgreSQL, so a large id binds.
_metadata = MetaData()
nodes_table = Table(
    "nodes",
    _metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False, unique=True),
    Column("url", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("labels", Text, nullable=False),
    Column("priority", BigInteger, nullable=False),
    Column("status", Text, nullable=False),
    Column("last_seen_at", Text, nullable=True),
    Column("created_at", Text, nullable=False),
    Column("updated_at", Text, nullable=False),
    Column("token_sealed", Text, nullable=True),
)
node_events_table = Table(
    "node_events",
    _metadata,
    Column("id", BigInteger, primary_key=True),
    Column("node_id", Text, ForeignKey("nodes.id", ondelete="CASCADE"), nullable=False),
    Column("kind", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Column("created_at", Text, nullable=False),
)


@dataclass(frozen=True)
class NodeRecord:
    id: str
    name: str
    url: str
    kind: str
    labels: dict[str, str]
    priority: int
    status: str
    last_seen_at: datetime | None
    created_at: datetime
    updated_at: datetime
    # The node's token, sealed (neurons.auth.sealing); never shown, only ``has_token``.
    token_sealed: str | None = field(default=None, repr=False)

    @property
    def has_token(self) -> bool:
        return self.token_sealed is not None


class NodeRepository:
    """Nodes and node events in the shared database; safe to use from several processes."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add(
        self,
        name: str,
        url: str,
        kind: str,
        labels: Mapping[str, str] | None = None,
        priority: int = 0,
        token_sealed: str | None = None,
    ) -> NodeRecord:
        """Register a new node; :class:`NodeExistsError` when the name is taken."""
        values = _node_values(name, url, kind, labels, priority)
        values["token_sealed"] = token_sealed
        with write_transaction(self._engine) as conn:
            if _find_by_name(conn, name) is not None:
                raise NodeExistsError(f"a node named {name!r} already exists")
            node_id = uuid.uuid4().hex
            now = to_db_time(utc_now())
            conn.execute(
                nodes_table.insert().values(
                    id=node_id, status="unknown", created_at=now, updated_at=now, **values
                )
            )
            return _require(conn, node_id)

    def upsert(
        self,
        name: str,
        url: str,
        kind: str,
        labels: Mapping[str, str] | None = None,
        priority: int = 0,
        token_sealed: str | None = None,
    ) -> NodeRecord:
        """Add the node, or update url, kind, labels, priority and token of the one with that
        name.

        Status, history and id survive, so re-announcing a node on every start is harmless.
        """
        values = _node_values(name, url, kind, labels, priority)
        values["token_sealed"] = token_sealed
        with write_transaction(self._engine) as conn:
            now = to_db_time(utc_now())
            existing = _find_by_name(conn, name)
            if existing is None:
                node_id = uuid.uuid4().hex
                conn.execute(
                    nodes_table.insert().values(
                        id=node_id, status="unknown", created_at=now, updated_at=now, **values
                    )
                )
            else:
                node_id = existing.id
                conn.execute(
                    nodes_table.update()
                    .where(nodes_table.c.id == node_id)
                    .values(updated_at=now, **values)
                )
            return _require(conn, node_id)

    def get(self, node_id_or_name: str) -> NodeRecord:
        with read_connection(self._engine) as conn:
            return _require(conn, node_id_or_name)

    def list(self, kind: str | None = None) -> builtins.list[NodeRecord]:
        """All nodes (or those of one kind), most preferred first: priority desc, then name."""
        query = select(nodes_table).order_by(nodes_table.c.priority.desc(), nodes_table.c.name)
        if kind is not None:
            query = query.where(nodes_table.c.kind == kind)
        with read_connection(self._engine) as conn:
            return [_to_record(row) for row in conn.execute(query)]

    def remove(self, node_id_or_name: str) -> None:
        """Delete the node; its events go with it (ON DELETE CASCADE)."""
        with write_transaction(self._engine) as conn:
            record = _require(conn, node_id_or_name)
            conn.execute(nodes_table.delete().where(nodes_table.c.id == record.id))

    def set_status(self, node_id_or_name: str, status: str, seen: bool = True) -> NodeRecord:
        """Record the node's health; ``seen`` also stamps ``last_seen_at`` (it answered)."""
        if not status:
            raise InvalidRequestError("a node status must not be empty")
        with write_transaction(self._engine) as conn:
            record = _require(conn, node_id_or_name)
            now = to_db_time(utc_now())
            changes: dict[str, Any] = {"status": status, "updated_at": now}
            if seen:
                changes["last_seen_at"] = now
            conn.execute(
                nodes_table.update().where(nodes_table.c.id == record.id).values(**changes)
            )
            return _require(conn, record.id)

    def record_event(self, node_id: str, kind: str, detail: Mapping[str, Any]) -> None:
        """Append an event to the node's history (``node_id`` may also be its name)."""
        encoded = _dump_json(detail, what="event detail")
        with write_transaction(self._engine) as conn:
            record = _require(conn, node_id)
            conn.execute(
                node_events_table.insert().values(
                    node_id=record.id, kind=kind, detail=encoded, created_at=to_db_time(utc_now())
                )
            )

    def events(self, node_id: str, limit: int = 50) -> builtins.list[dict[str, Any]]:
        """The node's latest events, newest first, as plain dicts ready for JSON responses."""
        if limit < 1:
            raise InvalidRequestError(f"limit must be at least 1, not {limit}")
        events = node_events_table.c
        with read_connection(self._engine) as conn:
            record = _require(conn, node_id)
            rows = conn.execute(
                select(node_events_table)
                .where(events.node_id == record.id)
                .order_by(events.id.desc())
                .limit(limit)
            )
            return [
                {
                    "id": row.id,
                    "node_id": row.node_id,
                    "kind": row.kind,
                    "detail": json.loads(row.detail),
                    "created_at": from_db_time(row.created_at),
                }
                for row in rows
            ]


def _node_values(
    name: str, url: str, kind: str, labels: Mapping[str, str] | None, priority: int
) -> dict[str, Any]:
    # Checked here as well as by the CHECK constraint, to answer with a 400 rather than a 500.
    if not name:
        raise InvalidRequestError("a node name must not be empty")
    if not url:
        raise InvalidRequestError("a node URL must not be empty")
    if kind not in NODE_KINDS:
        raise InvalidRequestError(f"node kind must be one of {', '.join(NODE_KINDS)}; not {kind!r}")
    clean_labels = dict(labels or {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in clean_labels.items()):
        raise InvalidRequestError("node labels must map strings to strings")
    return {
        "name": name,
        "url": url,
        "kind": kind,
        "labels": json.dumps(clean_labels, sort_keys=True),
        "priority": int(priority),
    }


def _dump_json(value: Mapping[str, Any], *, what: str) -> str:
    try:
        return json.dumps(dict(value), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise InvalidRequestError(f"{what} is not JSON-serialisable: {exc}") from exc


def _find(conn: Connection, node_id_or_name: str) -> NodeRecord | None:
    c = nodes_table.c
    # An id match wins over a name match, in case someone names a node like another's id.
    row = conn.execute(
        select(nodes_table)
        .where(or_(c.id == node_id_or_name, c.name == node_id_or_name))
        .order_by(case((c.id == node_id_or_name, 0), else_=1))
        .limit(1)
    ).first()
    return None if row is None else _to_record(row)


def _find_by_name(conn: Connection, name: str) -> NodeRecord | None:
    row = conn.execute(select(nodes_table).where(nodes_table.c.name == name)).first()
    return None if row is None else _to_record(row)


def _require(conn: Connection, node_id_or_name: str) -> NodeRecord:
    record = _find(conn, node_id_or_name)
    if record is None:
        raise NodeNotFoundError(f"no node with id or name {node_id_or_name!r}")
    return record


def _to_record(row: Row[Any]) -> NodeRecord:
    return NodeRecord(
        id=row.id,
        name=row.name,
        url=row.url,
        kind=row.kind,
        labels=json.loads(row.labels),
        priority=row.priority,
        status=row.status,
        last_seen_at=None if row.last_seen_at is None else from_db_time(row.last_seen_at),
        created_at=from_db_time(row.created_at),
        updated_at=from_db_time(row.updated_at),
        token_sealed=row.token_sealed,
    )
