"""Optimization sessions in the shared database (migration ``m006``).

A row holds the session's validated config (JSON), its status, its progress (trials finished,
the best result so far, running seconds) and the lease of the process running it: ``runner``
names the process, ``heartbeat_at`` says when it last wrote. The status and lease columns are
written only by the jobs runtime's :class:`~neurons.jobs.LeaseTable` (compare-and-set moves,
renewals carrying :func:`progress_columns`); this module creates and reads sessions.
"""

from __future__ import annotations

import builtins
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, MetaData, Row, Table, Text, select
from sqlalchemy.engine import Engine

from neurons.errors import InvalidRequestError, SessionNotFoundError
from neurons.store.engine import (
    from_db_time,
    read_connection,
    to_db_time,
    utc_now,
    write_transaction,
)
from neurons.store.ids import row_id

__all__ = ["OptimizationSessionRepository", "SessionRecord", "progress_columns", "sessions_table"]

# The schema as of the latest migration, for queries; migrations.py owns how it came to be.
# Integers are BigInteger as the migrations make them on PostgreSQL, so a large id binds.
sessions_table = Table(
    "optimization_sessions",
    MetaData(),
    Column("id", BigInteger, primary_key=True),
    Column("model_name", Text, nullable=False),
    Column("objective", Text, nullable=False),
    Column("strategy", Text, nullable=False),
    Column("model_type", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("config", Text, nullable=False),
    Column("study_name", Text, nullable=False),
    Column("current_iteration", BigInteger, nullable=False),
    Column("best", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("elapsed_s", Text, nullable=False),
    Column("runner", Text, nullable=True),
    Column("heartbeat_at", Text, nullable=True),
    Column("created_at", Text, nullable=False),
    Column("started_at", Text, nullable=True),
    Column("finished_at", Text, nullable=True),
    Column("updated_at", Text, nullable=False),
)


@dataclass(frozen=True)
class SessionRecord:
    """One stored session. ``session_id`` is the row id as text, as the seed's API spells it."""

    session_id: str
    model_name: str
    objective: str
    strategy: str
    model_type: str
    status: str
    config: dict[str, Any]
    study_name: str
    current_iteration: int
    best: dict[str, Any] | None
    error: str | None
    elapsed_s: float
    runner: str | None
    heartbeat_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """The seed's session shape, plus limits, timing and the error of a failed session."""
        best = self.best or {}
        return {
            "session_id": self.session_id,
            "model_name": self.model_name,
            "status": self.status,
            "objective": self.objective,
            "strategy": self.strategy,
            "model_type": self.model_type,
            "current_iteration": self.current_iteration,
            "max_iterations": self.config.get("max_iterations"),
            "timeout_minutes": self.config.get("timeout_minutes"),
            "node": best.get("node") or self.config.get("node"),
            "best_result": (
                {"overall_score": best.get("overall_score"), "parameters": best.get("parameters")}
                if best
                else None
            ),
            "elapsed_s": round(self.elapsed_s, 3),
            "error": self.error,
            "created_at": self.created_at.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


def _session_key(session_id: str | int) -> int:
    key = row_id(session_id)
    if key is None:
        raise SessionNotFoundError(f"no optimization session '{session_id}'")
    return key


def _time(value: str | None) -> datetime | None:
    return from_db_time(value) if value else None


def _to_record(row: Row[Any]) -> SessionRecord:
    return SessionRecord(
        session_id=str(row.id),
        model_name=row.model_name,
        objective=row.objective,
        strategy=row.strategy,
        model_type=row.model_type,
        status=row.status,
        config=json.loads(row.config),
        study_name=row.study_name,
        current_iteration=row.current_iteration,
        best=json.loads(row.best) if row.best else None,
        error=row.error,
        elapsed_s=float(row.elapsed_s),
        runner=row.runner,
        heartbeat_at=_time(row.heartbeat_at),
        created_at=from_db_time(row.created_at),
        started_at=_time(row.started_at),
        finished_at=_time(row.finished_at),
        updated_at=from_db_time(row.updated_at),
    )


class OptimizationSessionRepository:
    """Sessions in the shared database; safe to use from several processes."""

    STATUSES = ("pending", "running", "completed", "failed", "cancelled")

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(self, config: Mapping[str, Any]) -> SessionRecord:
        """Store a new ``pending`` session for ``config`` (a ``SessionConfig.to_dict()``)."""
        now = to_db_time(utc_now())
        table = sessions_table
        with write_transaction(self._engine) as conn:
            result = conn.execute(
                table.insert().values(
                    model_name=config["model_name"],
                    objective=config["objective"],
                    strategy=config["strategy"],
                    model_type=config["model_type"],
                    status="pending",
                    config=json.dumps(dict(config), sort_keys=True),
                    # Unique per database even if ids were reused by a hand-edited table.
                    study_name=f"neurons-session-{uuid.uuid4().hex}",
                    current_iteration=0,
                    elapsed_s="0",
                    created_at=now,
                    updated_at=now,
                )
            )
            key = result.inserted_primary_key
        assert key is not None
        return self.get(str(key[0]))

    def get(self, session_id: str | int) -> SessionRecord:
        """The session; :class:`SessionNotFoundError` (404) for an unknown or malformed id."""
        key = _session_key(session_id)
        with read_connection(self._engine) as conn:
            row = conn.execute(select(sessions_table).where(sessions_table.c.id == key)).first()
        if row is None:
            raise SessionNotFoundError(f"no optimization session '{session_id}'")
        return _to_record(row)

    def list(self, status: str | None = None) -> builtins.list[SessionRecord]:
        """Sessions, newest first; only those in ``status`` when given."""
        query = select(sessions_table).order_by(sessions_table.c.id.desc())
        if status is not None:
            if status not in self.STATUSES:
                raise InvalidRequestError(
                    f"unknown session status '{status}'; valid: {', '.join(self.STATUSES)}"
                )
            query = query.where(sessions_table.c.status == status)
        with read_connection(self._engine) as conn:
            return [_to_record(row) for row in conn.execute(query)]


def progress_columns(
    *, current_iteration: int, best: Mapping[str, Any] | None, elapsed_s: float
) -> dict[str, Any]:
    """A session's progress as its columns hold it (written with a renewal of its lease)."""
    columns: dict[str, Any] = {
        "current_iteration": current_iteration,
        "elapsed_s": repr(float(elapsed_s)),
    }
    if best is not None:
        columns["best"] = json.dumps(dict(best), sort_keys=True)
    return columns
