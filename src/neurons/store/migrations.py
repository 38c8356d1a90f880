"""Numbered schema migrations, applied in order and recorded in ``schema_migrations``.

Each migration is a function named ``mNNN_what`` registered with :func:`migration`; its number
is its version. A migration spells out its own tables instead of reusing the repositories'
``Table`` objects, because those describe the schema of today and a migration must keep creating
the schema of its own day. Never edit or renumber a released migration: add the next one.

Every migration runs in its own transaction together with the row that records it, so a failure
leaves the database at the previous version. Several processes may start at once; the write lock
taken by :func:`~neurons.store.engine.write_transaction` makes the second one find the work done.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection, Engine

from neurons.errors import MigrationError, StoreError
from neurons.store.engine import read_connection, to_db_time, utc_now, write_transaction

__all__ = [
    "MIGRATIONS",
    "Migration",
    "current_version",
    "migrate",
    "migration",
]

MigrationFn = Callable[[Connection], None]

_NAME = re.compile(r"^m(\d{3})_[a-z0-9_]+$")

# SQLite's INTEGER is 64 bits wide, PostgreSQL's 32: BIGINT there (BIGSERIAL for an id) keeps
# ids and counters (a key's tokens) as wide as on SQLite. SQLite keeps INTEGER, the one
# spelling that makes a primary key the rowid (and allows AUTOINCREMENT).
_INT = BigInteger().with_variant(Integer(), "sqlite")

_ledger_metadata = MetaData()
schema_migrations = Table(
    "schema_migrations",
    _ledger_metadata,
    Column("version", _INT, primary_key=True, autoincrement=False),
    Column("name", Text, nullable=False),
    Column("applied_at", Text, nullable=False),
)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: MigrationFn


MIGRATIONS: list[Migration] = []


def migration(fn: MigrationFn) -> MigrationFn:
    """Register ``fn`` as the next migration; its name must carry the next number.

    Checking the number at import time turns a mis-numbered or duplicated migration into an
    immediate error instead of a database that silently skips one.
    """
    match = _NAME.match(fn.__name__)
    if match is None:
        raise ValueError(f"migration {fn.__name__!r} must be named like m001_what")
    version = int(match.group(1))
    expected = len(MIGRATIONS) + 1
    if version != expected:
        raise ValueError(f"migration {fn.__name__!r} has number {version}; expected {expected}")
    MIGRATIONS.append(Migration(version=version, name=fn.__name__, apply=fn))
    return fn


def current_version(engine: Engine) -> int:
    """The highest version recorded; 0 for a database never migrated."""
    with read_connection(engine) as conn:
        if not inspect(conn).has_table(schema_migrations.name):
            return 0
        version = conn.scalar(select(func.max(schema_migrations.c.version)))
    return 0 if version is None else int(version)


def migrate(
    engine: Engine,
    *,
    target: int | None = None,
    migrations: Sequence[Migration] | None = None,
) -> list[str]:
    """Apply the pending migrations in order and return the names of those applied.

    ``target`` stops after that version (tests use it to build old databases); ``migrations``
    replaces the registered list (tests use it to inject a failing one). Raises
    :class:`MigrationError` when the database records a version this code does not know (it was
    written by a newer neurons) or when a migration fails.
    """
    every = list(MIGRATIONS if migrations is None else migrations)
    _check_plan(every)
    known = {m.version for m in every}
    plan = every
    if target is not None:
        if not 0 <= target <= len(every):
            raise MigrationError(f"target version {target} is not between 0 and {len(every)}")
        plan = every[:target]

    _ensure_ledger(engine)
    with read_connection(engine) as conn:
        applied = _applied_versions(conn)
    _refuse_unknown(applied, known)

    applied_names: list[str] = []
    for step in plan:
        if step.version in applied:
            continue
        try:
            with write_transaction(engine) as conn:
                # Re-read under the write lock: another process may have migrated meanwhile.
                now_applied = _applied_versions(conn)
                _refuse_unknown(now_applied, known)
                if step.version in now_applied:
                    continue
                step.apply(conn)
                conn.execute(
                    schema_migrations.insert().values(
                        version=step.version, name=step.name, applied_at=to_db_time(utc_now())
                    )
                )
        except MigrationError:
            raise
        except Exception as exc:
            raise MigrationError(
                f"migration {step.name} failed and was rolled back: {exc}"
            ) from exc
        applied_names.append(step.name)
    return applied_names


def _check_plan(plan: Sequence[Migration]) -> None:
    for index, step in enumerate(plan, start=1):
        if step.version != index:
            raise MigrationError(
                f"migration {step.name} has version {step.version}; expected {index}"
            )


def _ensure_ledger(engine: Engine) -> None:
    with read_connection(engine) as conn:
        if inspect(conn).has_table(schema_migrations.name):
            return
    try:
        with write_transaction(engine) as conn:
            schema_migrations.create(conn, checkfirst=True)
    except StoreError as exc:
        raise MigrationError(f"cannot create the schema_migrations table: {exc}") from exc


def _applied_versions(conn: Connection) -> set[int]:
    return set(conn.scalars(select(schema_migrations.c.version)))


def _int_sql(conn: Connection) -> str:
    """:data:`_INT` as raw DDL spells it, for ``ALTER TABLE ... ADD COLUMN``."""
    return "BIGINT" if conn.dialect.name == "postgresql" else "INTEGER"


def _refuse_unknown(applied: set[int], known: set[int]) -> None:
    unknown = sorted(applied - known)
    if unknown:
        raise MigrationError(
            f"the database records schema version(s) {unknown} that this neurons does not know "
            f"(it knows up to {max(known, default=0)}); it was written by a newer neurons"
        )


@migration
def m001_nodes(conn: Connection) -> None:
    """The neurons (embedded and Ollama servers) that make up the network."""
    metadata = MetaData()
    nodes = Table(
        "nodes",
        metadata,
        Column("id", Text, primary_key=True),
        Column("name", Text, nullable=False),
        Column("url", Text, nullable=False),
        Column("kind", Text, nullable=False),
        Column("labels", Text, nullable=False, server_default=text("'{}'")),
        Column("priority", _INT, nullable=False, server_default=text("0")),
        Column("status", Text, nullable=False, server_default=text("'unknown'")),
        Column("last_seen_at", Text, nullable=True),
        Column("created_at", Text, nullable=False),
        Column("updated_at", Text, nullable=False),
        UniqueConstraint("name", name="uq_nodes_name"),
        CheckConstraint("kind IN ('embedded', 'ollama')", name="ck_nodes_kind"),
    )
    nodes.create(conn)


@migration
def m002_node_events(conn: Connection) -> None:
    """An append-only history per node (health changes, loads), dropped with the node."""
    metadata = MetaData()
    # Only as much of nodes as the foreign key needs; it already exists and is not created here.
    Table("nodes", metadata, Column("id", Text, primary_key=True))
    events = Table(
        "node_events",
        metadata,
        Column("id", _INT, primary_key=True),
        Column("node_id", Text, ForeignKey("nodes.id", ondelete="CASCADE"), nullable=False),
        Column("kind", Text, nullable=False),
        Column("detail", Text, nullable=False, server_default=text("'{}'")),
        Column("created_at", Text, nullable=False),
        Index("ix_node_events_node_id", "node_id"),
        # AUTOINCREMENT: ids never reused, so "newest first" by id stays true after deletes.
        sqlite_autoincrement=True,
    )
    events.create(conn)


@migration
def m003_kv(conn: Connection) -> None:
    """Small settings and state (JSON values) that do not deserve a table of their own."""
    metadata = MetaData()
    kv = Table(
        "kv",
        metadata,
        Column("key", Text, primary_key=True),
        Column("value", Text, nullable=False),
        Column("updated_at", Text, nullable=False),
    )
    kv.create(conn)


@migration
def m004_model_evaluations(conn: Connection) -> None:
    """Measured quality and speed of a model on a node (the library's measured scores)."""
    metadata = MetaData()
    evaluations = Table(
        "model_evaluations",
        metadata,
        Column("id", _INT, primary_key=True, autoincrement=True),
        Column("model", Text, nullable=False),
        Column("node", Text, nullable=False),
        Column("digest", Text, nullable=True),
        Column("evaluation_set", Text, nullable=False),
        Column("items", _INT, nullable=False),
        Column("score", Text, nullable=True),  # decimal text: exact across backends
        Column("tokens_per_second", Text, nullable=True),
        Column("details", Text, nullable=False),
        Column("created_at", Text, nullable=False),
        sqlite_autoincrement=True,
    )
    Index("ix_model_evaluations_model", evaluations.c.model, evaluations.c.created_at)
    evaluations.create(conn)


@migration
def m005_model_placements(conn: Connection) -> None:
    """Desired state for model sync: which models should live on which nodes.

    ``labels`` (a JSON object; ``{}`` for any node) picks the eligible nodes, ``replicas`` how
    many of them (NULL: all). A row that constrains neither would mean "every node", which is
    better said with an explicit ``replicas``, so the CHECK refuses it.
    """
    metadata = MetaData()
    placements = Table(
        "model_placements",
        metadata,
        Column("model", Text, primary_key=True),
        Column("labels", Text, nullable=False, server_default=text("'{}'")),
        Column("replicas", _INT, nullable=True),
        Column("created_at", Text, nullable=False),
        Column("updated_at", Text, nullable=False),
        CheckConstraint(
            "labels <> '{}' OR replicas IS NOT NULL", name="ck_model_placements_target"
        ),
        CheckConstraint("replicas IS NULL OR replicas >= 1", name="ck_model_placements_replicas"),
    )
    placements.create(conn)


@migration
def m006_optimization_sessions(conn: Connection) -> None:
    """Parameter optimization sessions (seed 002). The trials themselves live in Optuna's own
    tables (``studies``, ``trials``, ...), which Optuna creates and migrates in this database;
    ``study_name`` links the two. ``runner`` and ``heartbeat_at`` are the lease of the process
    running the session, so a control plane can tell a live runner from a dead one."""
    metadata = MetaData()
    sessions = Table(
        "optimization_sessions",
        metadata,
        Column("id", _INT, primary_key=True, autoincrement=True),
        Column("model_name", Text, nullable=False),
        Column("objective", Text, nullable=False),
        Column("strategy", Text, nullable=False),
        Column("model_type", Text, nullable=False),
        Column("status", Text, nullable=False),
        Column("config", Text, nullable=False),  # the whole validated SessionConfig, JSON
        Column("study_name", Text, nullable=False),
        Column("current_iteration", _INT, nullable=False, server_default=text("0")),
        Column("best", Text, nullable=True),  # JSON: the best result so far
        Column("error", Text, nullable=True),
        Column("elapsed_s", Text, nullable=False, server_default=text("'0'")),
        Column("runner", Text, nullable=True),
        Column("heartbeat_at", Text, nullable=True),
        Column("created_at", Text, nullable=False),
        Column("started_at", Text, nullable=True),
        Column("finished_at", Text, nullable=True),
        Column("updated_at", Text, nullable=False),
        UniqueConstraint("study_name", name="uq_optimization_sessions_study"),
        CheckConstraint(
            "status IN ('pending', 'running', 'completed', 'failed', 'cancelled')",
            name="ck_optimization_sessions_status",
        ),
        Index("ix_optimization_sessions_status", "status"),
        sqlite_autoincrement=True,
    )
    sessions.create(conn)


@migration
def m007_fine_tuning_jobs(conn: Connection) -> None:
    """Fine-tuning jobs (seed 002). ``config`` is the validated JobConfig (JSON); ``logs`` the
    last lines of the job's log (JSON list); ``metrics`` what training measured. ``runner``
    and ``heartbeat_at`` are the lease of the control plane driving the job, ``worker_pid``
    its training subprocess; ``attempts`` counts runs, so a job that keeps dying stops."""
    metadata = MetaData()
    jobs = Table(
        "fine_tuning_jobs",
        metadata,
        Column("id", _INT, primary_key=True, autoincrement=True),
        Column("base_model", Text, nullable=False),
        Column("target_model_name", Text, nullable=False),
        Column("data_type", Text, nullable=False),
        Column("status", Text, nullable=False),
        Column("current_phase", Text, nullable=True),
        Column("progress", Text, nullable=False, server_default=text("'0'")),
        Column("config", Text, nullable=False),
        Column("logs", Text, nullable=False, server_default=text("'[]'")),
        Column("metrics", Text, nullable=False, server_default=text("'{}'")),
        Column("eta_s", Text, nullable=True),
        Column("error", Text, nullable=True),
        Column("runner", Text, nullable=True),
        Column("heartbeat_at", Text, nullable=True),
        Column("worker_pid", _INT, nullable=True),
        Column("attempts", _INT, nullable=False, server_default=text("0")),
        Column("created_at", Text, nullable=False),
        Column("started_at", Text, nullable=True),
        Column("finished_at", Text, nullable=True),
        Column("updated_at", Text, nullable=False),
        CheckConstraint(
            "status IN ('pending', 'running', 'completed', 'failed', 'cancelled')",
            name="ck_fine_tuning_jobs_status",
        ),
        Index("ix_fine_tuning_jobs_status", "status"),
        sqlite_autoincrement=True,
    )
    jobs.create(conn)


@migration
def m008_learning_runs(conn: Connection) -> None:
    """Distributed-learning runs (issue 8) and their events. ``config`` is the validated
    RunConfig (JSON), ``result`` the latest round's summary, ``checkpoint`` the run's folder;
    ``learning_events`` holds every round, update, teaching and pairing event in order."""
    metadata = MetaData()
    runs = Table(
        "learning_runs",
        metadata,
        Column("id", _INT, primary_key=True, autoincrement=True),
        Column("mode", Text, nullable=False),
        Column("dataset", Text, nullable=False),
        Column("status", Text, nullable=False),
        Column("config", Text, nullable=False),
        Column("current_round", _INT, nullable=False, server_default=text("0")),
        Column("total_rounds", _INT, nullable=False),
        Column("result", Text, nullable=False, server_default=text("'{}'")),
        Column("error", Text, nullable=True),
        Column("created_at", Text, nullable=False),
        Column("started_at", Text, nullable=True),
        Column("finished_at", Text, nullable=True),
        Column("updated_at", Text, nullable=False),
        CheckConstraint(
            "status IN ('pending', 'running', 'completed', 'failed', 'cancelled')",
            name="ck_learning_runs_status",
        ),
        Index("ix_learning_runs_status", "status"),
        sqlite_autoincrement=True,
    )
    events = Table(
        "learning_events",
        metadata,
        Column("id", _INT, primary_key=True, autoincrement=True),
        Column(
            "run_id",
            _INT,
            ForeignKey("learning_runs.id", ondelete="CASCADE"),
            nullable=False,
        ),
        Column("round", _INT, nullable=True),
        Column("kind", Text, nullable=False),
        Column("node_id", Text, nullable=True),
        Column("payload", Text, nullable=False),
        Column("created_at", Text, nullable=False),
        Index("ix_learning_events_run", "run_id", "id"),
    )
    runs.create(conn)
    events.create(conn)


@migration
def m009_api_keys_and_audit(conn: Connection) -> None:
    """API keys (issue 19): only the SHA-256 of a secret and a display prefix are kept, never
    the secret. ``models`` is a JSON list (empty: every model); limits are NULL when unset;
    ``requests``/``tokens``/``last_used_at`` are the key's usage, flushed in batches.
    ``audit_events`` records every mutating call: who (a key's name), what, target, result."""
    metadata = MetaData()
    keys = Table(
        "api_keys",
        metadata,
        Column("id", Text, primary_key=True),
        Column("name", Text, nullable=False),
        Column("prefix", Text, nullable=False),
        Column("secret_hash", Text, nullable=False),
        Column("scope", Text, nullable=False),
        Column("models", Text, nullable=False, server_default=text("'[]'")),
        Column("rpm", _INT, nullable=True),
        Column("tpm", _INT, nullable=True),
        Column("max_parallel", _INT, nullable=True),
        Column("expires_at", Text, nullable=True),
        Column("revoked_at", Text, nullable=True),
        Column("requests", _INT, nullable=False, server_default=text("0")),
        Column("tokens", _INT, nullable=False, server_default=text("0")),
        Column("last_used_at", Text, nullable=True),
        Column("created_at", Text, nullable=False),
        Column("updated_at", Text, nullable=False),
        UniqueConstraint("name", name="uq_api_keys_name"),
        UniqueConstraint("secret_hash", name="uq_api_keys_secret_hash"),
        CheckConstraint(
            "scope IN ('read', 'inference', 'manage', 'admin')", name="ck_api_keys_scope"
        ),
    )
    audit = Table(
        "audit_events",
        metadata,
        Column("id", _INT, primary_key=True, autoincrement=True),
        Column("at", Text, nullable=False),
        Column("actor", Text, nullable=False),
        Column("action", Text, nullable=False),
        Column("target", Text, nullable=False, server_default=text("''")),
        Column("status", _INT, nullable=False),
        Column("detail", Text, nullable=False, server_default=text("'{}'")),
        Index("ix_audit_events_at", "at"),
        sqlite_autoincrement=True,
    )
    keys.create(conn)
    audit.create(conn)


@migration
def m010_node_tokens(conn: Connection) -> None:
    """A node's token (issue 19), sealed with the control plane's secret key: the store never
    holds it in the clear. NULL: the node needs none."""
    conn.execute(text("ALTER TABLE nodes ADD COLUMN token_sealed TEXT"))


@migration
def m011_state_snapshots(conn: Connection) -> None:
    """Versions of the state snapshots (seed 003's persistence system, issue 20). Each row is
    one version whose files (one JSON file per component under the snapshot directory) were
    all durable before it was inserted; ``components`` maps each component to its file's
    ``sha256`` and ``bytes``. ``status`` is ``complete`` until a verification finds a file
    that no longer matches (``corrupt``). The id is the version number, never reused once
    committed (AUTOINCREMENT)."""
    metadata = MetaData()
    snapshots = Table(
        "state_snapshots",
        metadata,
        Column("id", _INT, primary_key=True, autoincrement=True),
        Column("created_at", Text, nullable=False),
        Column("reason", Text, nullable=False),
        Column("components", Text, nullable=False),
        Column("status", Text, nullable=False, server_default=text("'complete'")),
        CheckConstraint("status IN ('complete', 'corrupt')", name="ck_state_snapshots_status"),
        sqlite_autoincrement=True,
    )
    snapshots.create(conn)


@migration
def m012_learning_run_leases(conn: Connection) -> None:
    """Learning runs get the lease the other kinds of background work have (issue 20): the
    runner (``host:pid:nonce``) holding a ``running`` run and its last heartbeat, so a
    second process never runs it twice and a cancel from anywhere reaches the runner."""
    conn.execute(text("ALTER TABLE learning_runs ADD COLUMN runner TEXT"))
    conn.execute(text("ALTER TABLE learning_runs ADD COLUMN heartbeat_at TEXT"))
    conn.execute(
        text(f"ALTER TABLE learning_runs ADD COLUMN attempts {_int_sql(conn)} NOT NULL DEFAULT 0")
    )


@migration
def m013_events(conn: Connection) -> None:
    """The event bus's log (issue 20): node up/down, breaker changes, job transitions, model
    created/deleted/synced, snapshot saved. Ids only grow (AUTOINCREMENT), so a reader that
    remembers the last id it saw reads on with ``after=`` and misses nothing."""
    metadata = MetaData()
    events = Table(
        "events",
        metadata,
        Column("id", _INT, primary_key=True, autoincrement=True),
        Column("at", Text, nullable=False),
        Column("kind", Text, nullable=False),
        Column("subject", Text, nullable=False, server_default=text("''")),
        Column("payload", Text, nullable=False, server_default=text("'{}'")),
        Index("ix_events_kind", "kind"),
        sqlite_autoincrement=True,
    )
    events.create(conn)


@migration
def m014_memory(conn: Connection) -> None:
    """Language memory (seed 003, issue 22): texts with their metadata and embedding, per
    namespace. The embedding is float32 bytes with the model (name and digest) that made
    it, so vectors of two models are never compared. Ids only grow (AUTOINCREMENT): a
    citation never comes to name another text."""
    metadata = MetaData()
    entries = Table(
        "memory_entries",
        metadata,
        Column("id", _INT, primary_key=True, autoincrement=True),
        Column("namespace", Text, nullable=False),
        Column("text", Text, nullable=False),
        Column("metadata", Text, nullable=False, server_default=text("'{}'")),
        Column("embedding", LargeBinary, nullable=False),
        Column("dimensions", _INT, nullable=False),
        Column("model", Text, nullable=False),
        Column("digest", Text, nullable=False),
        Column("created_at", Text, nullable=False),
        Index("ix_memory_entries_namespace_digest", "namespace", "digest"),
        sqlite_autoincrement=True,
    )
    entries.create(conn)


@migration
def m015_openai_node_kind(conn: Connection) -> None:
    """Nodes of kind ``openai`` (issue 23): OpenAI-compatible servers. Only m001's CHECK
    changes. PostgreSQL replaces the constraint; SQLite cannot alter one, and rebuilding
    ``nodes`` would cascade-delete its events, so its stored schema text is edited in place
    (SQLite's documented way for a change no existing row can violate: it only widens)."""
    old = "kind IN ('embedded', 'ollama')"
    new = "kind IN ('embedded', 'ollama', 'openai')"
    if conn.dialect.name != "sqlite":
        conn.execute(text("ALTER TABLE nodes DROP CONSTRAINT ck_nodes_kind"))
        conn.execute(text(f"ALTER TABLE nodes ADD CONSTRAINT ck_nodes_kind CHECK ({new})"))
        return
    version = conn.execute(text("PRAGMA schema_version")).scalar_one()
    conn.execute(text("PRAGMA writable_schema=ON"))
    conn.execute(
        text(
            "UPDATE sqlite_master SET sql = replace(sql, :old, :new)"
            " WHERE type = 'table' AND name = 'nodes'"
        ),
        {"old": old, "new": new},
    )
    conn.execute(text(f"PRAGMA schema_version={int(version) + 1}"))  # others re-read it
    conn.execute(text("PRAGMA writable_schema=OFF"))


@migration
def m016_rate_limits(conn: Connection) -> None:
    """Per-key limits counted in the database (issue 23), so several control planes on one
    database share each key's minute: one row per admitted request or charged tokens (``at``
    in Unix seconds; rows leave once a minute old) and one per request in flight, held by
    its control plane (``host:pid:nonce``)."""
    metadata = MetaData()
    Table(
        "rate_counts",
        metadata,
        Column("id", _INT, primary_key=True, autoincrement=True),
        Column("key_id", Text, nullable=False),
        Column("at", Double, nullable=False),
        Column("requests", _INT, nullable=False),
        Column("tokens", _INT, nullable=False),
        Index("ix_rate_counts_key_at", "key_id", "at"),
    )
    Table(
        "rate_in_flight",
        metadata,
        Column("id", _INT, primary_key=True, autoincrement=True),
        Column("key_id", Text, nullable=False),
        Column("holder", Text, nullable=False),
        Column("started_at", Double, nullable=False),
        Index("ix_rate_in_flight_key", "key_id"),
    )
    metadata.create_all(conn)
