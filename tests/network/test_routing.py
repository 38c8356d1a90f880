"""Routing policies over plain NodeViews: BalancedPolicy's ordering rules, round-robin, views."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from neurons.network.routing import (
    BUILTIN_POLICIES,
    LATENCY_ALPHA,
    BalancedPolicy,
    NodeView,
    RoundRobinPolicy,
    RouteRequest,
    RoutingPolicy,
)
from neurons.network.states import NodeState

MODEL = "smollm2:135m"


def node(name: str, **kw: Any) -> NodeView:
    kw.setdefault("models", frozenset({MODEL}))
    kw.setdefault("state", NodeState.ONLINE)
    return NodeView(id=f"id-{name}", name=name, url=f"http://{name}:11434", kind="ollama", **kw)


@dataclass(frozen=True)
class Case:
    id: str
    nodes: list[NodeView]
    first: str
    request: RouteRequest = field(default_factory=lambda: RouteRequest(MODEL))


CASES = [
    Case("free-slot-beats-busy", [node("busy", in_flight=1), node("free")], "free"),
    Case(
        "free-slot-beats-loaded-and-fast",
        [
            node("busy", in_flight=2, slots=2, loaded=frozenset({MODEL}), latency_ms=1.0),
            node("free", in_flight=1, slots=2, latency_ms=500.0),
        ],
        "free",
    ),
    Case(
        "higher-tier-while-it-has-a-free-slot",
        [node("low", priority=0), node("high", priority=5, in_flight=1, slots=2)],
        "high",
    ),
    Case(
        "overflow-to-lower-tier-when-saturated",
        [node("high", priority=5, in_flight=2, slots=2), node("low", priority=0)],
        "low",
    ),
    Case(
        "all-busy-keeps-tier-order",
        [node("low", in_flight=1), node("high", priority=1, in_flight=3)],
        "high",
    ),
    Case(
        "loaded-preferred",
        [node("cold", latency_ms=1.0), node("warm", loaded=frozenset({MODEL}), latency_ms=50.0)],
        "warm",
    ),
    Case(
        "loaded-matches-canonical-name",
        [node("cold"), node("warm", loaded=frozenset({"llama3:latest"}))],
        "warm",
        RouteRequest("llama3"),
    ),
    Case(
        "least-load-per-slot",
        [node("half", in_flight=2, slots=4), node("quarter", in_flight=1, slots=4)],
        "quarter",
    ),
    Case(
        "load-is-per-slot-not-absolute",
        [node("small", in_flight=1, slots=2), node("big", in_flight=2, slots=8)],
        "big",
    ),
    Case(
        "latency-breaks-ties",
        [node("slow", latency_ms=80.0), node("unmeasured"), node("fast", latency_ms=20.0)],
        "fast",
    ),
]


def snapshot(nodes: list[NodeView]) -> list[dict[str, Any]]:
    """Every field by value (the breaker by identity and state): enough to see a mutation."""
    return [
        {
            **{k: v for k, v in vars(n).items() if k != "breaker"},
            "breaker": (id(n.breaker), n.breaker.state),
        }
        for n in nodes
    ]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_balanced_first_choice(case: Case) -> None:
    before = snapshot(case.nodes)
    ordered = BalancedPolicy().order(case.request, case.nodes)
    assert ordered[0].name == case.first
    assert sorted(n.name for n in ordered) == sorted(n.name for n in case.nodes)
    assert snapshot(case.nodes) == before  # the views and the input order are untouched


def test_balanced_full_order() -> None:
    nodes = [
        node("saturated-high", priority=9, in_flight=1),
        node("low-fast", latency_ms=5.0),
        node("high-cold", priority=2),
        node("high-warm", priority=2, loaded=frozenset({MODEL})),
        node("low-slow", latency_ms=50.0),
    ]
    names = [n.name for n in BalancedPolicy().order(RouteRequest(MODEL), nodes)]
    assert names == ["high-warm", "high-cold", "low-fast", "low-slow", "saturated-high"]


def _sticky_choice(nodes: list[NodeView], prefix: str) -> str:
    return BalancedPolicy().order(RouteRequest(MODEL, prefix=prefix), nodes)[0].name


def test_stickiness_same_prefix_same_node() -> None:
    nodes = [node(f"n{i}") for i in range(5)]
    prefixes = [f"You are assistant number {i}." for i in range(40)]
    chosen = {p: _sticky_choice(nodes, p) for p in prefixes}
    for p in prefixes:
        assert _sticky_choice(list(reversed(nodes)), p) == chosen[p]
    assert len(set(chosen.values())) > 1  # prefixes spread over the nodes


def test_stickiness_survives_removing_an_unrelated_node() -> None:
    nodes = [node(f"n{i}") for i in range(5)]
    prefixes = [f"system prompt {i}" for i in range(60)]
    chosen = {p: _sticky_choice(nodes, p) for p in prefixes}
    removed = "n2"
    rest = [n for n in nodes if n.name != removed]
    for p, name in chosen.items():
        if name != removed:
            assert _sticky_choice(rest, p) == name  # rendezvous: only n2's prefixes move


def test_stickiness_yields_to_free_slots_and_load() -> None:
    nodes = [node("a"), node("b")]
    prefix = "shared prefix"
    sticky = _sticky_choice(nodes, prefix)
    other = "b" if sticky == "a" else "a"
    for n in nodes:
        if n.name == sticky:
            n.in_flight = 1  # its only slot is busy
    assert _sticky_choice(nodes, prefix) == other


def test_round_robin_rotates() -> None:
    nodes = [node("a"), node("b"), node("c")]
    policy = RoundRobinPolicy()
    seen = [[n.name for n in policy.order(RouteRequest(MODEL), nodes)] for _ in range(4)]
    assert seen == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]
    assert [n.name for n in nodes] == ["a", "b", "c"]


def test_builtin_policies() -> None:
    assert BUILTIN_POLICIES == {"balanced": BalancedPolicy, "round-robin": RoundRobinPolicy}
    for name, cls in BUILTIN_POLICIES.items():
        assert issubclass(cls, RoutingPolicy) and cls.name == name
    with pytest.raises(TypeError):
        RoutingPolicy()  # type: ignore[abstract]


@pytest.mark.parametrize(
    ("present", "asked", "expected"),
    [
        ("smollm2:latest", "smollm2", True),
        ("smollm2:latest", "smollm2:latest", True),
        ("smollm2:latest", "registry.ollama.ai/library/smollm2", True),
        ("smollm2:135m", "smollm2", False),
        ("smollm2:135m", "smollm2:135m", True),
        ("ns/model:latest", "ns/model", True),
    ],
)
def test_has_and_is_loaded_use_canonical_names(present: str, asked: str, expected: bool) -> None:
    view = node("n", models=frozenset({present}), loaded=frozenset({present}))
    assert view.has(asked) is expected
    assert view.is_loaded(asked) is expected


def test_load() -> None:
    assert node("n", in_flight=3, slots=4).load == 0.75
    assert node("n", in_flight=1, slots=0).load == 1.0  # a zero slot count counts as one


def test_observe_latency_smoothing() -> None:
    view = node("n")
    view.observe_latency(100.0)
    assert view.latency_ms == 100.0  # the first sample is taken as it is
    view.observe_latency(200.0)
    assert view.latency_ms == pytest.approx(100.0 + LATENCY_ALPHA * 100.0)
    for _ in range(50):
        view.observe_latency(10.0)
    assert view.latency_ms == pytest.approx(10.0, abs=0.01)


def test_unknown_capabilities_exclude_nothing() -> None:
    view = node("n", capabilities={"llama3:latest": ("completion",)})
    assert view.supports("llama3", ["completion"])  # matched by canonical name
    assert not view.supports("llama3", ["completion", "tools"])
    assert view.capabilities_of(MODEL) is None
    assert view.supports(MODEL, ["completion", "tools"])  # not probed yet: the node decides
