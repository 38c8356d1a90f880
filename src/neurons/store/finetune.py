"""Fine-tuning jobs in the shared database (migration ``m007``).

A row holds the job's validated config (JSON), its status and phase, its progress, the last
lines of its log, its metrics, and the lease of the process driving it (``runner``,
``heartbeat_at``) with the pid of its training subprocess. The status and lease columns are
written only by the jobs runtime's :class:`~neurons.jobs.LeaseTable` (compare-and-set moves,
renewals carrying :func:`progress_columns` and :func:`appended`); this module creates and
reads jobs.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    MetaData,
    Row,
    Table,
    Text,
    case,
    func,
    literal,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from neurons.errors import InvalidRequestError, JobNotFoundError
from neurons.store.engine import (
    from_db_time,
    read_connection,
    to_db_time,
    utc_now,
    write_transaction,
)
from neurons.store.ids import row_id

__all__ = [
    "MAX_LOG_LINES",
    "FineTuningJobRepository",
    "JobRecord",
    "appended",
    "jobs_table",
    "log_appended",
    "progress_columns",
]

MAX_LOG_LINES = 200  # the row keeps the newest; the whole log is in the job's directory

# Integers are BigInteger as the migrations make them on PostgreSQL, so a large id binds.
jobs_table = Table(
    "fine_tuning_jobs",
    MetaData(),
    Column("id", BigInteger, primary_key=True),
    Column("base_model", Text, nullable=False),
    Column("target_model_name", Text, nullable=False),
    Column("data_type", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("current_phase", Text, nullable=True),
    Column("progress", Text, nullable=False),
    Column("config", Text, nullable=False),
    Column("logs", Text, nullable=False),
    Column("metrics", Text, nullable=False),
    Column("eta_s", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("runner", Text, nullable=True),
    Column("heartbeat_at", Text, nullable=True),
    Column("worker_pid", BigInteger, nullable=True),
    Column("attempts", BigInteger, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("started_at", Text, nullable=True),
    Column("finished_at", Text, nullable=True),
    Column("updated_at", Text, nullable=False),
)


@dataclass(frozen=True)
class JobRecord:
    """One stored job. ``job_id`` is the row id as text, as the seed's API spells it."""

    job_id: str
    base_model: str
    target_model_name: str
    data_type: str
    status: str
    current_phase: str | None
    progress: float
    config: dict[str, Any]
    logs: list[str]
    metrics: dict[str, Any]
    eta_s: float | None
    error: str | None
    runner: str | None
    heartbeat_at: datetime | None
    worker_pid: int | None
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """The seed's job shape: ``status`` is the phase while the job runs (as in the seed's
        example, ``"training"``); ``state`` is always the lifecycle status."""
        shown = self.current_phase if self.status == "running" and self.current_phase else None
        return {
            "job_id": self.job_id,
            "base_model": self.base_model,
            "target_model_name": self.target_model_name,
            "data_type": self.data_type,
            "status": shown or self.status,
            "state": self.status,
            "current_phase": self.current_phase,
            "progress": round(self.progress, 4),
            "start_time": self.started_at.isoformat() if self.started_at else None,
            "end_time": self.finished_at.isoformat() if self.finished_at else None,
            "eta_seconds": None if self.eta_s is None else round(self.eta_s, 1),
            "logs": list(self.logs),
            "metrics": dict(self.metrics),
            "error": self.error,
            "hyperparameters": self.config.get("hyperparameters"),
            "target_capabilities": self.config.get("target_capabilities", []),
            "training_data_path": self.config.get("training_data"),
            "created_at": self.created_at.isoformat(),
        }


def _job_key(job_id: str | int) -> int:
    key = row_id(job_id)
    if key is None:
        raise JobNotFoundError(f"no fine-tuning job '{job_id}'")
    return key


def _time(value: str | None) -> datetime | None:
    return from_db_time(value) if value else None


def _to_record(row: Row[Any]) -> JobRecord:
    return JobRecord(
        job_id=str(row.id),
        base_model=row.base_model,
        target_model_name=row.target_model_name,
        data_type=row.data_type,
        status=row.status,
        current_phase=row.current_phase,
        progress=float(row.progress),
        config=json.loads(row.config),
        logs=json.loads(row.logs),
        metrics=json.loads(row.metrics),
        eta_s=None if row.eta_s is None else float(row.eta_s),
        error=row.error,
        runner=row.runner,
        heartbeat_at=_time(row.heartbeat_at),
        worker_pid=row.worker_pid,
        attempts=row.attempts,
        created_at=from_db_time(row.created_at),
        started_at=_time(row.started_at),
        finished_at=_time(row.finished_at),
        updated_at=from_db_time(row.updated_at),
    )


# Phases a job may be listed by: ``?status=training`` finds running jobs in that phase.
_PHASES = ("validating", "preparing", "training", "evaluating", "exporting", "deploying")


class FineTuningJobRepository:
    """Jobs in the shared database; safe to use from several processes."""

    STATUSES = ("pending", "running", "completed", "failed", "cancelled")

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(self, config: Mapping[str, Any]) -> JobRecord:
        """Store a new ``pending`` job for ``config`` (a ``JobConfig.to_dict()``)."""
        now = to_db_time(utc_now())
        with write_transaction(self._engine) as conn:
            result = conn.execute(
                jobs_table.insert().values(
                    base_model=config["base_model"],
                    target_model_name=config["target_model_name"],
                    data_type=config["data_type"],
                    status="pending",
                    progress="0",
                    config=json.dumps(dict(config), sort_keys=True),
                    logs="[]",
                    metrics="{}",
                    attempts=0,
                    created_at=now,
                    updated_at=now,
                )
            )
            key = result.inserted_primary_key
        assert key is not None
        return self.get(str(key[0]))

    def get(self, job_id: str | int) -> JobRecord:
        """The job; :class:`JobNotFoundError` (404) for an unknown or malformed id."""
        key = _job_key(job_id)
        with read_connection(self._engine) as conn:
            row = conn.execute(select(jobs_table).where(jobs_table.c.id == key)).first()
        if row is None:
            raise JobNotFoundError(f"no fine-tuning job '{job_id}'")
        return _to_record(row)

    def list(self, status: str | None = None) -> builtins.list[JobRecord]:
        """Jobs, newest first; filtered by a status or, for running jobs, a phase."""
        query = select(jobs_table).order_by(jobs_table.c.id.desc())
        if status is not None:
            if status in self.STATUSES:
                query = query.where(jobs_table.c.status == status)
            elif status in _PHASES:
                query = query.where(
                    jobs_table.c.status == "running", jobs_table.c.current_phase == status
                )
            else:
                valid = ", ".join((*self.STATUSES, *_PHASES))
                raise InvalidRequestError(f"unknown job status '{status}'; valid: {valid}")
        with read_connection(self._engine) as conn:
            return [_to_record(row) for row in conn.execute(query)]


def progress_columns(
    *,
    phase: str | None = None,
    progress: float | None = None,
    eta_s: float | None = None,
    worker_pid: int | None = None,
) -> dict[str, Any]:
    """A job's progress as its columns hold it, for a renewal of its lease (None: unchanged).

    >>> progress_columns(phase="training", progress=0.5, worker_pid=7)
    {'current_phase': 'training', 'progress': '0.5', 'worker_pid': 7}
    """
    columns: dict[str, Any] = {}
    if phase is not None:
        columns["current_phase"] = phase
    if progress is not None:
        columns["progress"] = repr(float(progress))
    if eta_s is not None:
        columns["eta_s"] = repr(float(eta_s))
    if worker_pid is not None:
        columns["worker_pid"] = worker_pid
    return columns


def appended(
    logs: Sequence[str] = (), metrics: Mapping[str, Any] | None = None
) -> Callable[[Row[Any]], dict[str, Any]]:
    """For a renewal's ``computed``: ``logs`` appended to the row's (the newest
    :data:`MAX_LOG_LINES` kept) and ``metrics`` merged into its."""

    def columns(row: Row[Any]) -> dict[str, Any]:
        changed: dict[str, Any] = {}
        if logs:
            changed["logs"] = json.dumps((json.loads(row.logs) + list(logs))[-MAX_LOG_LINES:])
        if metrics:
            merged = {**json.loads(row.metrics), **dict(metrics)}
            changed["metrics"] = json.dumps(merged, sort_keys=True)
        return changed

    return columns


def log_appended(line: str) -> ColumnElement[Any]:
    """``line`` appended to the row's logs inside the UPDATE itself (the newest
    :data:`MAX_LOG_LINES` kept): a status move takes plain values, and this keeps the append
    in the move's own transaction."""
    return _LogAppended(jobs_table.c.logs, literal(line, Text()))


class _LogAppended(FunctionElement[str]):
    """The JSON-array append of :func:`log_appended`, spelled per dialect: SQLite's JSON1
    functions and PostgreSQL's ``jsonb`` operators differ, the stored text (a JSON list of
    strings) does not."""

    name = "neurons_log_appended"
    type = Text()
    inherit_cache = True


@compiles(_LogAppended)
def _log_appended_sqlite(element: _LogAppended, compiler: SQLCompiler, **kw: Any) -> str:
    logs, line = element.clauses
    added = func.json_insert(logs, "$[#]", line)
    trimmed = case(
        (func.json_array_length(logs) >= MAX_LOG_LINES, func.json_remove(added, "$[0]")),
        else_=added,
    )
    return compiler.process(trimmed, **kw)


@compiles(_LogAppended, "postgresql")
def _log_appended_postgresql(element: _LogAppended, compiler: SQLCompiler, **kw: Any) -> str:
    logs, line = (compiler.process(clause, **kw) for clause in element.clauses)
    added = f"(CAST({logs} AS JSONB) || jsonb_build_array(CAST({line} AS TEXT)))"
    # jsonb - 0 drops the first element: the oldest line.
    return (
        f"CAST(CASE WHEN jsonb_array_length(CAST({logs} AS JSONB)) >= {MAX_LOG_LINES}"
        f" THEN {added} - 0 ELSE {added} END AS TEXT)"
    )
