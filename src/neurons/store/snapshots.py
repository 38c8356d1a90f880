"""Versions of the state snapshots (migration ``m011``) and the one transaction that puts a
snapshot's node registry and placements back.

A version's files live on disk (:mod:`neurons.persistence`); its row here lists them with
their checksums. The row is what makes a version exist: :meth:`SnapshotRepository.add` calls
back to move the finished directory into place inside the transaction that inserts the row,
so a crash leaves either both or an unlisted directory, which :meth:`SnapshotRepository.prune`
sweeps away under the same write lock.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, MetaData, Row, Table, Text, select
from sqlalchemy.engine import Connection, Engine

from neurons.errors import InvalidRequestError, SnapshotNotFoundError
from neurons.store.engine import (
    from_db_time,
    read_connection,
    to_db_time,
    utc_now,
    write_transaction,
)
from neurons.store.nodes import NODE_KINDS, nodes_table
from neurons.store.placements import placements_table

__all__ = ["SNAPSHOT_STATUSES", "SnapshotFile", "SnapshotRecord", "SnapshotRepository"]

SNAPSHOT_STATUSES: tuple[str, ...] = ("complete", "corrupt")
# A node's status the operator set (neurons node drain), as opposed to measured health;
# the one status a snapshot keeps. Spelled here: the store does not import the network.
_DRAINING = "draining"
_MAX_ID = 2**63 - 1  # the largest INTEGER (SQLite) or BIGINT: a bigger number names none

# The schema as of the latest migration, for queries; migrations.py owns how it came to be.
# Integers are BigInteger as the migrations make them on PostgreSQL, so a large id binds.
snapshots_table = Table(
    "state_snapshots",
    MetaData(),
    Column("id", BigInteger, primary_key=True),
    Column("created_at", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("components", Text, nullable=False),
    Column("status", Text, nullable=False),
)


@dataclass(frozen=True)
class SnapshotFile:
    """One component's file in a version: its checksum and size when it was written."""

    sha256: str
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "bytes": self.bytes}


@dataclass(frozen=True)
class SnapshotRecord:
    version: int
    created_at: datetime
    reason: str
    components: dict[str, SnapshotFile]
    status: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "created_at": self.created_at.isoformat(),
            "reason": self.reason,
            "status": self.status,
            "bytes": sum(f.bytes for f in self.components.values()),
            "components": {name: f.to_dict() for name, f in self.components.items()},
        }


class SnapshotRepository:
    """Snapshot versions in the shared database; safe to use from several processes."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add(
        self,
        reason: str,
        components: Mapping[str, SnapshotFile],
        place: Callable[[int], None],
    ) -> SnapshotRecord:
        """Insert a version and call ``place(version)`` before the transaction commits.

        ``place`` moves the version's finished files to where the number says. If it raises,
        nothing is inserted; if the process dies after it, the directory is there but unlisted
        (the number is not taken: the next version reuses it, replacing the directory).
        """
        encoded = json.dumps({k: f.to_dict() for k, f in components.items()}, sort_keys=True)
        with write_transaction(self._engine) as conn:
            result = conn.execute(
                snapshots_table.insert().values(
                    created_at=to_db_time(utc_now()),
                    reason=reason,
                    components=encoded,
                    status="complete",
                )
            )
            key = result.inserted_primary_key
            if key is None:  # pragma: no cover - every backend we support returns it
                raise InvalidRequestError("the database did not return the new version's id")
            version = int(key[0])
            place(version)
            return _require(conn, version)

    def get(self, version: int) -> SnapshotRecord:
        with read_connection(self._engine) as conn:
            return _require(conn, version)

    def list(self) -> builtins.list[SnapshotRecord]:
        """Every version, newest first."""
        with read_connection(self._engine) as conn:
            rows = conn.execute(select(snapshots_table).order_by(snapshots_table.c.id.desc()))
            return [_record(row) for row in rows]

    def latest(self, status: str | None = "complete") -> SnapshotRecord | None:
        """The newest version (with ``status``, unless None)."""
        query = select(snapshots_table).order_by(snapshots_table.c.id.desc()).limit(1)
        if status is not None:
            query = query.where(snapshots_table.c.status == status)
        with read_connection(self._engine) as conn:
            row = conn.execute(query).first()
        return None if row is None else _record(row)

    def set_status(self, version: int, status: str) -> None:
        if status not in SNAPSHOT_STATUSES:
            raise InvalidRequestError(f"a snapshot status is one of {SNAPSHOT_STATUSES}")
        with write_transaction(self._engine) as conn:
            _require(conn, version)
            conn.execute(
                snapshots_table.update()
                .where(snapshots_table.c.id == version)
                .values(status=status)
            )

    def prune(self, keep: int, sweep: Callable[[set[int]], None]) -> builtins.list[int]:
        """Delete all but the ``keep`` newest versions and return the deleted numbers.

        ``sweep(known)`` runs under the write lock with every version this call knew of (kept
        and deleted), so it can remove the directories of no known version (a crashed save's)
        without racing a save that is placing one. The deleted versions' directories are the
        caller's to remove once this returns: were they removed before the commit, a failed
        commit would leave listed versions without files.
        """
        if keep < 1:
            raise InvalidRequestError(f"keep at least 1 version, not {keep}")
        with write_transaction(self._engine) as conn:
            ids = [
                int(i)
                for i in conn.scalars(
                    select(snapshots_table.c.id).order_by(snapshots_table.c.id.desc())
                )
            ]
            dropped = ids[keep:]
            if dropped:
                conn.execute(snapshots_table.delete().where(snapshots_table.c.id.in_(dropped)))
            sweep(set(ids[:keep]) | set(dropped))
        return sorted(dropped)

    def replace_registry(
        self, nodes: Sequence[Mapping[str, Any]], placements: Sequence[Mapping[str, Any]]
    ) -> None:
        """Make the node registry and the placements exactly ``nodes`` and ``placements`` (a
        snapshot's entries), in one transaction.

        Nodes are matched by id: one the snapshot lacks is removed (its events with it), one
        it has is added or updated (name, url, kind, labels, priority, created_at, drained or
        not). Health is measured, not restored. Sealed tokens are never restored: a node keeps
        the token it has now, and a node added back takes the token of the node now holding
        its name, if any (else it has none, and needs ``node add --token`` again).
        """
        wanted = [_node_entry(n) for n in nodes]
        wanted_places = [_placement_entry(p) for p in placements]
        ids = [n["id"] for n in wanted]
        names = [n["name"] for n in wanted]
        if len(set(ids)) != len(ids) or len(set(names)) != len(names):
            raise InvalidRequestError("a snapshot's nodes repeat an id or a name")
        now = to_db_time(utc_now())
        c = nodes_table.c
        with write_transaction(self._engine) as conn:
            current = {row.id: row for row in conn.execute(select(nodes_table))}
            token_by_name = {row.name: row.token_sealed for row in current.values()}
            gone = set(current) - set(ids)
            if gone:
                conn.execute(nodes_table.delete().where(c.id.in_(gone)))
            # Park the kept nodes' names first: names may move between nodes, and the unique
            # constraint is checked per statement. \x01, not \x00: PostgreSQL's text holds no
            # NUL, and no one types either.
            for node_id in set(current) & set(ids):
                conn.execute(
                    nodes_table.update()
                    .where(c.id == node_id)
                    .values(name=f"\x01restoring:{node_id}")
                )
            for entry in wanted:
                old = current.get(entry["id"])
                values = {k: v for k, v in entry.items() if k not in ("id", "draining")}
                if old is None:
                    conn.execute(
                        nodes_table.insert().values(
                            id=entry["id"],
                            status=_DRAINING if entry["draining"] else "unknown",
                            updated_at=now,
                            token_sealed=token_by_name.get(entry["name"]),
                            **values,
                        )
                    )
                    continue
                status = old.status
                if entry["draining"]:
                    status = _DRAINING
                elif status == _DRAINING:
                    status = "unknown"
                conn.execute(
                    nodes_table.update()
                    .where(c.id == entry["id"])
                    .values(status=status, updated_at=now, **values)
                )
            conn.execute(placements_table.delete())
            for place in wanted_places:
                conn.execute(
                    placements_table.insert().values(created_at=now, updated_at=now, **place)
                )


def _node_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    try:
        node = {
            "id": str(entry["id"]),
            "name": str(entry["name"]),
            "url": str(entry["url"]),
            "kind": str(entry["kind"]),
            "labels": json.dumps(dict(entry.get("labels") or {}), sort_keys=True),
            "priority": int(entry.get("priority", 0)),
            "created_at": to_db_time(datetime.fromisoformat(str(entry["created_at"]))),
            "draining": bool(entry.get("draining", False)),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidRequestError(f"a snapshot's node entry is not valid: {exc}") from exc
    if not node["id"] or not node["name"] or not node["url"] or node["kind"] not in NODE_KINDS:
        raise InvalidRequestError(f"a snapshot's node entry is not valid: {dict(entry)!r}")
    return node


def _placement_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    try:
        replicas = entry.get("replicas")
        return {
            "model": str(entry["model"]),
            "labels": json.dumps(dict(entry.get("labels") or {}), sort_keys=True),
            "replicas": None if replicas is None else int(replicas),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidRequestError(f"a snapshot's placement entry is not valid: {exc}") from exc


def _require(conn: Connection, version: int) -> SnapshotRecord:
    if not 1 <= version <= _MAX_ID:
        raise SnapshotNotFoundError(f"no state snapshot version {version}")
    row = conn.execute(select(snapshots_table).where(snapshots_table.c.id == version)).first()
    if row is None:
        raise SnapshotNotFoundError(f"no state snapshot version {version}")
    return _record(row)


def _record(row: Row[Any]) -> SnapshotRecord:
    files = json.loads(row.components)
    return SnapshotRecord(
        version=int(row.id),
        created_at=from_db_time(row.created_at),
        reason=row.reason,
        components={
            name: SnapshotFile(sha256=f["sha256"], bytes=int(f["bytes"]))
            for name, f in sorted(files.items())
        },
        status=row.status,
    )
