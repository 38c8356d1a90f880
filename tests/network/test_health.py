"""HealthMonitor against a real SQLite store, the session's real neuron and a dead port."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from neurons.errors import NodeNotFoundError
from neurons.network.health import OFFLINE_AFTER_PROBES, HealthMonitor
from neurons.network.states import BreakerState, NodeState
from neurons.neuron.process import NeuronProcess
from neurons.store import Store
from tests.conftest import free_port

SMOL = "smollm2:135m"
Scenario = Callable[[HealthMonitor], Awaitable[None]]


@pytest.fixture
def dead() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nobody listens there


def run(store: Store, scenario: Scenario, **options: Any) -> None:
    async def main() -> None:
        async with httpx.AsyncClient() as http:
            monitor = HealthMonitor(store, http, **options)
            try:
                await scenario(monitor)
            finally:
                await monitor.stop()

    asyncio.run(main())


def kinds(store: Store, node: str) -> list[str]:
    return [e["kind"] for e in reversed(store.nodes.events(node))]  # oldest first


async def eventually(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def test_check_all_probes_a_live_and_a_dead_node(
    store: Store, neuron: NeuronProcess, dead: str
) -> None:
    store.nodes.add("live", neuron.url, "embedded")
    store.nodes.add("dead", dead, "ollama")

    async def scenario(monitor: HealthMonitor) -> None:
        await monitor.check_all()
        live, gone = monitor.find("live"), monitor.find("dead")
        assert live is not None and gone is not None
        assert live.state is NodeState.ONLINE
        assert live.has(SMOL) and live.has("gemma3:270m")
        assert live.version and live.slots >= 1
        assert live.latency_ms is not None and live.latency_ms > 0
        assert (live.consecutive_probe_failures, live.last_error) == (0, None)
        # unknown --probe_failed--> offline: a node never seen is not worth a second try.
        assert gone.state is NodeState.OFFLINE
        assert gone.last_error and "ConnectError" in gone.last_error
        assert gone.models == frozenset() and gone.version is None
        assert [v.name for v in monitor.routable()] == ["live"]
        assert [v.name for v in monitor.eligible(SMOL)] == ["live"]
        assert monitor.eligible("nope:1b") == []

    run(store, scenario)
    live_record, dead_record = store.nodes.get("live"), store.nodes.get("dead")
    assert (live_record.status, dead_record.status) == ("online", "offline")
    assert live_record.last_seen_at is not None and dead_record.last_seen_at is None
    (online,) = store.nodes.events("live")
    assert (online["kind"], online["detail"]) == (
        "online",
        {"from": "unknown", "event": "probe_ok"},
    )
    (offline,) = store.nodes.events("dead")
    assert offline["kind"] == "offline"
    assert offline["detail"]["event"] == "probe_failed" and offline["detail"]["error"]


def test_an_online_node_that_dies_degrades_then_goes_offline(
    store: Store, neuron: NeuronProcess, dead: str
) -> None:
    store.nodes.add("n", neuron.url, "embedded")

    async def scenario(monitor: HealthMonitor) -> None:
        await monitor.check_all()
        store.nodes.upsert("n", dead, "embedded")  # the node moved away: probes fail now
        states = []
        for _ in range(OFFLINE_AFTER_PROBES):
            await monitor.check_all()
            view = monitor.find("n")
            assert view is not None
            states.append(view.state)
        assert states == [NodeState.DEGRADED, NodeState.OFFLINE]
        store.nodes.upsert("n", neuron.url, "embedded")  # back again
        await monitor.check_all()
        view = monitor.find("n")
        assert (
            view is not None
            and view.state is NodeState.ONLINE
            and view.consecutive_probe_failures == 0
        )

    run(store, scenario)
    assert kinds(store, "n") == ["online", "degraded", "offline", "online"]


def test_registry_follows_the_store(store: Store, neuron: NeuronProcess, dead: str) -> None:
    first = store.nodes.add("first", neuron.url, "embedded")

    async def scenario(monitor: HealthMonitor) -> None:
        await monitor.check_all()
        assert set(monitor.views) == {first.id}
        later = store.nodes.add("later", dead, "ollama", {"zone": "b"}, priority=3)
        await monitor.refresh_registry()
        view = monitor.find("later")
        assert view is not None and view is monitor.find(later.id)
        assert (view.state, view.labels, view.priority) == (NodeState.UNKNOWN, {"zone": "b"}, 3)
        assert [v.name for v in monitor.ordered()] == ["later", "first"]  # priority first
        store.nodes.remove("first")
        await monitor.refresh_registry()
        assert set(monitor.views) == {later.id} and monitor.find("first") is None

    run(store, scenario)


def test_drain_and_resume(store: Store, neuron: NeuronProcess) -> None:
    store.nodes.add("n", neuron.url, "embedded")

    async def scenario(monitor: HealthMonitor) -> None:
        await monitor.check_all()
        view = await monitor.drain("n")
        assert view.state is NodeState.DRAINING and monitor.routable() == []
        assert store.nodes.get("n").status == "draining"
        await monitor.check_all()  # a good probe does not undo a drain
        assert view.state is NodeState.DRAINING and view.has(SMOL)
        resumed = await monitor.drain("n", drain=False)
        assert resumed is view and resumed.state is NodeState.ONLINE
        assert monitor.routable() == [view]
        with pytest.raises(NodeNotFoundError):
            await monitor.drain("ghost")

    run(store, scenario)
    assert store.nodes.get("n").status == "online"
    assert kinds(store, "n") == ["online", "draining", "unknown", "online"]


def test_drain_written_by_another_process(store: Store, neuron: NeuronProcess) -> None:
    store.nodes.add("n", neuron.url, "embedded")

    async def scenario(monitor: HealthMonitor) -> None:
        await monitor.check_all()
        store.nodes.set_status("n", "draining", seen=False)  # as the CLI does
        await monitor.check_all()
        view = monitor.find("n")
        assert view is not None and view.state is NodeState.DRAINING
        store.nodes.set_status("n", "unknown", seen=False)
        await monitor.check_all()
        assert monitor.describe(view)["state"] == "online"

    run(store, scenario)


def test_report_failure_opens_the_breaker(store: Store, neuron: NeuronProcess) -> None:
    store.nodes.add("n", neuron.url, "embedded")

    async def scenario(monitor: HealthMonitor) -> None:
        await monitor.check_all()
        view = monitor.find("n")
        assert view is not None
        monitor.report_success(view, first_byte_ms=5.0)
        for attempt in range(3):
            assert view.breaker.state is BreakerState.CLOSED, attempt
            monitor.report_failure(view, "boom")
        assert view.breaker.state is BreakerState.OPEN
        assert (view.requests, view.failures, view.last_error) == (4, 3, "boom")
        assert view.state is NodeState.ONLINE  # the state is the probes' business
        assert monitor.routable() == [] and monitor.eligible(SMOL) == []
        await eventually(lambda: "breaker_open" in kinds(store, "n"))
        (event,) = [e for e in store.nodes.events("n") if e["kind"] == "breaker_open"]
        assert event["detail"] == {"error": "boom"}
        await asyncio.sleep(0.3)  # the cooldown: the next good probe is the trial
        assert monitor.describe(view)["breaker"] == "half_open"
        await monitor.check_all()
        assert monitor.describe(view)["breaker"] == "closed"
        assert monitor.routable() == [view]

    run(store, scenario, breaker_failures=3, breaker_cooldown_s=0.25)


def test_slots_label_overrides_the_reported_slots(store: Store, neuron: NeuronProcess) -> None:
    store.nodes.add("n", neuron.url, "embedded", {"slots": "7"})

    async def scenario(monitor: HealthMonitor) -> None:
        await monitor.check_all()
        view = monitor.find("n")
        assert view is not None and view.slots == 7

    run(store, scenario)


def test_describe(store: Store, neuron: NeuronProcess) -> None:
    record = store.nodes.add("n", neuron.url + "/", "embedded", {"zone": "a"}, priority=2)

    async def scenario(monitor: HealthMonitor) -> None:
        await monitor.check_all()
        view = monitor.find("n")
        assert view is not None
        view.in_flight = 1
        described = monitor.describe(view)
        assert set(described) == {
            "id", "name", "url", "kind", "labels", "priority", "state", "breaker", "version",
            "models", "capabilities", "loaded", "slots", "in_flight", "latency_ms", "requests",
            "failures", "last_error", "has_token",
        }  # fmt: skip
        assert described["id"] == record.id
        assert described["url"] == neuron.url  # the trailing slash is dropped
        assert (described["state"], described["breaker"]) == ("online", "closed")
        assert (described["labels"], described["priority"]) == ({"zone": "a"}, 2)
        assert described["models"] == sorted(described["models"]) and SMOL in described["models"]
        assert described["capabilities"][SMOL] == ["completion", "tools"]
        assert isinstance(described["latency_ms"], float) and described["in_flight"] == 1
        assert (described["requests"], described["failures"], described["last_error"]) == (
            0,
            0,
            None,
        )

    run(store, scenario)


def test_a_stale_registry_read_does_not_undo_a_drain(
    store: Store, neuron: NeuronProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A health pass that read the registry before a drain must not resume the node."""
    store.nodes.add("n", neuron.url, "embedded")
    real_list = store.nodes.list
    delays = iter([0.3])  # the first read is slow: it returns after the drain, with old data

    def list_nodes(kind: str | None = None) -> list[Any]:
        records = real_list(kind)
        time.sleep(next(delays, 0.0))
        return records

    async def scenario(monitor: HealthMonitor) -> None:
        await monitor.refresh_registry()
        monkeypatch.setattr(store.nodes, "list", list_nodes)
        health_pass = asyncio.create_task(monitor.check_all())
        await asyncio.sleep(0.05)
        view = await monitor.drain("n")
        await health_pass
        assert view.state is NodeState.DRAINING

    run(store, scenario)
    assert store.nodes.get("n").status == "draining"


def test_probes_record_each_nodes_model_manifests_for_the_snapshots(
    store: Store, neuron: NeuronProcess, tmp_path: Any
) -> None:
    from neurons.config import Settings
    from neurons.network.health import MANIFESTS_KEY
    from neurons.persistence import PersistenceService

    store.nodes.add("live", neuron.url, "embedded")
    listed = httpx.get(f"{neuron.url}/api/tags", headers=neuron.headers).json()["models"]
    digests = {m["name"]: m["digest"] for m in listed}

    async def scenario(monitor: HealthMonitor) -> None:
        await monitor.check_all()
        first = store.kv.get(MANIFESTS_KEY + "live")
        await monitor.check_all()  # nothing changed: nothing rewritten
        assert store.kv.get(MANIFESTS_KEY + "live") == first

    run(store, scenario)
    record = store.kv.get(MANIFESTS_KEY + "live")
    assert record["url"] == neuron.url and record["seen_at"]
    assert {m["name"]: m["digest"] for m in record["models"]} == digests
    assert all(m["size"] > 0 for m in record["models"])

    settings = Settings(home=tmp_path, ollama_base_url="")
    service = PersistenceService(store, settings)
    saved = service.save("manifests")
    (entry,) = service.show(saved.version, "node_models")["data"]
    assert entry["node"] == "live" and entry["models"] == record["models"]
