"""Language memory's entries in the shared database (migration ``m014_memory``).

An entry is a text, its metadata (a JSON object) and its embedding, kept per namespace. The
embedding is stored as little-endian float32 bytes (1.5 KiB for MiniLM's 384 dimensions)
with the name and digest of the model that made it: vectors of two models live in different
spaces, so a search only compares vectors of one digest, and the service re-embeds the rest
(:meth:`MemoryRepository.stale`, :meth:`MemoryRepository.set_embeddings`).

Ids come from an AUTOINCREMENT primary key: an id deleted is never given to another entry,
so a citation that names one can never point at some other text later.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    Row,
    Table,
    Text,
    func,
    select,
    text,
)
from sqlalchemy.engine import Engine

from neurons.errors import InvalidRequestError, MemoryNotFoundError
from neurons.store.engine import (
    from_db_time,
    read_connection,
    to_db_time,
    utc_now,
    write_transaction,
)

__all__ = ["MemoryEntry", "MemoryRepository", "decode_vector", "encode_vector", "memory_table"]

# The schema as of the latest migration, for queries; migrations.py owns how it came to be.
memory_table = Table(
    "memory_entries",
    MetaData(),
    # BigInteger as the migrations make it on PostgreSQL, so a huge id binds (and is a 404).
    Column("id", BigInteger, primary_key=True),
    Column("namespace", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("metadata", Text, nullable=False),
    Column("embedding", LargeBinary, nullable=False),
    Column("dimensions", Integer, nullable=False),
    Column("model", Text, nullable=False),
    Column("digest", Text, nullable=False),
    Column("created_at", Text, nullable=False),
)

_VECTOR = np.dtype("<f4")
_RESYNC_SEQUENCE = (
    "SELECT setval(pg_get_serial_sequence('memory_entries', 'id'), "
    "GREATEST((SELECT MAX(id) FROM memory_entries), "
    "nextval(pg_get_serial_sequence('memory_entries', 'id'))))"
)


def encode_vector(vector: Sequence[float] | np.ndarray) -> bytes:
    """A vector as stored: little-endian float32, whatever the machine's byte order."""
    return np.asarray(vector, dtype=_VECTOR).tobytes()


def decode_vector(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=_VECTOR)


@dataclass(frozen=True)
class MemoryEntry:
    id: int
    namespace: str
    text: str
    metadata: dict[str, Any]
    model: str
    digest: str
    created_at: datetime
    embedding: bytes | None = None  # only where asked for (snapshots); searches read matrices

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "namespace": self.namespace,
            "text": self.text,
            "metadata": self.metadata,
            "model": self.model,
            "created_at": self.created_at.isoformat(),
        }


_LIGHT = [c for c in memory_table.c if c.name != "embedding"]


def _entry(row: Row[Any], with_embedding: bool = False) -> MemoryEntry:
    return MemoryEntry(
        id=int(row.id),
        namespace=row.namespace,
        text=row.text,
        metadata=json.loads(row.metadata),
        model=row.model,
        digest=row.digest,
        created_at=from_db_time(row.created_at),
        embedding=bytes(row.embedding) if with_embedding else None,
    )


def _encode_metadata(metadata: Mapping[str, Any]) -> str:
    try:
        return json.dumps(dict(metadata), sort_keys=True, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InvalidRequestError(f"metadata must be plain JSON: {exc}") from exc


class MemoryRepository:
    """Entries by namespace; every read and delete names the namespace, so one namespace's
    caller can never reach another's entry by guessing its id."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add(
        self,
        namespace: str,
        text: str,
        metadata: Mapping[str, Any],
        embedding: Sequence[float] | np.ndarray,
        model: str,
        digest: str,
    ) -> MemoryEntry:
        vector = np.asarray(embedding, dtype=_VECTOR)
        if vector.ndim != 1 or vector.size == 0:
            raise InvalidRequestError("an embedding is a non-empty vector")
        encoded = _encode_metadata(metadata)
        at = utc_now()
        with write_transaction(self._engine) as conn:
            result = conn.execute(
                memory_table.insert().values(
                    namespace=namespace,
                    text=text,
                    metadata=encoded,
                    embedding=vector.tobytes(),
                    dimensions=int(vector.size),
                    model=model,
                    digest=digest,
                    created_at=to_db_time(at),
                )
            )
            key = result.inserted_primary_key
        assert key is not None
        return MemoryEntry(int(key[0]), namespace, text, json.loads(encoded), model, digest, at)

    def get(self, namespace: str, entry_id: int) -> MemoryEntry:
        query = select(*_LIGHT).where(
            memory_table.c.id == entry_id, memory_table.c.namespace == namespace
        )
        with read_connection(self._engine) as conn:
            row = conn.execute(query).first()
        if row is None:
            raise MemoryNotFoundError(f"no memory entry {entry_id} in namespace {namespace!r}")
        return _entry(row)

    def get_many(self, namespace: str, ids: Iterable[int]) -> dict[int, MemoryEntry]:
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        query = select(*_LIGHT).where(
            memory_table.c.namespace == namespace, memory_table.c.id.in_(wanted)
        )
        with read_connection(self._engine) as conn:
            return {int(row.id): _entry(row) for row in conn.execute(query)}

    def delete(self, namespace: str, entry_id: int) -> None:
        with write_transaction(self._engine) as conn:
            deleted = conn.execute(
                memory_table.delete().where(
                    memory_table.c.id == entry_id, memory_table.c.namespace == namespace
                )
            )
        if deleted.rowcount == 0:
            raise MemoryNotFoundError(f"no memory entry {entry_id} in namespace {namespace!r}")

    def count(self, namespace: str, digest: str | None = None) -> int:
        query = select(func.count()).where(memory_table.c.namespace == namespace)
        if digest is not None:
            query = query.where(memory_table.c.digest == digest)
        with read_connection(self._engine) as conn:
            return int(conn.scalar(query) or 0)

    def vectors(self, namespace: str, digest: str) -> tuple[np.ndarray, np.ndarray]:
        """The ids and the (n, dimensions) matrix of the namespace's vectors made by
        ``digest``; rows whose size differs from the first's are left out (a model with that
        digest only ever makes one size)."""
        query = (
            select(memory_table.c.id, memory_table.c.embedding)
            .where(memory_table.c.namespace == namespace, memory_table.c.digest == digest)
            .order_by(memory_table.c.id)
        )
        with read_connection(self._engine) as conn:
            rows = conn.execute(query).all()
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=_VECTOR)
        size = len(rows[0].embedding)
        kept = [r for r in rows if len(r.embedding) == size]
        ids = np.fromiter((r.id for r in kept), dtype=np.int64, count=len(kept))
        matrix = np.frombuffer(b"".join(r.embedding for r in kept), dtype=_VECTOR)
        return ids, matrix.reshape(len(kept), size // _VECTOR.itemsize)

    def stale(self, namespace: str, digest: str, limit: int) -> builtins.list[MemoryEntry]:
        """Entries of the namespace embedded by a model other than ``digest``, oldest first."""
        query = (
            select(*_LIGHT)
            .where(memory_table.c.namespace == namespace, memory_table.c.digest != digest)
            .order_by(memory_table.c.id)
            .limit(limit)
        )
        with read_connection(self._engine) as conn:
            return [_entry(row) for row in conn.execute(query)]

    def set_embeddings(
        self,
        vectors: Iterable[tuple[int, Sequence[float] | np.ndarray]],
        model: str,
        digest: str,
    ) -> None:
        """Replace the embeddings of the entries named (a re-embedding), in one transaction."""
        with write_transaction(self._engine) as conn:
            for entry_id, embedding in vectors:
                vector = np.asarray(embedding, dtype=_VECTOR)
                conn.execute(
                    memory_table.update()
                    .where(memory_table.c.id == entry_id)
                    .values(
                        embedding=vector.tobytes(),
                        dimensions=int(vector.size),
                        model=model,
                        digest=digest,
                    )
                )

    def list(self, *, with_embedding: bool = False) -> builtins.list[MemoryEntry]:
        """Every entry of every namespace, by id (state snapshots)."""
        columns = list(memory_table.c) if with_embedding else _LIGHT
        query = select(*columns).order_by(memory_table.c.id)
        with read_connection(self._engine) as conn:
            return [_entry(row, with_embedding) for row in conn.execute(query)]

    def replace_all(self, entries: Iterable[MemoryEntry]) -> None:
        """Make the table hold exactly ``entries`` (with their ids and embeddings), in one
        transaction: a snapshot's restore."""
        rows = []
        for e in entries:
            if e.embedding is None:
                raise InvalidRequestError(f"memory entry {e.id} has no embedding to restore")
            rows.append(
                {
                    "id": e.id,
                    "namespace": e.namespace,
                    "text": e.text,
                    "metadata": _encode_metadata(e.metadata),
                    "embedding": e.embedding,
                    "dimensions": len(e.embedding) // _VECTOR.itemsize,
                    "model": e.model,
                    "digest": e.digest,
                    "created_at": to_db_time(e.created_at),
                }
            )
        with write_transaction(self._engine) as conn:
            conn.execute(memory_table.delete())
            if rows:
                conn.execute(memory_table.insert(), rows)
            if rows and conn.dialect.name == "postgresql":
                # Explicit ids leave PostgreSQL's sequence where it was (SQLite's
                # AUTOINCREMENT follows the largest id by itself): move it past them, never
                # back, so an id is still never given out twice.
                conn.execute(text(_RESYNC_SEQUENCE))
