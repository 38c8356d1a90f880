"""Node states and circuit breakers, each an explicit transition table.

A node's **state** is what the health monitor believes about it from probes; its **breaker** is
what the gateway learned from real requests. The gateway routes to a node only when both agree:
the state is routable and the breaker lets a request through.

Node states (events in brackets; a pair missing from the table leaves the state unchanged)::

    unknown ──[probe_ok]──▶ online ──[probe_failed]──▶ degraded ──[probe_failed × N]──▶ offline
       │                     ▲  ▲                         │                                │
       └──[probe_failed]──▶ offline ─────[probe_ok]───────┘◀──────────[probe_ok]───────────┘
                             online ◀─[resume]── draining ◀─[drain]── any state

Breaker (per node)::

    closed ──[N consecutive failures]──▶ open ──[cooldown elapsed]──▶ half_open
      ▲                                   ▲                              │
      └──────────────[success]────────────┼──────────────────────────────┘
                                          └────────[failure]─────────────┘

In ``half_open`` exactly one trial request (or probe) is let through; its outcome decides.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

__all__ = [
    "BREAKER_TRANSITIONS",
    "NODE_TRANSITIONS",
    "BreakerEvent",
    "BreakerState",
    "CircuitBreaker",
    "NodeEvent",
    "NodeState",
    "next_node_state",
]


class NodeState(StrEnum):
    UNKNOWN = "unknown"
    ONLINE = "online"
    DEGRADED = "degraded"
    OFFLINE = "offline"
    DRAINING = "draining"

    @property
    def routable(self) -> bool:
        """Whether the gateway may send new requests to a node in this state."""
        return self in (NodeState.ONLINE, NodeState.DEGRADED)


class NodeEvent(StrEnum):
    PROBE_OK = "probe_ok"
    PROBE_FAILED = "probe_failed"
    # Probes kept failing past the monitor's threshold (it counts; the table stays a table).
    PROBES_EXHAUSTED = "probes_exhausted"
    DRAIN = "drain"
    RESUME = "resume"


_S, _E = NodeState, NodeEvent
NODE_TRANSITIONS: dict[tuple[NodeState, NodeEvent], NodeState] = {
    (_S.UNKNOWN, _E.PROBE_OK): _S.ONLINE,
    (_S.UNKNOWN, _E.PROBE_FAILED): _S.OFFLINE,
    (_S.UNKNOWN, _E.PROBES_EXHAUSTED): _S.OFFLINE,
    (_S.ONLINE, _E.PROBE_FAILED): _S.DEGRADED,
    (_S.ONLINE, _E.PROBES_EXHAUSTED): _S.OFFLINE,
    (_S.DEGRADED, _E.PROBE_OK): _S.ONLINE,
    (_S.DEGRADED, _E.PROBES_EXHAUSTED): _S.OFFLINE,
    (_S.OFFLINE, _E.PROBE_OK): _S.ONLINE,
    (_S.UNKNOWN, _E.DRAIN): _S.DRAINING,
    (_S.ONLINE, _E.DRAIN): _S.DRAINING,
    (_S.DEGRADED, _E.DRAIN): _S.DRAINING,
    (_S.OFFLINE, _E.DRAIN): _S.DRAINING,
    # A resumed node must prove itself again before it takes traffic.
    (_S.DRAINING, _E.RESUME): _S.UNKNOWN,
}


def next_node_state(state: NodeState, event: NodeEvent) -> NodeState:
    """The state after ``event``; events that do not apply leave the state as it was."""
    return NODE_TRANSITIONS.get((state, event), state)


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerEvent(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"  # counted; the breaker trips only when the count reaches the threshold
    TRIP = "trip"
    COOLDOWN_ELAPSED = "cooldown_elapsed"


_B, _BE = BreakerState, BreakerEvent
BREAKER_TRANSITIONS: dict[tuple[BreakerState, BreakerEvent], BreakerState] = {
    (_B.CLOSED, _BE.TRIP): _B.OPEN,
    (_B.OPEN, _BE.COOLDOWN_ELAPSED): _B.HALF_OPEN,
    (_B.HALF_OPEN, _BE.SUCCESS): _B.CLOSED,
    (_B.HALF_OPEN, _BE.FAILURE): _B.OPEN,
    # A request sent before the breaker opened came back fine: the node works after all.
    (_B.OPEN, _BE.SUCCESS): _B.CLOSED,
}


class CircuitBreaker:
    """Per-node breaker: stop sending requests to a node that keeps failing, then let one
    trial through after a cooldown.

    Not thread-safe on purpose: the gateway and the health monitor share one event loop.
    """

    def __init__(
        self,
        failure_threshold: int = 3,
        cooldown_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerState, BreakerState], None] | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        # Told (old, new) on every move; the open -> half_open move happens when the state
        # is next read after the cooldown, so that is when it is told.
        self.on_change = on_change
        self._state = BreakerState.CLOSED
        self.failures = 0
        self.opened_at: float | None = None
        self._trial_in_flight = False

    def _apply(self, event: BreakerEvent) -> None:
        new = BREAKER_TRANSITIONS.get((self._state, event), self._state)
        if new is BreakerState.OPEN and self._state is not BreakerState.OPEN:
            self.opened_at = self._clock()
        if new is BreakerState.CLOSED:
            self.failures = 0
            self.opened_at = None
        if new is not BreakerState.HALF_OPEN:
            self._trial_in_flight = False
        old, self._state = self._state, new
        if new is not old and self.on_change is not None:
            self.on_change(old, new)

    @property
    def state(self) -> BreakerState:
        if (
            self._state is BreakerState.OPEN
            and self.opened_at is not None
            and self._clock() - self.opened_at >= self.cooldown_s
        ):
            self._apply(BreakerEvent.COOLDOWN_ELAPSED)
        return self._state

    def available(self) -> bool:
        """Whether a request could be sent now (without claiming the half-open trial)."""
        state = self.state
        return state is BreakerState.CLOSED or (
            state is BreakerState.HALF_OPEN and not self._trial_in_flight
        )

    def acquire(self) -> bool:
        """Claim permission for one request; in half-open only the first caller gets it."""
        if not self.available():
            return False
        if self._state is BreakerState.HALF_OPEN:
            self._trial_in_flight = True
        return True

    def record_success(self) -> None:
        self.failures = 0
        self._apply(BreakerEvent.SUCCESS)

    def record_failure(self) -> None:
        self.failures += 1
        if self.state is BreakerState.HALF_OPEN:
            self._apply(BreakerEvent.FAILURE)
        elif self.failures >= self.failure_threshold:
            self._apply(BreakerEvent.TRIP)
