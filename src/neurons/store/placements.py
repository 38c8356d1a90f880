"""Where models should live: the declared desired state that model sync works towards.

A placement says "model M belongs on the nodes carrying these labels" and/or "on N nodes";
:func:`neurons.network.sync.plan` turns the placements and what the nodes really hold into
copies. Model names are stored in their canonical display form (``llama3`` becomes
``llama3:latest``), so two spellings of one model cannot become two placements.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BigInteger, Column, MetaData, Row, Table, Text, select
from sqlalchemy.engine import Engine

from neurons.errors import InvalidRequestError, ModelNotFoundError
from neurons.ollama.names import ModelName
from neurons.store.engine import read_connection, to_db_time, utc_now, write_transaction

__all__ = ["Placement", "PlacementRepository", "placements_table"]

# The schema as of the latest migration, for queries; migrations.py owns how it came to be.
# Integers are BigInteger as the migrations make them on PostgreSQL, so a large id binds.
placements_table = Table(
    "model_placements",
    MetaData(),
    Column("model", Text, primary_key=True),
    Column("labels", Text, nullable=False),
    Column("replicas", BigInteger, nullable=True),
    Column("created_at", Text, nullable=False),
    Column("updated_at", Text, nullable=False),
)


@dataclass(frozen=True)
class Placement:
    """``model`` should be on the nodes whose labels include ``labels`` (empty: any node),
    on ``replicas`` of them (None: on all of them)."""

    model: str
    labels: dict[str, str] = field(default_factory=dict)
    replicas: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "labels": dict(self.labels), "replicas": self.replicas}


class PlacementRepository:
    """Placements in the shared database, one per model; safe to use from several processes."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def set(
        self,
        model: str,
        labels: Mapping[str, str] | None = None,
        replicas: int | None = None,
    ) -> Placement:
        """Create or replace the placement of ``model``.

        At least one of ``labels`` (non-empty) and ``replicas`` must be given, and
        ``replicas`` must be at least 1: :class:`InvalidRequestError` otherwise, as for a
        model name that is not a valid Ollama name.
        """
        name = _canonical(model)
        clean = dict(labels or {})
        if not all(isinstance(k, str) and k and isinstance(v, str) for k, v in clean.items()):
            raise InvalidRequestError("placement labels must map non-empty strings to strings")
        if replicas is not None and (isinstance(replicas, bool) or not isinstance(replicas, int)):
            raise InvalidRequestError(f"replicas must be an integer, not {replicas!r}")
        if replicas is not None and replicas < 1:
            raise InvalidRequestError(f"replicas must be at least 1, not {replicas}")
        if not clean and replicas is None:
            raise InvalidRequestError(f"a placement of {name} needs labels, replicas or both")
        encoded = json.dumps(clean, sort_keys=True)
        now = to_db_time(utc_now())
        table = placements_table
        # Update-then-insert under the write lock rather than a dialect-specific upsert, as the
        # kv repository does, so a non-SQLite database URL keeps working.
        with write_transaction(self._engine) as conn:
            updated = conn.execute(
                table.update()
                .where(table.c.model == name)
                .values(labels=encoded, replicas=replicas, updated_at=now)
            )
            if updated.rowcount == 0:
                conn.execute(
                    table.insert().values(
                        model=name,
                        labels=encoded,
                        replicas=replicas,
                        created_at=now,
                        updated_at=now,
                    )
                )
        return Placement(model=name, labels=clean, replicas=replicas)

    def get(self, model: str) -> Placement:
        """The placement of ``model``; :class:`ModelNotFoundError` when it has none."""
        name = _canonical(model)
        with read_connection(self._engine) as conn:
            row = conn.execute(
                select(placements_table).where(placements_table.c.model == name)
            ).first()
        if row is None:
            raise ModelNotFoundError(f"no placement for model {name!r}")
        return _to_placement(row)

    def list(self) -> builtins.list[Placement]:
        """Every placement, by model name."""
        with read_connection(self._engine) as conn:
            rows = conn.execute(select(placements_table).order_by(placements_table.c.model))
            return [_to_placement(row) for row in rows]

    def remove(self, model: str) -> None:
        """Delete the placement of ``model``; :class:`ModelNotFoundError` when it has none.

        Nothing is deleted from any node: a placement only asks for copies to be made.
        """
        name = _canonical(model)
        with write_transaction(self._engine) as conn:
            deleted = conn.execute(
                placements_table.delete().where(placements_table.c.model == name)
            )
            if deleted.rowcount == 0:
                raise ModelNotFoundError(f"no placement for model {name!r}")


def _canonical(model: str) -> str:
    # ModelName.parse refuses an empty or malformed name (InvalidModelNameError, a 400).
    if not isinstance(model, str):
        raise InvalidRequestError(f"a model name must be a string, not {model!r}")
    return ModelName.parse(model).display


def _to_placement(row: Row[Any]) -> Placement:
    return Placement(model=row.model, labels=json.loads(row.labels), replicas=row.replicas)
