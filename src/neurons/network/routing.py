"""Which node serves a request: the live view of each node and the routing policies.

The gateway hands a policy only *eligible* candidates (routable state, breaker available, holds
the model, its copy can do what the request needs) and tries them in the order the policy
returns, moving to the next one only on a connection error or 5xx before the first byte reached
the client.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from neurons.network.states import CircuitBreaker, NodeState
from neurons.ollama.names import canonical_name

__all__ = [
    "BUILTIN_POLICIES",
    "BalancedPolicy",
    "NodeView",
    "RoundRobinPolicy",
    "RouteRequest",
    "RoutingPolicy",
    "canonical_label",
]

# Smoothing of latency samples: the newest weighs this much against the history.
LATENCY_ALPHA = 0.3

# Each request looks its model up on every candidate (has, supports, is_loaded): parsing the
# name each time cost more than the rest of the choice, and a network serves few names.
_canonical = functools.lru_cache(maxsize=4096)(canonical_name)


def canonical_label(model: str) -> str:
    """A model's canonical name (cached: the gateway labels every answer's metrics with it)."""
    return _canonical(model)


@dataclass
class NodeView:
    """What the control plane knows about one node right now (in memory, not in the store)."""

    id: str
    name: str
    url: str
    kind: str
    labels: dict[str, str] = field(default_factory=dict)
    priority: int = 0
    state: NodeState = NodeState.UNKNOWN
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    models: frozenset[str] = frozenset()  # canonical names present on the node
    loaded: frozenset[str] = frozenset()  # canonical names in memory (from /api/ps)
    # Canonical name -> what the node's copy can do, in the order the node lists it; a model
    # missing here is not known yet (its /api/show not read, or it failed).
    capabilities: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Canonical name -> the node's own id for it, on a node whose ids are not Ollama names
    # (an OpenAI-compatible node: neurons.network.openai_nodes); requests carry that id.
    served: dict[str, str] = field(default_factory=dict)
    slots: int = 1  # requests the node runs at once (its num_parallel)
    in_flight: int = 0  # requests the gateway has open on it
    latency_ms: float | None = None  # smoothed probe/first-byte latency
    version: str | None = None
    consecutive_probe_failures: int = 0
    last_error: str | None = None
    requests: int = 0
    failures: int = 0

    def has(self, model: str) -> bool:
        return _canonical(model) in self.models

    def is_loaded(self, model: str) -> bool:
        return _canonical(model) in self.loaded

    def capabilities_of(self, model: str) -> tuple[str, ...] | None:
        return self.capabilities.get(_canonical(model))

    def supports(self, model: str, needed: Sequence[str]) -> bool:
        """Whether the node's copy of ``model`` has every capability in ``needed``. Unknown
        capabilities count as yes: the node itself refuses what its copy cannot do."""
        known = self.capabilities_of(model)
        return known is None or all(c in known for c in needed)

    @property
    def load(self) -> float:
        """Open requests per slot: 0 is idle, 1 is every slot busy."""
        return self.in_flight / max(self.slots, 1)

    def observe_latency(self, ms: float) -> None:
        self.latency_ms = (
            ms
            if self.latency_ms is None
            else (1 - LATENCY_ALPHA) * self.latency_ms + LATENCY_ALPHA * ms
        )


@dataclass(frozen=True)
class RouteRequest:
    """The facts about a request that a policy may use."""

    model: str
    prefix: str | None = None  # the prompt's leading text when stickiness is on


class RoutingPolicy(ABC):
    """Contract: ``order`` receives the eligible candidates (never empty) and returns them, or
    a subset, in the order the gateway should try them. It must not mutate the views and must
    be quick (it runs on every request, on the event loop). Registered by ``name``; plugins add
    policies through the ``neurons_routing_policies`` hook."""

    name: ClassVar[str]

    @abstractmethod
    def order(self, request: RouteRequest, candidates: Sequence[NodeView]) -> list[NodeView]:
        """The candidates, best first."""


class RoundRobinPolicy(RoutingPolicy):
    """The smallest useful policy: take turns, ignoring load and latency."""

    name = "round-robin"

    def __init__(self) -> None:
        self._turn = itertools.count()

    def order(self, request: RouteRequest, candidates: Sequence[NodeView]) -> list[NodeView]:
        start = next(self._turn) % len(candidates)
        return [*candidates[start:], *candidates[:start]]


class BalancedPolicy(RoutingPolicy):
    """The default. Best first by, in turn:

    1. a free slot (``in_flight < slots``): a busy node only when every node is busy;
    2. priority tier: a higher tier takes the traffic while it has free slots, and lower
       tiers take the overflow;
    3. the model already loaded (no load time);
    4. stickiness: with ``prefix`` set, the node the prefix hashes to (rendezvous hashing,
       stable as nodes come and go), so that node's prompt cache is reused;
    5. least in-flight per slot;
    6. lowest smoothed latency.
    """

    name = "balanced"

    def order(self, request: RouteRequest, candidates: Sequence[NodeView]) -> list[NodeView]:
        sticky = _rendezvous(request.prefix, candidates) if request.prefix else None

        def key(node: NodeView) -> tuple[bool, int, bool, bool, float, float]:
            return (
                node.in_flight >= node.slots,
                -node.priority,
                not node.is_loaded(request.model),
                node.id != sticky,
                node.load,
                node.latency_ms if node.latency_ms is not None else float("inf"),
            )

        return sorted(candidates, key=key)


def _rendezvous(prefix: str, candidates: Sequence[NodeView]) -> str:
    def weight(node: NodeView) -> bytes:
        return hashlib.blake2b(f"{node.id}\0{prefix}".encode(), digest_size=8).digest()

    return max(candidates, key=weight).id


BUILTIN_POLICIES: dict[str, type[RoutingPolicy]] = {
    BalancedPolicy.name: BalancedPolicy,
    RoundRobinPolicy.name: RoundRobinPolicy,
}
