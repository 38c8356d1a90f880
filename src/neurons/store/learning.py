"""Distributed-learning runs and their events in the shared database (migration ``m008``).

A run row holds the validated RunConfig (JSON), its status, the round reached and the latest
round's summary. Events (rounds, model updates, teaching, pairings) are appended in order and
read back by id, so a client can page through them with ``after``. The status and lease
columns (migration ``m012``) are written only by the jobs runtime's
:class:`~neurons.jobs.LeaseTable`; a round's progress goes with the lease's renewal
(:func:`round_values`).
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, MetaData, Row, Table, Text, select
from sqlalchemy.engine import Engine

from neurons.errors import InvalidRequestError, LearningRunNotFoundError
from neurons.store.engine import (
    from_db_time,
    read_connection,
    to_db_time,
    utc_now,
    write_transaction,
)
from neurons.store.ids import row_id

__all__ = [
    "LearningEvent",
    "LearningRunRecord",
    "LearningRunRepository",
    "round_values",
    "runs_table",
]

# Integers are BigInteger as the migrations make them on PostgreSQL, so a large id binds.
_metadata = MetaData()
runs_table = Table(
    "learning_runs",
    _metadata,
    Column("id", BigInteger, primary_key=True),
    Column("mode", Text, nullable=False),
    Column("dataset", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("config", Text, nullable=False),
    Column("current_round", BigInteger, nullable=False),
    Column("total_rounds", BigInteger, nullable=False),
    Column("result", Text, nullable=False),
    Column("error", Text, nullable=True),
    Column("created_at", Text, nullable=False),
    Column("started_at", Text, nullable=True),
    Column("finished_at", Text, nullable=True),
    Column("updated_at", Text, nullable=False),
    Column("runner", Text, nullable=True),  # the lease (m012): who runs it, its heartbeat
    Column("heartbeat_at", Text, nullable=True),
    Column("attempts", BigInteger, nullable=False),
)
events_table = Table(
    "learning_events",
    _metadata,
    Column("id", BigInteger, primary_key=True),
    Column("run_id", BigInteger, nullable=False),
    Column("round", BigInteger, nullable=True),
    Column("kind", Text, nullable=False),
    Column("node_id", Text, nullable=True),
    Column("payload", Text, nullable=False),
    Column("created_at", Text, nullable=False),
)


@dataclass(frozen=True)
class LearningRunRecord:
    run_id: str
    mode: str
    dataset: str
    status: str
    config: dict[str, Any]
    current_round: int
    total_rounds: int
    result: dict[str, Any]
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    runner: str | None  # the lease: ``host:pid:nonce`` of the process training it
    heartbeat_at: datetime | None
    attempts: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "mode": self.mode,
            "dataset": self.dataset,
            "status": self.status,
            "config": self.config,
            "current_round": self.current_round,
            "total_rounds": self.total_rounds,
            "progress": round(self.current_round / max(self.total_rounds, 1), 4),
            "result": self.result,
            "error": self.error,
            "created_at": self.created_at.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "runner": self.runner,
            "heartbeat_at": self.heartbeat_at.isoformat() if self.heartbeat_at else None,
            "attempts": self.attempts,
        }


@dataclass(frozen=True)
class LearningEvent:
    event_id: int
    round: int | None
    kind: str
    node_id: str | None
    payload: dict[str, Any]
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "round": self.round,
            "kind": self.kind,
            "node_id": self.node_id,
            "payload": self.payload,
            "created_at": self.created_at.isoformat(),
        }


def _key(run_id: str | int) -> int:
    key = row_id(run_id)
    if key is None:
        raise LearningRunNotFoundError(f"learning run {run_id!r} not found")
    return key


def _record(row: Row[Any]) -> LearningRunRecord:
    return LearningRunRecord(
        run_id=str(row.id),
        mode=row.mode,
        dataset=row.dataset,
        status=row.status,
        config=json.loads(row.config),
        current_round=row.current_round,
        total_rounds=row.total_rounds,
        result=json.loads(row.result),
        error=row.error,
        created_at=from_db_time(row.created_at),
        started_at=from_db_time(row.started_at) if row.started_at else None,
        finished_at=from_db_time(row.finished_at) if row.finished_at else None,
        runner=row.runner,
        heartbeat_at=from_db_time(row.heartbeat_at) if row.heartbeat_at else None,
        attempts=row.attempts,
    )


def round_values(round_done: int, summary: Mapping[str, Any]) -> dict[str, Any]:
    """The columns a finished round sets: the round reached and its summary."""
    return {
        "current_round": round_done,
        "result": json.dumps(dict(summary), sort_keys=True, default=float),
    }


class LearningRunRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(self, config: Mapping[str, Any]) -> LearningRunRecord:
        now = to_db_time(utc_now())
        with write_transaction(self._engine) as conn:
            result = conn.execute(
                runs_table.insert().values(
                    mode=config["mode"],
                    dataset=config["dataset"],
                    status="pending",
                    config=json.dumps(dict(config), sort_keys=True),
                    current_round=0,
                    total_rounds=int(config["rounds"]),
                    result="{}",
                    created_at=now,
                    updated_at=now,
                )
            )
            key = result.inserted_primary_key
        assert key is not None
        return self.get(int(key[0]))

    def get(self, run_id: str | int) -> LearningRunRecord:
        key = _key(run_id)
        with read_connection(self._engine) as conn:
            row = conn.execute(select(runs_table).where(runs_table.c.id == key)).first()
        if row is None:
            raise LearningRunNotFoundError(f"learning run {run_id!r} not found")
        return _record(row)

    def list(self, status: str | None = None) -> builtins.list[LearningRunRecord]:
        query = select(runs_table).order_by(runs_table.c.id.desc())
        if status is not None:
            query = query.where(runs_table.c.status == status)
        with read_connection(self._engine) as conn:
            return [_record(row) for row in conn.execute(query)]

    def add_event(self, run_id: str | int, kind: str, payload: Mapping[str, Any]) -> None:
        data = dict(payload)
        raw_round, node = data.get("round"), data.get("node_id")
        with write_transaction(self._engine) as conn:
            conn.execute(
                events_table.insert().values(
                    run_id=_key(run_id),
                    round=int(raw_round) if isinstance(raw_round, int) else None,
                    kind=kind,
                    node_id=str(node) if node is not None else None,
                    payload=json.dumps(data, sort_keys=True, default=float),
                    created_at=to_db_time(utc_now()),
                )
            )

    def events(
        self, run_id: str | int, *, after: int = 0, kind: str | None = None, limit: int = 500
    ) -> builtins.list[LearningEvent]:
        if not 1 <= limit <= 5000:
            raise InvalidRequestError("limit must be 1-5000")
        query = (
            select(events_table)
            .where(events_table.c.run_id == _key(run_id), events_table.c.id > after)
            .order_by(events_table.c.id)
            .limit(limit)
        )
        if kind is not None:
            query = query.where(events_table.c.kind == kind)
        with read_connection(self._engine) as conn:
            return [
                LearningEvent(
                    event_id=row.id,
                    round=row.round,
                    kind=row.kind,
                    node_id=row.node_id,
                    payload=json.loads(row.payload),
                    created_at=from_db_time(row.created_at),
                )
                for row in conn.execute(query)
            ]
