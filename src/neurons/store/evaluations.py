"""Measured evaluations of models on nodes: the library's "measured" performance figures."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Column, MetaData, Table, Text, select
from sqlalchemy.engine import Engine

from neurons.store.engine import read_connection, to_db_time, utc_now, write_transaction

__all__ = ["EvaluationRecord", "EvaluationRepository", "evaluations_table"]

# The schema as of the latest migration, for queries; migrations.py owns how it came to be.
# Integers are BigInteger as the migrations make them on PostgreSQL, so a large id binds.
evaluations_table = Table(
    "model_evaluations",
    MetaData(),
    Column("id", BigInteger, primary_key=True),
    Column("model", Text, nullable=False),
    Column("node", Text, nullable=False),
    Column("digest", Text, nullable=True),
    Column("evaluation_set", Text, nullable=False),
    Column("items", BigInteger, nullable=False),
    Column("score", Text, nullable=True),
    Column("tokens_per_second", Text, nullable=True),
    Column("details", Text, nullable=False),
    Column("created_at", Text, nullable=False),
)


def _number(text: str | None) -> float | None:
    return None if text is None else float(text)


@dataclass(frozen=True)
class EvaluationRecord:
    id: int
    model: str
    node: str
    digest: str | None
    evaluation_set: str
    items: int
    score: float | None
    tokens_per_second: float | None
    details: dict[str, Any]
    created_at: str


class EvaluationRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add(
        self,
        *,
        model: str,
        node: str,
        evaluation_set: str,
        items: int,
        score: float | None,
        tokens_per_second: float | None,
        digest: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> EvaluationRecord:
        values = {
            "model": model,
            "node": node,
            "digest": digest,
            "evaluation_set": evaluation_set,
            "items": items,
            "score": None if score is None else repr(float(score)),
            "tokens_per_second": (
                None if tokens_per_second is None else repr(float(tokens_per_second))
            ),
            "details": json.dumps(details or {}, sort_keys=True),
            "created_at": to_db_time(utc_now()),
        }
        with write_transaction(self._engine) as conn:
            new_id = conn.execute(evaluations_table.insert().values(**values)).inserted_primary_key
        assert new_id is not None
        return self._get(int(new_id[0]))

    def _get(self, evaluation_id: int) -> EvaluationRecord:
        with read_connection(self._engine) as conn:
            row = conn.execute(
                select(evaluations_table).where(evaluations_table.c.id == evaluation_id)
            ).one()
        return _record(row._mapping)

    def latest(self) -> dict[str, EvaluationRecord]:
        """The newest evaluation of every model (any node), keyed by model name."""
        with read_connection(self._engine) as conn:
            rows = conn.execute(select(evaluations_table).order_by(evaluations_table.c.id)).all()
        return {row.model: _record(row._mapping) for row in rows}

    def for_model(self, model: str) -> list[EvaluationRecord]:
        with read_connection(self._engine) as conn:
            rows = conn.execute(
                select(evaluations_table)
                .where(evaluations_table.c.model == model)
                .order_by(evaluations_table.c.id.desc())
            ).all()
        return [_record(row._mapping) for row in rows]


def _record(row: Any) -> EvaluationRecord:
    return EvaluationRecord(
        id=int(row["id"]),
        model=row["model"],
        node=row["node"],
        digest=row["digest"],
        evaluation_set=row["evaluation_set"],
        items=int(row["items"]),
        score=_number(row["score"]),
        tokens_per_second=_number(row["tokens_per_second"]),
        details=json.loads(row["details"]),
        created_at=row["created_at"],
    )
