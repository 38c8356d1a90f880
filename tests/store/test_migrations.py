"""Schema migrations on real SQLite files and a real PostgreSQL server: fresh, upgraded, newer
and failing databases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import Connection

from neurons.errors import MigrationError
from neurons.store import (
    MIGRATIONS,
    Migration,
    create_engine_for,
    current_version,
    migrate,
    open_store,
)
from neurons.store.engine import read_connection, write_transaction
from tests.pg import CHECK_FAILED

EXPECTED_COLUMNS = {
    "api_keys": {
        "id": ("TEXT", False),
        "name": ("TEXT", False),
        "prefix": ("TEXT", False),
        "secret_hash": ("TEXT", False),
        "scope": ("TEXT", False),
        "models": ("TEXT", False),
        "rpm": ("INTEGER", True),
        "tpm": ("INTEGER", True),
        "max_parallel": ("INTEGER", True),
        "expires_at": ("TEXT", True),
        "revoked_at": ("TEXT", True),
        "requests": ("INTEGER", False),
        "tokens": ("INTEGER", False),
        "last_used_at": ("TEXT", True),
        "created_at": ("TEXT", False),
        "updated_at": ("TEXT", False),
    },
    "audit_events": {
        "id": ("INTEGER", False),
        "at": ("TEXT", False),
        "actor": ("TEXT", False),
        "action": ("TEXT", False),
        "target": ("TEXT", False),
        "status": ("INTEGER", False),
        "detail": ("TEXT", False),
    },
    "schema_migrations": {
        "version": ("INTEGER", False),
        "name": ("TEXT", False),
        "applied_at": ("TEXT", False),
    },
    "nodes": {
        "id": ("TEXT", False),
        "name": ("TEXT", False),
        "url": ("TEXT", False),
        "kind": ("TEXT", False),
        "labels": ("TEXT", False),
        "priority": ("INTEGER", False),
        "status": ("TEXT", False),
        "last_seen_at": ("TEXT", True),
        "created_at": ("TEXT", False),
        "updated_at": ("TEXT", False),
        "token_sealed": ("TEXT", True),
    },
    "node_events": {
        "id": ("INTEGER", False),
        "node_id": ("TEXT", False),
        "kind": ("TEXT", False),
        "detail": ("TEXT", False),
        "created_at": ("TEXT", False),
    },
    "kv": {
        "key": ("TEXT", False),
        "value": ("TEXT", False),
        "updated_at": ("TEXT", False),
    },
    "model_evaluations": {
        "id": ("INTEGER", False),
        "model": ("TEXT", False),
        "node": ("TEXT", False),
        "digest": ("TEXT", True),
        "evaluation_set": ("TEXT", False),
        "items": ("INTEGER", False),
        "score": ("TEXT", True),
        "tokens_per_second": ("TEXT", True),
        "details": ("TEXT", False),
        "created_at": ("TEXT", False),
    },
    "model_placements": {
        "model": ("TEXT", False),
        "labels": ("TEXT", False),
        "replicas": ("INTEGER", True),
        "created_at": ("TEXT", False),
        "updated_at": ("TEXT", False),
    },
    "optimization_sessions": {
        "id": ("INTEGER", False),
        "model_name": ("TEXT", False),
        "objective": ("TEXT", False),
        "strategy": ("TEXT", False),
        "model_type": ("TEXT", False),
        "status": ("TEXT", False),
        "config": ("TEXT", False),
        "study_name": ("TEXT", False),
        "current_iteration": ("INTEGER", False),
        "best": ("TEXT", True),
        "error": ("TEXT", True),
        "elapsed_s": ("TEXT", False),
        "runner": ("TEXT", True),
        "heartbeat_at": ("TEXT", True),
        "created_at": ("TEXT", False),
        "started_at": ("TEXT", True),
        "finished_at": ("TEXT", True),
        "updated_at": ("TEXT", False),
    },
    "fine_tuning_jobs": {
        "id": ("INTEGER", False),
        "base_model": ("TEXT", False),
        "target_model_name": ("TEXT", False),
        "data_type": ("TEXT", False),
        "status": ("TEXT", False),
        "current_phase": ("TEXT", True),
        "progress": ("TEXT", False),
        "config": ("TEXT", False),
        "logs": ("TEXT", False),
        "metrics": ("TEXT", False),
        "eta_s": ("TEXT", True),
        "error": ("TEXT", True),
        "runner": ("TEXT", True),
        "heartbeat_at": ("TEXT", True),
        "worker_pid": ("INTEGER", True),
        "attempts": ("INTEGER", False),
        "created_at": ("TEXT", False),
        "started_at": ("TEXT", True),
        "finished_at": ("TEXT", True),
        "updated_at": ("TEXT", False),
    },
    "learning_runs": {
        "id": ("INTEGER", False),
        "mode": ("TEXT", False),
        "dataset": ("TEXT", False),
        "status": ("TEXT", False),
        "config": ("TEXT", False),
        "current_round": ("INTEGER", False),
        "total_rounds": ("INTEGER", False),
        "result": ("TEXT", False),
        "error": ("TEXT", True),
        "created_at": ("TEXT", False),
        "started_at": ("TEXT", True),
        "finished_at": ("TEXT", True),
        "updated_at": ("TEXT", False),
        "runner": ("TEXT", True),
        "heartbeat_at": ("TEXT", True),
        "attempts": ("INTEGER", False),
    },
    "events": {
        "id": ("INTEGER", False),
        "at": ("TEXT", False),
        "kind": ("TEXT", False),
        "subject": ("TEXT", False),
        "payload": ("TEXT", False),
    },
    "memory_entries": {
        "id": ("INTEGER", False),
        "namespace": ("TEXT", False),
        "text": ("TEXT", False),
        "metadata": ("TEXT", False),
        "embedding": ("BLOB", False),
        "dimensions": ("INTEGER", False),
        "model": ("TEXT", False),
        "digest": ("TEXT", False),
        "created_at": ("TEXT", False),
    },
    "state_snapshots": {
        "id": ("INTEGER", False),
        "created_at": ("TEXT", False),
        "reason": ("TEXT", False),
        "components": ("TEXT", False),
        "status": ("TEXT", False),
    },
    "learning_events": {
        "id": ("INTEGER", False),
        "run_id": ("INTEGER", False),
        "round": ("INTEGER", True),
        "kind": ("TEXT", False),
        "node_id": ("TEXT", True),
        "payload": ("TEXT", False),
        "created_at": ("TEXT", False),
    },
    "rate_counts": {
        "id": ("INTEGER", False),
        "key_id": ("TEXT", False),
        "at": ("DOUBLE", False),
        "requests": ("INTEGER", False),
        "tokens": ("INTEGER", False),
    },
    "rate_in_flight": {
        "id": ("INTEGER", False),
        "key_id": ("TEXT", False),
        "holder": ("TEXT", False),
        "started_at": ("DOUBLE", False),
    },
}
# SQLite's INTEGER is 64-bit: PostgreSQL's equal is BIGINT; BLOB is BYTEA there.
_POSTGRESQL_TYPES = {"INTEGER": "BIGINT", "BLOB": "BYTEA", "DOUBLE": "DOUBLE PRECISION"}
NAMES = [
    "m001_nodes",
    "m002_node_events",
    "m003_kv",
    "m004_model_evaluations",
    "m005_model_placements",
    "m006_optimization_sessions",
    "m007_fine_tuning_jobs",
    "m008_learning_runs",
    "m009_api_keys_and_audit",
    "m010_node_tokens",
    "m011_state_snapshots",
    "m012_learning_run_leases",
    "m013_events",
    "m014_memory",
    "m015_openai_node_kind",
    "m016_rate_limits",
]


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    created = create_engine_for(db_url)
    yield created
    created.dispose()


def _versions(engine: Engine) -> list[tuple[int, str]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT version, name FROM schema_migrations ORDER BY version"))
        return [(row.version, row.name) for row in rows]


def test_registry_is_numbered_in_order() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(NAMES) + 1))
    assert [m.name for m in MIGRATIONS] == NAMES


def test_fresh_migrate_creates_every_table_with_exact_columns(engine: Engine, db_url: str) -> None:
    assert current_version(engine) == 0
    assert migrate(engine) == NAMES

    inspector = inspect(engine)
    assert set(inspector.get_table_names()) >= set(EXPECTED_COLUMNS)
    types = _POSTGRESQL_TYPES if engine.dialect.name == "postgresql" else {}
    for table, expected in EXPECTED_COLUMNS.items():
        columns = {
            col["name"]: (str(col["type"]), col["nullable"]) for col in inspector.get_columns(table)
        }
        assert columns == {
            name: (types.get(kind, kind), nullable) for name, (kind, nullable) in expected.items()
        }, table

    assert inspector.get_pk_constraint("nodes")["constrained_columns"] == ["id"]
    assert inspector.get_pk_constraint("kv")["constrained_columns"] == ["key"]
    assert [u["column_names"] for u in inspector.get_unique_constraints("nodes")] == [["name"]]
    (fk,) = inspector.get_foreign_keys("node_events")
    assert fk["referred_table"] == "nodes"
    assert fk["constrained_columns"] == ["node_id"]
    assert fk["options"].get("ondelete") == "CASCADE"
    assert [i["column_names"] for i in inspector.get_indexes("node_events")] == [["node_id"]]
    # Ids are never reused: AUTOINCREMENT on SQLite, a sequence (BIGSERIAL) on PostgreSQL.
    if engine.dialect.name == "postgresql":
        (id_column,) = [c for c in inspector.get_columns("node_events") if c["name"] == "id"]
        assert "nextval" in str(id_column["default"])
    else:
        with engine.connect() as conn:
            ddl = conn.scalar(text("SELECT sql FROM sqlite_master WHERE name = 'node_events'"))
        assert "AUTOINCREMENT" in ddl
        assert Path(db_url.removeprefix("sqlite:///")).is_file()

    assert _versions(engine) == list(enumerate(NAMES, start=1))
    assert current_version(engine) == len(MIGRATIONS)


def test_defaults_and_kind_check_are_in_the_schema(engine: Engine) -> None:
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO nodes (id, name, url, kind, created_at, updated_at)"
                " VALUES ('n1', 'one', 'http://x', 'ollama', 't', 't')"
            )
        )
        row = conn.execute(text("SELECT labels, priority, status FROM nodes")).one()
    assert tuple(row) == ("{}", 0, "unknown")
    with pytest.raises(Exception, match=CHECK_FAILED), engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO nodes (id, name, url, kind, created_at, updated_at)"
                " VALUES ('n2', 'two', 'http://x', 'vllm', 't', 't')"
            )
        )


def test_every_connection_is_configured(engine: Engine) -> None:
    migrate(engine)
    if engine.dialect.name == "postgresql":
        # No pragmas there: a writer holds the advisory lock, a reader one snapshot.
        with write_transaction(engine) as conn:
            locks = conn.scalar(
                text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted")
            )
            assert locks == 1
        with read_connection(engine) as conn:
            assert conn.scalar(text("SHOW transaction_isolation")) == "repeatable read"
        return
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL


def test_second_migrate_applies_nothing(engine: Engine, db_url: str) -> None:
    assert migrate(engine) == NAMES
    assert migrate(engine) == []
    # A second engine (another process) sees the finished schema too.
    assert migrate(create_engine_for(db_url)) == []
    assert current_version(engine) == len(MIGRATIONS)


def test_upgrade_from_version_one_keeps_rows(engine: Engine, db_url: str) -> None:
    assert migrate(engine, target=1) == ["m001_nodes"]
    assert current_version(engine) == 1
    assert set(inspect(engine).get_table_names()) == {"schema_migrations", "nodes"}
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO nodes (id, name, url, kind, created_at, updated_at) VALUES"
                " ('abc', 'old', 'http://old:11434', 'ollama',"
                " '2024-01-01T00:00:00.000000+00:00', '2024-01-01T00:00:00.000000+00:00')"
            )
        )
    engine.dispose()

    store = open_store(db_url)
    try:
        assert current_version(store.engine) == len(MIGRATIONS)
        assert _versions(store.engine) == list(enumerate(NAMES, start=1))
        node = store.nodes.get("old")
        assert node.id == "abc"
        assert node.url == "http://old:11434"
        store.nodes.record_event("old", "health", {"ok": True})
        assert store.nodes.events("abc")[0]["detail"] == {"ok": True}
    finally:
        store.close()


def test_migrate_with_target_reports_only_what_it_applied(engine: Engine) -> None:
    assert migrate(engine, target=0) == []
    assert migrate(engine, target=2) == NAMES[:2]
    assert migrate(engine, target=2) == []
    assert migrate(engine) == NAMES[2:]
    with pytest.raises(MigrationError, match="target"):
        migrate(engine, target=len(MIGRATIONS) + 1)


def test_newer_database_is_refused(engine: Engine, db_url: str) -> None:
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO schema_migrations (version, name, applied_at)"
                " VALUES (99, 'm099_future', '2099-01-01T00:00:00+00:00')"
            )
        )
    with pytest.raises(MigrationError, match=r"\[99\]"):
        migrate(engine)
    with pytest.raises(MigrationError, match="newer"):
        open_store(db_url)


def test_failing_migration_rolls_back_and_keeps_version(engine: Engine) -> None:
    migrate(engine)

    def m004_broken(conn: Connection) -> None:
        conn.exec_driver_sql("CREATE TABLE half_done (x INTEGER)")
        conn.exec_driver_sql("INSERT INTO kv (key, value, updated_at) VALUES ('k', '1', 't')")
        raise RuntimeError("boom")

    broken = [
        *MIGRATIONS,
        Migration(version=len(MIGRATIONS) + 1, name="m999_broken", apply=m004_broken),
    ]
    with pytest.raises(MigrationError, match="m999_broken") as excinfo:
        migrate(engine, migrations=broken)
    assert isinstance(excinfo.value.__cause__, RuntimeError)

    assert current_version(engine) == len(MIGRATIONS)
    assert "half_done" not in inspect(engine).get_table_names()
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM kv")) == 0


def test_failing_sql_in_a_migration_is_a_migration_error(engine: Engine) -> None:
    def m001_bad_sql(conn: Connection) -> None:
        conn.exec_driver_sql("CREATE TABLE early (x INTEGER)")
        conn.exec_driver_sql("CREATE TABLE nonsense (")

    with pytest.raises(MigrationError, match="m001_bad_sql"):
        migrate(engine, migrations=[Migration(1, "m001_bad_sql", m001_bad_sql)])
    assert current_version(engine) == 0
    assert "early" not in inspect(engine).get_table_names()


def test_misnumbered_plan_is_refused(engine: Engine) -> None:
    skipping = [MIGRATIONS[0], MIGRATIONS[2]]
    with pytest.raises(MigrationError, match="expected 2"):
        migrate(engine, migrations=skipping)


def test_decorator_refuses_bad_names_and_numbers() -> None:
    from neurons.store.migrations import migration

    def not_numbered(conn: Connection) -> None:
        del conn

    def m099_out_of_order(conn: Connection) -> None:
        del conn

    with pytest.raises(ValueError, match="named like"):
        migration(not_numbered)
    with pytest.raises(ValueError, match=f"expected {len(NAMES) + 1}"):
        migration(m099_out_of_order)
    assert len(MIGRATIONS) == len(NAMES)
