"""How neurons talks to its database: engines, transactions and stored timestamps.

Several neurons processes (the control plane, embedded neurons, CLI commands) share one SQLite
file, so every connection is set up for that: WAL lets readers run beside a writer, a busy
timeout makes a writer wait for the lock instead of failing at once, and foreign keys are on
because SQLite leaves them off per connection.

Python's ``sqlite3`` (before 3.12) does not BEGIN before DDL or SELECT, which would make a
half-applied migration stick and reads unrepeatable. SQLAlchemy therefore emits BEGIN itself here
(the recipe from its SQLite documentation). Writers take the lock up front with
``BEGIN IMMEDIATE``: a deferred transaction that reads and then writes cannot wait for the lock
in WAL mode and would fail with "database is locked" as soon as another process wrote first.

PostgreSQL (``postgresql+psycopg://``) serves several control planes on several machines. The
repositories were written against SQLite's one-writer-at-a-time rule (read, decide, write:
an upsert, a compare-and-set move of a job's lease, an event id that must commit in order), so
a write transaction there takes one transaction-scoped advisory lock first: the same rule,
held until commit or rollback, with no retry loop in any repository. Writers stay in READ
COMMITTED, so each statement after the lock sees every write committed before it; readers get
REPEATABLE READ, the one consistent snapshot SQLite's read transaction gives.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event, func, select
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import ConnectionPoolEntry

from neurons.errors import StoreError

if TYPE_CHECKING:
    from neurons.store import Store

__all__ = [
    "create_engine_for",
    "from_db_time",
    "open_store",
    "read_connection",
    "to_db_time",
    "utc_now",
    "write_transaction",
]

# Execution option read by the "begin" hook; carried on the Connection so one engine serves both
# plain readers and lock-taking writers.
_BEGIN_OPTION = "neurons_sqlite_begin"

# Any fixed number: every neurons process takes this one advisory lock for a write transaction
# on PostgreSQL ("neur" in ASCII, so a DBA who sees it in pg_locks can tell whose it is).
_PG_WRITE_LOCK = 0x6E657572

_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
    "PRAGMA synchronous=NORMAL",
)


def create_engine_for(url: str) -> Engine:
    """Create an engine for ``url``, prepared for several processes sharing a SQLite file.

    For SQLite file URLs the parent directory is created, since a fresh ``NEURONS_HOME`` may not
    exist yet. Other backends get a plain engine with pre-ping (servers drop idle connections).
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"invalid database URL {url!r}: {exc}") from exc
    if parsed.get_backend_name() == "postgresql":
        try:
            # Pre-ping: servers drop idle connections. A control plane holds few at once (a
            # write waits on the advisory lock, not on the pool), so a small pool serves it.
            return create_engine(
                parsed, pool_pre_ping=True, pool_size=5, max_overflow=10, pool_recycle=1800
            )
        except (ArgumentError, ImportError) as exc:
            raise StoreError(f"cannot create a database engine for {url!r}: {exc}") from exc
    if parsed.get_backend_name() != "sqlite":
        try:
            return create_engine(parsed, pool_pre_ping=True)
        except (ArgumentError, ImportError) as exc:
            raise StoreError(f"cannot create a database engine for {url!r}: {exc}") from exc

    database = parsed.database
    if database and database != ":memory:" and not database.startswith("file:"):
        try:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the directory for {database!r}: {exc}") from exc
    engine = create_engine(parsed)
    event.listen(engine, "connect", _on_sqlite_connect)
    event.listen(engine, "begin", _on_sqlite_begin)
    return engine


def _on_sqlite_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    # None stops sqlite3 from issuing its own (DDL-blind) BEGINs; _on_sqlite_begin takes over.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        for pragma in _PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


def _on_sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql(conn.get_execution_options().get(_BEGIN_OPTION, "BEGIN"))


@contextmanager
def read_connection(engine: Engine) -> Iterator[Connection]:
    """A connection for reads; its implicit transaction gives one consistent snapshot."""
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                # READ COMMITTED would take a new snapshot per statement; a read-only
                # REPEATABLE READ transaction never fails to serialise, so this costs nothing.
                conn.execution_options(isolation_level="REPEATABLE READ")
            yield conn
    except SQLAlchemyError as exc:
        raise StoreError(f"database error: {exc}") from exc


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction holding the database's write lock from its first statement: SQLite's
    own, or on PostgreSQL the advisory lock every neurons writer takes (module docstring).

    Commits when the block ends, rolls back when it raises. Errors from the database become
    :class:`StoreError`; errors neurons raised on purpose inside the block pass unchanged.
    """
    try:
        with engine.connect() as conn:
            conn.execution_options(**{_BEGIN_OPTION: "BEGIN IMMEDIATE"})
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(select(func.pg_advisory_xact_lock(_PG_WRITE_LOCK)))
                yield conn
    except SQLAlchemyError as exc:
        raise StoreError(f"database error: {exc}") from exc


def utc_now() -> datetime:
    return datetime.now(UTC)


def to_db_time(value: datetime) -> str:
    """Encode as fixed-width ISO-8601 UTC, so stored timestamps also sort as text."""
    if value.tzinfo is None:
        raise ValueError("naive datetimes are ambiguous; pass a timezone-aware one")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def from_db_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    # Rows written by hand (sqlite3 shell) may lack an offset; the convention is UTC.
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def open_store(url: str) -> Store:
    """Open the database at ``url`` and bring its schema up to date: the one way in for callers."""
    # Imported here: the repositories and migrations import this module's transaction helpers.
    from neurons.store import Store
    from neurons.store.evaluations import EvaluationRepository
    from neurons.store.events import EventRepository
    from neurons.store.finetune import FineTuningJobRepository
    from neurons.store.keys import ApiKeyRepository, AuditRepository
    from neurons.store.kv import KeyValueRepository
    from neurons.store.learning import LearningRunRepository
    from neurons.store.migrations import migrate
    from neurons.store.nodes import NodeRepository
    from neurons.store.optimization import OptimizationSessionRepository
    from neurons.store.placements import PlacementRepository
    from neurons.store.snapshots import SnapshotRepository

    engine = create_engine_for(url)
    try:
        migrate(engine)
    except BaseException:
        engine.dispose()
        raise
    return Store(
        engine=engine,
        nodes=NodeRepository(engine),
        kv=KeyValueRepository(engine),
        evaluations=EvaluationRepository(engine),
        placements=PlacementRepository(engine),
        optimization=OptimizationSessionRepository(engine),
        fine_tuning=FineTuningJobRepository(engine),
        learning=LearningRunRepository(engine),
        keys=ApiKeyRepository(engine),
        audit=AuditRepository(engine),
        snapshots=SnapshotRepository(engine),
        events=EventRepository(engine),
    )
