"""BackendIntegrationSystem: components start in dependency order and stop in reverse, also
when one fails to start (those already started are stopped) or to stop (the others still
stop); the state table; the view /api/ai/system/components shows."""

from __future__ import annotations

import asyncio
import doctest
from typing import Any

import pytest

import neurons.system.core
from neurons.errors import ComponentError, ComponentNotFoundError, ConfigError
from neurons.system import (
    TRANSITIONS,
    BackendIntegrationSystem,
    Component,
    ComponentState,
)


class Probe(Component):
    """Writes what happens to it into a shared journal; can be told to misbehave."""

    def __init__(
        self,
        journal: list[str],
        name: str,
        *depends_on: str,
        fail_start: bool = False,
        fail_stop: bool = False,
        stop_s: float = 0.0,
    ) -> None:
        self.journal = journal
        self.name = name
        self.depends_on = depends_on
        self.fail_start = fail_start
        self.fail_stop = fail_stop
        self.stop_s = stop_s
        self.running = False

    async def start(self) -> None:
        await asyncio.sleep(0)  # a real await: the system must not interleave starts
        self.journal.append(f"start {self.name}")
        if self.fail_start:
            raise OSError("port taken")
        self.running = True

    async def stop(self) -> None:
        self.journal.append(f"stop {self.name}")
        await asyncio.sleep(self.stop_s)
        if self.fail_stop:
            raise RuntimeError("could not flush")
        self.running = False

    def health(self) -> dict[str, Any]:
        return {"ok": self.running, "detail": "fine"}

    def metrics(self) -> dict[str, Any]:
        return {"stops": sum(1 for line in self.journal if line == f"stop {self.name}")}


def _system(journal: list[str], *probes: Probe) -> BackendIntegrationSystem:
    system = BackendIntegrationSystem(stop_timeout_s=1.0)
    for probe in probes:
        system.register(probe)
    return system


def test_start_in_dependency_order_stop_in_reverse() -> None:
    journal: list[str] = []
    # Registered in a scrambled order: the graph decides, registration breaks ties.
    system = _system(
        journal,
        Probe(journal, "gateway", "monitor", "store"),
        Probe(journal, "learning", "store"),
        Probe(journal, "monitor", "store"),
        Probe(journal, "store"),
        Probe(journal, "persistence", "store"),
    )
    assert [c.name for c in system.order()] == [
        "store", "learning", "monitor", "gateway", "persistence",
    ]  # fmt: skip
    asyncio.run(system.initialize())
    assert journal == [
        f"start {n}" for n in ("store", "learning", "monitor", "gateway", "persistence")
    ]
    assert {c["name"]: c["state"] for c in system.components()} == dict.fromkeys(
        ["store", "learning", "monitor", "gateway", "persistence"], "running"
    )
    journal.clear()
    asyncio.run(system.shutdown())
    assert journal == [
        f"stop {n}" for n in ("persistence", "gateway", "monitor", "learning", "store")
    ]
    asyncio.run(system.shutdown())  # a second call stops nothing twice
    assert len(journal) == 5
    assert all(system.state(c.name) is ComponentState.STOPPED for c in system.order())


def test_a_failed_start_stops_the_started_ones_in_reverse_and_names_the_component() -> None:
    journal: list[str] = []
    system = _system(
        journal,
        Probe(journal, "store"),
        Probe(journal, "neuron", "store"),
        Probe(journal, "gateway", "neuron", fail_start=True),
        Probe(journal, "learning", "gateway"),
    )
    with pytest.raises(ComponentError) as caught:
        asyncio.run(system.initialize())
    assert caught.value.component == "gateway"
    assert "'gateway' failed to start" in str(caught.value) and "port taken" in str(caught.value)
    assert isinstance(caught.value.__cause__, OSError)
    assert system.failure is caught.value
    assert journal == ["start store", "start neuron", "start gateway", "stop neuron", "stop store"]
    states = {c["name"]: (c["state"], c["error"]) for c in system.components()}
    assert states == {
        "store": ("stopped", None),
        "neuron": ("stopped", None),
        "gateway": ("failed", "OSError: port taken"),
        "learning": ("registered", None),  # never started, never stopped
    }


def test_a_cancelled_start_still_stops_what_started() -> None:
    journal: list[str] = []

    class Hangs(Probe):
        async def start(self) -> None:
            self.journal.append("start hangs")
            await asyncio.sleep(60)

    system = _system(journal, Probe(journal, "store"), Hangs(journal, "hangs", "store"))

    async def main() -> None:
        task = asyncio.create_task(system.initialize())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert journal == ["start store", "start hangs", "stop store"]
    assert system.state("hangs") is ComponentState.FAILED
    assert system.failure is None  # a cancel is not a component's failure


def test_a_failing_or_slow_stop_is_recorded_and_the_others_still_stop() -> None:
    journal: list[str] = []
    system = _system(
        journal,
        Probe(journal, "store"),
        Probe(journal, "jobs", "store", fail_stop=True),
        Probe(journal, "gateway", "store", stop_s=5.0),
        Probe(journal, "events", "store"),
    )
    asyncio.run(system.initialize())
    journal.clear()
    asyncio.run(system.shutdown(deadline_s=0.2))
    assert journal == ["stop events", "stop gateway", "stop jobs", "stop store"]
    view = {c["name"]: c for c in system.components()}
    assert view["gateway"]["state"] == "failed"
    assert view["gateway"]["error"] == "did not stop within 0.2s"
    assert view["jobs"]["state"] == "failed"
    assert view["jobs"]["error"] == "RuntimeError: could not flush"
    assert view["store"]["state"] == view["events"]["state"] == "stopped"


def test_a_component_may_ask_for_a_longer_stop_than_the_systems_bound() -> None:
    journal: list[str] = []
    patient = Probe(journal, "jobs", stop_s=0.3)
    patient.stop_timeout_s = 2.0  # its runs checkpoint within a deadline of their own
    system = _system(journal, patient, Probe(journal, "hasty", stop_s=0.3))
    asyncio.run(system.initialize())
    asyncio.run(system.shutdown(deadline_s=0.1))
    assert system.state("jobs") is ComponentState.STOPPED
    assert system.state("hasty") is ComponentState.FAILED


def test_the_view_shows_state_health_metrics_and_times() -> None:
    journal: list[str] = []

    class Broken(Probe):
        def health(self) -> dict[str, Any]:
            raise ValueError("oops")

    system = _system(journal, Probe(journal, "store"), Broken(journal, "broken", "store"))
    system.mock = True
    before = system.describe()
    assert before["ok"] is False and before["mock"] is True
    assert before["components"][0]["health"] == {"ok": False, "reason": "not running (registered)"}
    asyncio.run(system.initialize())
    view = {c["name"]: c for c in system.components()}
    store = view["store"]
    assert store["state"] == "running" and store["depends_on"] == []
    assert store["health"] == {"ok": True, "detail": "fine"}
    assert store["metrics"]["stops"] == 0 and store["metrics"]["start_s"] >= 0
    assert store["started_at"] is not None and store["stopped_at"] is None
    assert view["broken"]["depends_on"] == ["store"]
    assert view["broken"]["health"] == {"ok": False, "error": "health() raised ValueError: oops"}
    assert system.describe()["ok"] is False  # one unhealthy component
    asyncio.run(system.shutdown())
    assert view["store"]["metrics"]["stops"] == 0  # a snapshot, not live
    stopped = system.components()[0]
    assert stopped["metrics"]["stops"] == 1 and stopped["stopped_at"] is not None


def test_run_shuts_down_when_serve_raises() -> None:
    journal: list[str] = []
    system = _system(journal, Probe(journal, "store"), Probe(journal, "gateway", "store"))

    async def serve() -> None:
        journal.append("serve")
        raise RuntimeError("listener died")

    with pytest.raises(RuntimeError, match="listener died"):
        asyncio.run(system.run(serve))
    assert journal == ["start store", "start gateway", "serve", "stop gateway", "stop store"]


def test_the_graph_and_registrations_are_checked_before_anything_starts() -> None:
    journal: list[str] = []
    system = _system(journal, Probe(journal, "a", "b"), Probe(journal, "b", "c"))
    with pytest.raises(ConfigError, match="'b' depends on 'c', which is not registered"):
        asyncio.run(system.initialize())
    cycle = _system(
        journal, Probe(journal, "x", "y"), Probe(journal, "y", "x"), Probe(journal, "z")
    )
    with pytest.raises(ConfigError, match="cycle: x, y"):
        cycle.order()
    assert journal == []
    with pytest.raises(ConfigError, match="already registered"):
        cycle.register(Probe(journal, "z"))
    with pytest.raises(ComponentNotFoundError):
        cycle.get("nope")
    ok = _system(journal, Probe(journal, "only"))
    asyncio.run(ok.initialize())
    with pytest.raises(ConfigError, match="already started"):
        ok.register(Probe(journal, "late"))
    with pytest.raises(ConfigError, match="already been initialized"):
        asyncio.run(ok.initialize())


def test_the_state_table() -> None:
    reachable = {ComponentState.REGISTERED}
    frontier = [ComponentState.REGISTERED]
    while frontier:
        state = frontier.pop()
        for old, new in TRANSITIONS:
            if old is state and new not in reachable:
                reachable.add(new)
                frontier.append(new)
    assert reachable == set(ComponentState)
    finals = {ComponentState.STOPPED, ComponentState.FAILED}
    assert not any(old in finals for old, _ in TRANSITIONS)  # a system runs once


def test_doctests() -> None:
    result = doctest.testmod(neurons.system.core)
    assert result.attempted > 0 and result.failed == 0
