"""Per-key request and token counts shared by every control plane on the database.

The rows :class:`~neurons.auth.store_limiter.StoreLimiter` counts: ``rate_counts`` (one per
admitted request or charged tokens, at a Unix time) and ``rate_in_flight`` (one per request
under way, with the control plane holding it). :meth:`RateLimitRepository.admit` reads a
key's last minute and adds the new request in one write transaction, so two control planes
admitting the same key at once are serialized by the database's write lock and never both
take its last place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Column, Double, Integer, MetaData, Table, Text, delete, func, insert, select
from sqlalchemy.engine import Engine

from neurons.store.engine import write_transaction

__all__ = ["RateLimitRepository", "RateWindow", "rate_counts_table", "rate_in_flight_table"]

_metadata = MetaData()
# The schema as of the latest migration (m016), for queries; migrations.py owns its history.
rate_counts_table = Table(
    "rate_counts",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key_id", Text, nullable=False),
    Column("at", Double, nullable=False),
    Column("requests", Integer, nullable=False),
    Column("tokens", Integer, nullable=False),
)
rate_in_flight_table = Table(
    "rate_in_flight",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key_id", Text, nullable=False),
    Column("holder", Text, nullable=False),
    Column("started_at", Double, nullable=False),
)


@dataclass(frozen=True)
class RateWindow:
    """One key's last minute as the database holds it, oldest first."""

    requests: list[float]  # when each admitted request came
    tokens: list[tuple[float, int]]  # (when, how many) each charge
    in_flight: int


class RateLimitRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def admit(
        self,
        key_id: str,
        now: float,
        window_s: float,
        holder: str,
        decide: Callable[[RateWindow], bool],
        *,
        in_flight_ttl_s: float,
        holder_is_dead: Callable[[str], bool],
    ) -> None:
        """Read ``key_id``'s window and count the request in the same transaction.

        Rows a window old go first, and places in flight that are lost: older than
        ``in_flight_ttl_s``, or held by a holder ``holder_is_dead`` says is gone. ``decide``
        gets the window; it raises to refuse (the transaction rolls back: nothing is
        counted), else the request takes a place in flight for ``holder`` and, when
        ``decide`` returns True, a request row."""
        counts, flight = rate_counts_table.c, rate_in_flight_table.c
        mine = flight.key_id == key_id
        with write_transaction(self._engine) as conn:
            conn.execute(
                delete(rate_counts_table).where(
                    counts.key_id == key_id, counts.at <= now - window_s
                )
            )
            conn.execute(
                delete(rate_in_flight_table).where(mine, flight.started_at <= now - in_flight_ttl_s)
            )
            holders = conn.scalars(select(flight.holder).where(mine).distinct()).all()
            dead = [name for name in holders if holder_is_dead(name)]
            if dead:
                conn.execute(delete(rate_in_flight_table).where(mine, flight.holder.in_(dead)))
            in_flight = conn.scalar(
                select(func.count()).select_from(rate_in_flight_table).where(mine)
            )
            rows = conn.execute(
                select(counts.at, counts.requests, counts.tokens)
                .where(counts.key_id == key_id)
                .order_by(counts.at, counts.id)
            ).all()
            window = RateWindow(
                requests=[float(r.at) for r in rows if r.requests],
                tokens=[(float(r.at), r.tokens) for r in rows if r.tokens],
                in_flight=int(in_flight or 0),
            )
            if decide(window):
                conn.execute(
                    insert(rate_counts_table).values(key_id=key_id, at=now, requests=1, tokens=0)
                )
            conn.execute(
                insert(rate_in_flight_table).values(key_id=key_id, holder=holder, started_at=now)
            )

    def release(self, key_id: str, holder: str, *, tokens: int = 0, now: float = 0.0) -> None:
        """Give back one of ``holder``'s places of ``key_id`` (any: they are alike) and, with
        ``tokens``, charge them at ``now``: one transaction as a request ends."""
        flight = rate_in_flight_table.c
        with write_transaction(self._engine) as conn:
            one = conn.scalar(
                select(func.min(flight.id)).where(flight.key_id == key_id, flight.holder == holder)
            )
            if one is not None:
                conn.execute(delete(rate_in_flight_table).where(flight.id == one))
            if tokens > 0:
                conn.execute(
                    insert(rate_counts_table).values(
                        key_id=key_id, at=now, requests=0, tokens=tokens
                    )
                )

    def charge(self, key_id: str, tokens: int, now: float) -> None:
        with write_transaction(self._engine) as conn:
            conn.execute(
                insert(rate_counts_table).values(key_id=key_id, at=now, requests=0, tokens=tokens)
            )

    def release_holder(self, holder: str) -> int:
        """Give back every place ``holder`` holds (a control plane shutting down)."""
        flight = rate_in_flight_table.c
        with write_transaction(self._engine) as conn:
            return conn.execute(
                delete(rate_in_flight_table).where(flight.holder == holder)
            ).rowcount
