"""Per-key limits: requests per minute, tokens per minute, requests in flight.

The contract every :class:`Limiter` keeps (the conformance tests in ``tests/auth`` hold each
implementation to it):

- :meth:`~Limiter.admit` either admits a request, counting it against the key's requests per
  minute and holding one of its parallel places, or raises :class:`RateLimitError` with
  ``retry_after``, the whole seconds after which the same request would be admitted (1 for a
  full parallel limit: a place frees when any request ends). A refused request counts
  against nothing.
- :meth:`~Limiter.release` gives the place back; every admitted request is released once.
- :meth:`~Limiter.charge` adds the tokens a request spent (the node's ``prompt_eval_count`` +
  ``eval_count``) to the key's last minute. A key at or over its tokens per minute is refused
  until enough of them are a minute old: the request that crosses the limit finishes, as
  LiteLLM's proxy does, because its cost is known only at its end.
- Windows slide: "per minute" is the 60 seconds before ``now``, not a calendar minute.

:class:`InMemoryLimiter` keeps them in the control plane's memory: a control plane counts
its own traffic. :class:`~neurons.auth.store_limiter.StoreLimiter` counts in the database,
shared by every control plane on it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from neurons.errors import RateLimitError

__all__ = ["WINDOW_S", "InMemoryLimiter", "Limiter", "Limits", "check_window"]

WINDOW_S = 60.0


@dataclass(frozen=True)
class Limits:
    """One key's limits; ``None`` is unlimited."""

    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None

    @property
    def unlimited(self) -> bool:
        return self.rpm is None and self.tpm is None and self.max_parallel is None


class Limiter(ABC):
    # True when the methods wait on I/O (a database): callers run them off the event loop.
    blocking: ClassVar[bool] = False

    @abstractmethod
    def admit(self, key: str, limits: Limits, now: float) -> None:
        """Admit one request of ``key`` at ``now`` (seconds), or raise RateLimitError."""

    @abstractmethod
    def release(self, key: str) -> None:
        """One admitted request of ``key`` has ended."""

    @abstractmethod
    def charge(self, key: str, tokens: int, now: float) -> None:
        """``key`` spent ``tokens`` at ``now``."""

    def finish(self, key: str, tokens: int, now: float) -> None:
        """:meth:`release` and :meth:`charge` together, as a request ends (a limiter that
        writes a database does both in one transaction)."""
        self.release(key)
        self.charge(key, tokens, now)

    def close(self) -> None:  # noqa: B027  (a hook: most limiters hold nothing to give back)
        """The process is leaving: give back what it holds that others count."""


@dataclass
class _Window:
    requests: deque[float] = field(default_factory=deque)
    tokens: deque[tuple[float, int]] = field(default_factory=deque)
    token_sum: int = 0  # of ``tokens``, kept: a busy key's minute holds thousands
    in_flight: int = 0

    def expire(self, now: float) -> None:
        cutoff = now - WINDOW_S
        while self.requests and self.requests[0] <= cutoff:
            self.requests.popleft()
        while self.tokens and self.tokens[0][0] <= cutoff:
            self.token_sum -= self.tokens.popleft()[1]


class InMemoryLimiter(Limiter):
    """Sliding logs per key. Called from the event loop only, so no lock: each method runs
    to its end without awaiting."""

    def __init__(self) -> None:
        self._windows: dict[str, _Window] = {}

    def admit(self, key: str, limits: Limits, now: float) -> None:
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window()
        window.expire(now)
        check_window(
            window.requests, window.tokens, window.token_sum, window.in_flight, limits, now
        )
        if limits.rpm is not None:
            window.requests.append(now)
        window.in_flight += 1

    def release(self, key: str) -> None:
        window = self._windows.get(key)
        if window is not None and window.in_flight > 0:
            window.in_flight -= 1

    def charge(self, key: str, tokens: int, now: float) -> None:
        if tokens <= 0:
            return
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window()
        window.tokens.append((now, tokens))
        window.token_sum += tokens


def check_window(
    requests: Sequence[float],
    tokens: Sequence[tuple[float, int]],
    spent: int,
    in_flight: int,
    limits: Limits,
    now: float,
) -> None:
    """Raise :class:`RateLimitError` as the contract says when a key whose last minute holds
    ``requests`` (admission times) and ``tokens`` ((time, count) charges, ``spent`` in all),
    oldest first, and ``in_flight`` requests under way may not take one more; every limiter
    decides here."""
    if limits.max_parallel is not None and in_flight >= limits.max_parallel:
        raise RateLimitError(
            f"this key already has {in_flight} requests in flight "
            f"(its limit is {limits.max_parallel})",
            retry_after=1,
        )
    if limits.rpm is not None and len(requests) >= limits.rpm:
        wait = requests[len(requests) - limits.rpm] + WINDOW_S - now
        raise RateLimitError(
            f"this key is past its limit of {limits.rpm} requests per minute",
            retry_after=math.ceil(wait),
        )
    if limits.tpm is not None and spent >= limits.tpm:
        raise RateLimitError(
            f"this key spent {spent} tokens in the last minute "
            f"(its limit is {limits.tpm} per minute)",
            retry_after=math.ceil(_tokens_free_at(tokens, spent, limits.tpm) - now),
        )


def _tokens_free_at(tokens: Sequence[tuple[float, int]], spent: int, tpm: int) -> float:
    """When enough of the window's tokens have aged out to bring it under ``tpm``."""
    remaining = spent
    for at, count in tokens:
        remaining -= count
        if remaining < tpm:
            return at + WINDOW_S
    return tokens[-1][0] + WINDOW_S if tokens else 0.0
