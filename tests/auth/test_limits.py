"""The Limiter contract (neurons.auth.limits), as a kit every implementation must pass.
Time is passed in, so these run without sleeping."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from neurons.auth.limits import WINDOW_S, InMemoryLimiter, Limiter, Limits
from neurons.errors import RateLimitError

IMPLEMENTATIONS: list[Callable[[], Limiter]] = [InMemoryLimiter]


@pytest.fixture(params=IMPLEMENTATIONS, ids=lambda f: f.__name__)
def limiter(request: pytest.FixtureRequest) -> Limiter:
    factory: Callable[[], Limiter] = request.param
    return factory()


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
