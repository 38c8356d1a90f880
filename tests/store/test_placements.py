"""PlacementRepository on SQLite and PostgreSQL: migration, round-trips, upserts and refusals."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from neurons.errors import InvalidModelNameError, InvalidRequestError, ModelNotFoundError
from neurons.store import Placement, Store, create_engine_for, migrate, open_store
from tests.pg import CHECK_FAILED


def test_migration_creates_the_table_with_its_checks(db_url: str) -> None:
    engine = create_engine_for(db_url)
    try:
        migrate(engine)
        inspector = inspect(engine)
        assert inspector.get_pk_constraint("model_placements")["constrained_columns"] == ["model"]
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO model_placements (model, replicas, created_at, updated_at)"
                    " VALUES ('a:latest', 2, 't', 't')"
                )
            )
            assert conn.scalar(text("SELECT labels FROM model_placements")) == "{}"
        # Neither labels nor replicas, or zero replicas: refused by the schema itself too.
        for values in ("('b:latest', '{}', NULL, 't', 't')", "('c:latest', '{}', 0, 't', 't')"):
            with pytest.raises(Exception, match=CHECK_FAILED), engine.begin() as conn:
                conn.execute(
                    text(
                        "INSERT INTO model_placements"
                        f" (model, labels, replicas, created_at, updated_at) VALUES {values}"
                    )
                )
    finally:
        engine.dispose()


def test_set_get_list_round_trip(store: Store) -> None:
    first = store.placements.set("smollm2:135m", {"tier": "edge", "gpu": "no"}, 2)
    assert first == Placement("smollm2:135m", {"gpu": "no", "tier": "edge"}, 2)
    store.placements.set("llama3", replicas=1)
    assert store.placements.get("smollm2:135m") == first
    assert store.placements.get("llama3:latest") == Placement("llama3:latest", {}, 1)
    assert [p.model for p in store.placements.list()] == ["llama3:latest", "smollm2:135m"]
    assert first.to_dict() == {
        "model": "smollm2:135m",
        "labels": {"gpu": "no", "tier": "edge"},
        "replicas": 2,
    }


def test_names_are_canonical_so_spellings_share_one_placement(store: Store) -> None:
    store.placements.set("registry.ollama.ai/library/qwen", {"a": "b"})
    store.placements.set("qwen:latest", replicas=3)
    (only,) = store.placements.list()
    assert only == Placement("qwen:latest", {}, 3)


def test_set_replaces_and_keeps_created_at(store: Store, db_url: str) -> None:
    store.placements.set("m:1", {"zone": "a"})
    with store.engine.connect() as conn:
        created = conn.scalar(text("SELECT created_at FROM model_placements"))
    store.placements.set("m:1", None, 4)
    assert store.placements.get("m:1") == Placement("m:1", {}, 4)
    with store.engine.connect() as conn:
        row = conn.execute(text("SELECT created_at, updated_at FROM model_placements")).one()
    assert row.created_at == created
    assert row.updated_at >= created
    # Another process (a second store on the same file) sees the same state.
    other = open_store(db_url)
    try:
        assert other.placements.get("m:1").replicas == 4
    finally:
        other.close()


def test_remove(store: Store) -> None:
    store.placements.set("m:1", replicas=1)
    with pytest.raises(ModelNotFoundError):
        store.placements.remove("m")  # "m" is "m:latest": not the same model
    store.placements.remove("m:1")
    assert store.placements.list() == []


@pytest.mark.parametrize(
    ("model", "labels", "replicas", "error", "match"),
    [
        ("", {"a": "b"}, None, InvalidModelNameError, "invalid"),
        ("   ", None, 1, InvalidModelNameError, "invalid"),
        ("../../etc", None, 1, InvalidModelNameError, "invalid"),
        ("m", None, None, InvalidRequestError, "labels, replicas or both"),
        ("m", {}, None, InvalidRequestError, "labels, replicas or both"),
        ("m", None, 0, InvalidRequestError, "at least 1"),
        ("m", None, -2, InvalidRequestError, "at least 1"),
        ("m", None, True, InvalidRequestError, "integer"),
        ("m", {"": "x"}, None, InvalidRequestError, "labels"),
        ("m", {"a": 1}, None, InvalidRequestError, "labels"),
    ],
)
def test_invalid_placements_are_refused(
    store: Store,
    model: str,
    labels: dict[str, str] | None,
    replicas: int | None,
    error: type[Exception],
    match: str,
) -> None:
    with pytest.raises(error, match=match):
        store.placements.set(model, labels, replicas)
    assert store.placements.list() == []


def test_missing_placement_is_not_found(store: Store) -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        store.placements.get("nothing:here")
    assert caught.value.http_status == 404
    with pytest.raises(ModelNotFoundError):
        store.placements.remove("nothing:here")
