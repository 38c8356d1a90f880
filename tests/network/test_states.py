"""The node-state table and the circuit breaker, driven by a fake clock (no sleeping)."""

from __future__ import annotations

import itertools

import pytest

from neurons.network.states import (
    BREAKER_TRANSITIONS,
    NODE_TRANSITIONS,
    BreakerEvent,
    BreakerState,
    CircuitBreaker,
    NodeEvent,
    NodeState,
    next_node_state,
)

S, E = NodeState, NodeEvent

# Every pair that changes the state, written out independently of the module's table; every
# other (state, event) pair must leave the state as it was.
CHANGES: dict[tuple[NodeState, NodeEvent], NodeState] = {
    (S.UNKNOWN, E.PROBE_OK): S.ONLINE,
    (S.UNKNOWN, E.PROBE_FAILED): S.OFFLINE,
    (S.UNKNOWN, E.PROBES_EXHAUSTED): S.OFFLINE,
    (S.UNKNOWN, E.DRAIN): S.DRAINING,
    (S.ONLINE, E.PROBE_FAILED): S.DEGRADED,
    (S.ONLINE, E.PROBES_EXHAUSTED): S.OFFLINE,
    (S.ONLINE, E.DRAIN): S.DRAINING,
    (S.DEGRADED, E.PROBE_OK): S.ONLINE,
    (S.DEGRADED, E.PROBES_EXHAUSTED): S.OFFLINE,
    (S.DEGRADED, E.DRAIN): S.DRAINING,
    (S.OFFLINE, E.PROBE_OK): S.ONLINE,
    (S.OFFLINE, E.DRAIN): S.DRAINING,
    (S.DRAINING, E.RESUME): S.UNKNOWN,
}

ALL_PAIRS = list(itertools.product(NodeState, NodeEvent))


@pytest.mark.parametrize(("state", "event"), ALL_PAIRS, ids=lambda v: str(v))
def test_every_state_event_pair(state: NodeState, event: NodeEvent) -> None:
    expected = CHANGES.get((state, event), state)
    assert next_node_state(state, event) is expected


def test_table_holds_only_the_changes() -> None:
    assert {k: v for k, v in NODE_TRANSITIONS.items() if k[0] is not v} == CHANGES


@pytest.mark.parametrize(
    ("state", "routable"),
    [
        (S.UNKNOWN, False),
        (S.ONLINE, True),
        (S.DEGRADED, True),
        (S.OFFLINE, False),
        (S.DRAINING, False),
    ],
)
def test_routable(state: NodeState, routable: bool) -> None:
    assert state.routable is routable


def test_breaker_table_never_leaves_open_without_cooldown_or_success() -> None:
    from_open = {
        e: s for (state, e), s in BREAKER_TRANSITIONS.items() if state is BreakerState.OPEN
    }
    assert from_open == {
        BreakerEvent.COOLDOWN_ELAPSED: BreakerState.HALF_OPEN,
        BreakerEvent.SUCCESS: BreakerState.CLOSED,
    }


# -- CircuitBreaker ---------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _breaker(threshold: int = 3, cooldown: float = 10.0) -> tuple[CircuitBreaker, FakeClock]:
    clock = FakeClock()
    return CircuitBreaker(threshold, cooldown, clock=clock), clock


def state(breaker: CircuitBreaker) -> BreakerState:
    """The state, read through a call: the clock moves it, which a type checker cannot see."""
    return breaker.state


def _open(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.failure_threshold):
        breaker.record_failure()
    assert state(breaker) is BreakerState.OPEN


@pytest.mark.parametrize("threshold", [1, 2, 3, 5])
def test_opens_after_threshold_failures_and_not_before(threshold: int) -> None:
    breaker, _ = _breaker(threshold)
    for _ in range(threshold - 1):
        breaker.record_failure()
        assert state(breaker) is BreakerState.CLOSED
        assert breaker.available() and breaker.acquire()
    breaker.record_failure()
    assert state(breaker) is BreakerState.OPEN
    assert not breaker.available()
    assert not breaker.acquire()


def test_success_resets_the_count() -> None:
    breaker, _ = _breaker(3)
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    assert breaker.failures == 0
    breaker.record_failure()
    breaker.record_failure()
    assert state(breaker) is BreakerState.CLOSED
    breaker.record_failure()
    assert state(breaker) is BreakerState.OPEN


def test_cooldown_then_half_open() -> None:
    breaker, clock = _breaker(2, cooldown=10.0)
    _open(breaker)
    assert breaker.opened_at == clock.now
    clock.advance(9.999)
    assert state(breaker) is BreakerState.OPEN
    clock.advance(0.001)
    assert state(breaker) is BreakerState.HALF_OPEN
    assert breaker.available()


def test_half_open_admits_exactly_one_trial() -> None:
    breaker, clock = _breaker(1, cooldown=5.0)
    _open(breaker)
    clock.advance(5.0)
    assert breaker.acquire() is True
    assert breaker.acquire() is False
    assert not breaker.available()
    assert state(breaker) is BreakerState.HALF_OPEN


def test_trial_success_closes() -> None:
    breaker, clock = _breaker(2, cooldown=5.0)
    _open(breaker)
    clock.advance(5.0)
    assert breaker.acquire()
    breaker.record_success()
    assert state(breaker) is BreakerState.CLOSED
    assert (breaker.failures, breaker.opened_at) == (0, None)
    assert breaker.acquire() and breaker.acquire()  # closed: no single-trial limit


def test_trial_failure_reopens_with_a_fresh_cooldown() -> None:
    breaker, clock = _breaker(2, cooldown=5.0)
    _open(breaker)
    clock.advance(6.0)
    assert breaker.acquire()
    breaker.record_failure()
    assert state(breaker) is BreakerState.OPEN
    assert breaker.opened_at == clock.now
    clock.advance(4.9)
    assert state(breaker) is BreakerState.OPEN and not breaker.acquire()
    clock.advance(0.1)
    assert state(breaker) is BreakerState.HALF_OPEN
    assert breaker.acquire()  # the new half-open period has its own trial


def test_failures_while_open_do_not_extend_the_cooldown() -> None:
    breaker, clock = _breaker(1, cooldown=5.0)
    _open(breaker)
    opened = breaker.opened_at
    clock.advance(3.0)
    breaker.record_failure()
    assert breaker.opened_at == opened
    clock.advance(2.0)
    assert state(breaker) is BreakerState.HALF_OPEN


def test_success_while_open_closes() -> None:
    breaker, _ = _breaker(1)
    _open(breaker)
    breaker.record_success()
    assert state(breaker) is BreakerState.CLOSED and breaker.available()


@pytest.mark.parametrize("threshold", [0, -1])
def test_threshold_must_be_at_least_one(threshold: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        CircuitBreaker(threshold)
