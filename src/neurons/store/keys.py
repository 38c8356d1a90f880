"""API keys and the audit trail in the shared database.

Keys are found by id, name or display prefix (what people type) and by secret hash (what
the control plane sees). Every change to a key's spec or state moves ``updated_at``, so a
control plane can tell from :meth:`ApiKeyRepository.generation` that its cached keys are stale
(a key revoked by ``neurons keys revoke`` in another process); usage counters are added in
batches and do not move it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, MetaData, Row, Table, Text, func, or_, select
from sqlalchemy.engine import Connection, Engine

from neurons.auth.keys import ApiKey, KeySpec
from neurons.auth.scopes import Scope
from neurons.errors import InvalidRequestError, KeyExistsError, KeyNotFoundError, KeyStateError
from neurons.store.engine import (
    from_db_time,
    read_connection,
    to_db_time,
    utc_now,
    write_transaction,
)

__all__ = [
    "ApiKeyRepository",
    "AuditEvent",
    "AuditRepository",
    "KeyUsage",
    "api_keys_table",
    "audit_events_table",
]

# The schema as of the latest migration, for queries; migrations.py owns how it came to be.
# Integers are BigInteger as the migrations make them on PostgreSQL, so a large id binds.
_metadata = MetaData()
api_keys_table = Table(
    "api_keys",
    _metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("prefix", Text, nullable=False),
    Column("secret_hash", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("models", Text, nullable=False),
    Column("rpm", BigInteger, nullable=True),
    Column("tpm", BigInteger, nullable=True),
    Column("max_parallel", BigInteger, nullable=True),
    Column("expires_at", Text, nullable=True),
    Column("revoked_at", Text, nullable=True),
    Column("requests", BigInteger, nullable=False),
    Column("tokens", BigInteger, nullable=False),
    Column("last_used_at", Text, nullable=True),
    Column("created_at", Text, nullable=False),
    Column("updated_at", Text, nullable=False),
)
audit_events_table = Table(
    "audit_events",
    _metadata,
    Column("id", BigInteger, primary_key=True),
    Column("at", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("target", Text, nullable=False),
    Column("status", BigInteger, nullable=False),
    Column("detail", Text, nullable=False),
)


@dataclass(frozen=True)
class KeyUsage:
    """Usage to add to one key: counted on the request path, written in batches."""

    requests: int = 0
    tokens: int = 0
    last_used_at: datetime | None = None


class ApiKeyRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add(self, spec: KeySpec, prefix: str, secret_hash: str) -> ApiKey:
        now = to_db_time(utc_now())
        with write_transaction(self._engine) as conn:
            taken = conn.scalar(
                select(api_keys_table.c.id).where(api_keys_table.c.name == spec.name)
            )
            if taken is not None:
                raise KeyExistsError(f"a key named {spec.name!r} already exists")
            key_id = uuid.uuid4().hex
            conn.execute(
                api_keys_table.insert().values(
                    id=key_id,
                    prefix=prefix,
                    secret_hash=secret_hash,
                    requests=0,
                    tokens=0,
                    created_at=now,
                    updated_at=now,
                    **_spec_values(spec),
                )
            )
            return _require(conn, key_id)

    def list(self) -> list[ApiKey]:
        with read_connection(self._engine) as conn:
            rows = conn.execute(
                select(api_keys_table).order_by(api_keys_table.c.created_at, api_keys_table.c.id)
            )
            return [_key(row) for row in rows]

    def find(self, ref: str) -> ApiKey:
        """The key whose id, name or display prefix is ``ref``; a prefix shared by two keys
        is ambiguous and refused."""
        with read_connection(self._engine) as conn:
            return _find(conn, ref)

    def by_hash(self, secret_hash: str) -> ApiKey | None:
        with read_connection(self._engine) as conn:
            row = conn.execute(
                select(api_keys_table).where(api_keys_table.c.secret_hash == secret_hash)
            ).first()
            return None if row is None else _key(row)

    def revoke(self, ref: str) -> ApiKey:
        """Revoke a key (revoking it again changes nothing)."""
        with write_transaction(self._engine) as conn:
            key = _find(conn, ref)
            if key.revoked_at is None:
                now = to_db_time(utc_now())
                conn.execute(
                    api_keys_table.update()
                    .where(api_keys_table.c.id == key.id)
                    .values(revoked_at=now, updated_at=now)
                )
            return _require(conn, key.id)

    def rotate(self, ref: str, prefix: str, secret_hash: str) -> ApiKey:
        """Give a live key a new secret: the old one stops working, spec and usage stay."""
        with write_transaction(self._engine) as conn:
            key = _find(conn, ref)
            if key.revoked_at is not None:
                raise KeyStateError(f"key {key.name!r} is revoked; create a new one")
            conn.execute(
                api_keys_table.update()
                .where(api_keys_table.c.id == key.id)
                .values(prefix=prefix, secret_hash=secret_hash, updated_at=to_db_time(utc_now()))
            )
            return _require(conn, key.id)

    def generation(self) -> tuple[int, str | None]:
        """Changes when any key is added, revoked or rotated (not when it is used)."""
        with read_connection(self._engine) as conn:
            row = conn.execute(
                select(func.count(), func.max(api_keys_table.c.updated_at)).select_from(
                    api_keys_table
                )
            ).one()
            return int(row[0]), row[1]

    def add_usage(self, usage: Mapping[str, KeyUsage]) -> None:
        """Add counted usage to each key by id (keys deleted meanwhile are skipped)."""
        if not usage:
            return
        with write_transaction(self._engine) as conn:
            for key_id, used in usage.items():
                values: dict[str, Any] = {
                    "requests": api_keys_table.c.requests + used.requests,
                    "tokens": api_keys_table.c.tokens + used.tokens,
                }
                if used.last_used_at is not None:
                    values["last_used_at"] = to_db_time(used.last_used_at)
                conn.execute(
                    api_keys_table.update().where(api_keys_table.c.id == key_id).values(**values)
                )


@dataclass(frozen=True)
class AuditEvent:
    """One mutating call: who (a key's name), what, on which target, with which result."""

    id: int
    at: datetime
    actor: str
    action: str
    target: str
    status: int
    detail: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "status": self.status,
            "detail": self.detail,
        }


class AuditRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def record(
        self,
        actor: str,
        action: str,
        target: str,
        status: int,
        detail: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> None:
        with write_transaction(self._engine) as conn:
            conn.execute(
                audit_events_table.insert().values(
                    at=to_db_time(at or utc_now()),
                    actor=actor,
                    action=action,
                    target=target,
                    status=status,
                    detail=json.dumps(dict(detail or {}), sort_keys=True),
                )
            )

    def list(
        self, since: datetime | None = None, limit: int = 100, actor: str | None = None
    ) -> list[AuditEvent]:
        """Events oldest first: the ``limit`` newest at or after ``since``."""
        query = select(audit_events_table)
        if since is not None:
            query = query.where(audit_events_table.c.at >= to_db_time(since))
        if actor is not None:
            query = query.where(audit_events_table.c.actor == actor)
        query = query.order_by(audit_events_table.c.id.desc()).limit(limit)
        with read_connection(self._engine) as conn:
            events = [_event(row) for row in conn.execute(query)]
        return events[::-1]


def _spec_values(spec: KeySpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "scope": str(spec.scope),
        "models": json.dumps(list(spec.models)),
        "rpm": spec.rpm,
        "tpm": spec.tpm,
        "max_parallel": spec.max_parallel,
        "expires_at": None if spec.expires_at is None else to_db_time(spec.expires_at),
    }


def _find(conn: Connection, ref: str) -> ApiKey:
    ref = ref.strip()
    c = api_keys_table.c
    rows = conn.execute(
        select(api_keys_table).where(or_(c.id == ref, c.name == ref, c.prefix == ref))
    ).all()
    exact = [r for r in rows if r.id == ref or r.name == ref]
    if exact:
        return _key(exact[0])
    if len(rows) > 1:
        raise InvalidRequestError(f"{ref!r} is the prefix of {len(rows)} keys; use a name or id")
    if not rows:
        raise KeyNotFoundError(f"no key with id, name or prefix {ref!r}")
    return _key(rows[0])


def _require(conn: Connection, key_id: str) -> ApiKey:
    row = conn.execute(select(api_keys_table).where(api_keys_table.c.id == key_id)).one()
    return _key(row)


def _time(value: str | None) -> datetime | None:
    return None if value is None else from_db_time(value)


def _key(row: Row[Any]) -> ApiKey:
    spec = KeySpec(
        name=row.name,
        scope=Scope.parse(row.scope),
        models=tuple(json.loads(row.models)),
        rpm=row.rpm,
        tpm=row.tpm,
        max_parallel=row.max_parallel,
        expires_at=_time(row.expires_at),
    )
    return ApiKey(
        id=row.id,
        prefix=row.prefix,
        secret_hash=row.secret_hash,
        spec=spec,
        created_at=from_db_time(row.created_at),
        updated_at=from_db_time(row.updated_at),
        revoked_at=_time(row.revoked_at),
        requests=row.requests,
        tokens=row.tokens,
        last_used_at=_time(row.last_used_at),
    )


def _event(row: Row[Any]) -> AuditEvent:
    return AuditEvent(
        id=row.id,
        at=from_db_time(row.at),
        actor=row.actor,
        action=row.action,
        target=row.target,
        status=row.status,
        detail=json.loads(row.detail),
    )
