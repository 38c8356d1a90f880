"""The :class:`~neurons.auth.limits.Limiter` contract, counted in the database: every control
plane on one database shares each key's minute (issue 23's "rate-limit counters correct
across control planes").

Why the database and not Redis, as LiteLLM uses: the planes already share it, and a count
that must be exact needs the same atomic read-then-write a database transaction gives. The
cost, measured by ``benchmarks/gateway_overhead.py --auth`` and written in the README: a write
transaction per admitted request and one per release (and one per charge of a key with a
token limit), under the database's write lock, off the event loop. Only keys with limits pay
it; a key without any never reaches the limiter.

Two things a shared count must settle that a process's memory does not:

- **Time**: ``now`` is Unix time, so the planes' clocks must agree (NTP) to the second.
- **Places of a dead plane**: a request in flight is a row held by its control plane
  (``host:pid:nonce``). A plane killed with -9 never gives its places back; the next
  admission of the key removes rows whose holder is a dead process on the same host, and any
  row older than :data:`IN_FLIGHT_TTL_S` (a holder on another host cannot be asked).
"""

from __future__ import annotations

from typing import ClassVar

from neurons.auth.limits import WINDOW_S, InMemoryLimiter, Limiter, Limits, check_window
from neurons.jobs.runners import runner_identity, runner_is_dead
from neurons.store import Store
from neurons.store.rate_limits import RateLimitRepository, RateWindow

__all__ = ["IN_FLIGHT_TTL_S", "StoreLimiter", "limiter_for"]

# A request in flight longer than this is taken for lost (its plane died on another host):
# longer than any generation a client waits for, short enough that a dead plane's places
# come back within minutes.
IN_FLIGHT_TTL_S = 15 * 60.0


class StoreLimiter(Limiter):
    """Sliding windows in ``rate_counts`` and ``rate_in_flight``, shared by every process."""

    blocking: ClassVar[bool] = True

    def __init__(self, repository: RateLimitRepository, holder: str | None = None) -> None:
        self.repository = repository
        self.holder = holder or runner_identity()

    def admit(self, key: str, limits: Limits, now: float) -> None:
        def decide(window: RateWindow) -> bool:
            spent = sum(count for _, count in window.tokens)
            check_window(window.requests, window.tokens, spent, window.in_flight, limits, now)
            return limits.rpm is not None

        self.repository.admit(
            key, now, WINDOW_S, self.holder, decide,
            in_flight_ttl_s=IN_FLIGHT_TTL_S, holder_is_dead=runner_is_dead,
        )  # fmt: skip

    def release(self, key: str) -> None:
        self.repository.release(key, self.holder)

    def charge(self, key: str, tokens: int, now: float) -> None:
        if tokens > 0:
            self.repository.charge(key, tokens, now)

    def finish(self, key: str, tokens: int, now: float) -> None:
        self.repository.release(key, self.holder, tokens=tokens, now=now)

    def close(self) -> None:
        """Give back this plane's places (a shutdown with requests still counted)."""
        self.repository.release_holder(self.holder)


def limiter_for(store: Store, choice: str) -> Limiter:
    """The limiter ``Settings.rate_limits`` names: ``auto`` counts in the database on
    PostgreSQL (several control planes may share it) and in memory on SQLite (one)."""
    if choice == "database" or (choice == "auto" and store.engine.dialect.name != "sqlite"):
        return StoreLimiter(RateLimitRepository(store.engine))
    return InMemoryLimiter()
