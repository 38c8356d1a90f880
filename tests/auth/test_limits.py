"""The Limiter contract (neurons.auth.limits), as a kit every implementation must pass: in
memory, and counted in a real database (SQLite and PostgreSQL). Time is passed in, so these
run without sleeping."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from neurons.auth.limits import WINDOW_S, InMemoryLimiter, Limiter, Limits
from neurons.auth.store_limiter import IN_FLIGHT_TTL_S, StoreLimiter
from neurons.errors import RateLimitError
from neurons.store import Store, open_store
from neurons.store.rate_limits import RateLimitRepository
from tests.pg import PostgresServer

IMPLEMENTATIONS = ("memory", "store-sqlite", "store-postgresql")


@pytest.fixture(params=("sqlite", "postgresql"))
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A database of the test's own, as several control planes would share it."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'neurons.db'}"
        name = None
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        name = server.acquire()
        url = server.url(name)
    store = open_store(url)
    try:
        yield store
    finally:
        store.close()
        if name is not None:
            server.release(name)


@pytest.fixture(params=IMPLEMENTATIONS)
def limiter(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Limiter]:
    if request.param == "memory":
        yield InMemoryLimiter()
        return
    if request.param == "store-sqlite":
        store = open_store(f"sqlite:///{tmp_path / 'neurons.db'}")
        name = None
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        name = server.acquire()
        store = open_store(server.url(name))
    try:
        yield StoreLimiter(RateLimitRepository(store.engine))
    finally:
        store.close()
        if name is not None:
            server.release(name)


def test_rpm_admits_that_many_in_a_window_then_says_when(limiter: Limiter) -> None:
    limits = Limits(rpm=3)
    for i in range(3):
        limiter.admit("k", limits, 100.0 + i)
        limiter.release("k")
    with pytest.raises(RateLimitError) as refused:
        limiter.admit("k", limits, 110.0)
    # The oldest request (t=100) leaves the window at t=160: 50 s after t=110.
    assert refused.value.retry_after == 50
    assert refused.value.http_status == 429
    limiter.admit("k", limits, 100.0 + WINDOW_S + 0.5)  # the window slid


def test_a_refused_request_counts_against_nothing(limiter: Limiter) -> None:
    limits = Limits(rpm=1)
    limiter.admit("k", limits, 0.0)
    limiter.release("k")
    for t in (1.0, 2.0, 3.0):
        with pytest.raises(RateLimitError):
            limiter.admit("k", limits, t)
    limiter.admit("k", limits, WINDOW_S + 0.1)  # only the one admitted request had counted


def test_parallel_limit_frees_a_place_on_release(limiter: Limiter) -> None:
    limits = Limits(max_parallel=2)
    limiter.admit("k", limits, 0.0)
    limiter.admit("k", limits, 0.0)
    with pytest.raises(RateLimitError) as refused:
        limiter.admit("k", limits, 0.0)
    assert refused.value.retry_after == 1
    limiter.release("k")
    limiter.admit("k", limits, 0.0)


def test_tpm_lets_the_crossing_request_finish_then_refuses(limiter: Limiter) -> None:
    limits = Limits(tpm=100)
    limiter.admit("k", limits, 0.0)
    limiter.release("k")
    limiter.charge("k", 60, 1.0)
    limiter.admit("k", limits, 2.0)  # 60 < 100: admitted
    limiter.release("k")
    limiter.charge("k", 70, 3.0)  # now 130 >= 100
    with pytest.raises(RateLimitError) as refused:
        limiter.admit("k", limits, 4.0)
    # Once the 60 tokens of t=1 age out (t=61), 70 < 100 remain.
    assert refused.value.retry_after == 57
    limiter.admit("k", limits, 61.5)


def test_finish_gives_the_place_back_and_charges_the_tokens(limiter: Limiter) -> None:
    limits = Limits(tpm=100, max_parallel=1)
    limiter.admit("k", limits, 0.0)
    limiter.finish("k", 120, 1.0)
    with pytest.raises(RateLimitError, match="spent 120 tokens"):
        limiter.admit("k", limits, 2.0)  # the place is free: the tokens refuse it
    limiter.admit("k", limits, 61.5)


def test_keys_are_counted_apart(limiter: Limiter) -> None:
    limits = Limits(rpm=1, max_parallel=1)
    limiter.admit("a", limits, 0.0)
    limiter.admit("b", limits, 0.0)
    with pytest.raises(RateLimitError):
        limiter.admit("a", limits, 0.5)


def test_unlimited_keys_are_never_refused(limiter: Limiter) -> None:
    for i in range(1000):
        limiter.admit("k", Limits(), float(i) / 100)
    limiter.charge("k", 10**9, 5.0)
    limiter.admit("k", Limits(), 6.0)


# -- counted in the database: what only a shared count must get right ----------------------


def test_two_control_planes_share_one_minute(shared_store: Store) -> None:
    one = StoreLimiter(RateLimitRepository(shared_store.engine), holder="host-a:1:x")
    two = StoreLimiter(RateLimitRepository(shared_store.engine), holder="host-b:2:y")
    limits = Limits(rpm=3, tpm=100, max_parallel=2)
    one.admit("k", limits, 10.0)
    two.admit("k", limits, 11.0)
    with pytest.raises(RateLimitError, match="2 requests in flight"):
        one.admit("k", limits, 12.0)  # two places in flight, one on each plane
    two.release("k")
    one.admit("k", limits, 13.0)
    one.release("k")
    one.release("k")
    with pytest.raises(RateLimitError, match="3 requests per minute") as refused:
        two.admit("k", limits, 14.0)  # three requests, counted by either plane
    assert refused.value.retry_after == 56
    two.charge("k", 150, 15.0)
    with pytest.raises(RateLimitError, match="spent 150 tokens"):
        one.admit("k", limits, 74.5)  # the requests aged out; the tokens (t=15) have not


def test_places_of_a_dead_plane_come_back(shared_store: Store) -> None:
    """A plane killed with -9 gives nothing back: its rows go when its pid is gone (same
    host) or when they are older than the TTL (another host, which cannot be asked)."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    import socket

    repository = RateLimitRepository(shared_store.engine)
    here_dead = StoreLimiter(repository, holder=f"{socket.gethostname()}:{dead.stdout.strip()}:z")
    elsewhere = StoreLimiter(repository, holder="another-host:7:q")
    alive = StoreLimiter(repository)
    limits = Limits(max_parallel=1)
    here_dead.admit("a", limits, 0.0)
    alive.admit("a", limits, 1.0)  # the dead process's place was taken back
    elsewhere.admit("b", limits, 0.0)
    with pytest.raises(RateLimitError):
        alive.admit("b", limits, IN_FLIGHT_TTL_S - 1)
    alive.admit("b", limits, IN_FLIGHT_TTL_S + 1)
    alive.close()  # a shutdown gives back the plane's own places
    alive.admit("a", limits, 2.0)
