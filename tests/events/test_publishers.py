"""Publishers the end-to-end test does not reach: a node's breaker moving (open, half_open,
closed) and coming up again, announced by the health monitor through a real EventBus; a
snapshot announced by PersistenceService; and a publisher that raises breaks neither."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from neurons.api.server import ServerThread
from neurons.config import Settings
from neurons.events import EventBus
from neurons.network.health import HealthMonitor
from neurons.neuron.app import create_neuron_app
from neurons.persistence import PersistenceService
from neurons.store import Store
from tests.conftest import free_port


def seen(store: Store) -> list[tuple[str, str, dict[str, Any]]]:
    return [(e.kind, e.subject, e.payload) for e in store.events.list()]


def test_the_monitor_announces_down_breaker_moves_and_up(store: Store, tmp_path: Path) -> None:
    bus = EventBus(store)
    port = free_port()
    store.nodes.add("n1", f"http://127.0.0.1:{port}", "embedded")

    async def scenario() -> None:
        async with httpx.AsyncClient() as http:
            monitor = HealthMonitor(
                store, http, breaker_failures=2, breaker_cooldown_s=0.2, publish=bus.publish
            )
            await monitor.check_all()  # nobody listens yet: offline
            view = monitor.find("n1")
            assert view is not None
            monitor.report_failure(view, "boom 1")
            monitor.report_failure(view, "boom 2")  # the second failure opens it
            await asyncio.sleep(0.25)
            assert str(view.breaker.state) == "half_open"  # read after the cooldown
            # A real neuron (in this process: quicker to start) where nobody listened.
            settings = Settings(home=tmp_path / "n1", import_default_models=False,
                                ollama_base_url="")  # fmt: skip
            app = create_neuron_app(settings)
            server = await asyncio.to_thread(ServerThread(app, port=port).start)
            try:
                assert await monitor.probe(view)  # the trial: closed, and the node is up
            finally:
                await asyncio.to_thread(server.stop)
                app.state.neuron.close()

    asyncio.run(scenario())
    assert bus.flush(10)
    events = seen(store)
    assert [(k, s) for k, s, _ in events] == [
        ("node.down", "n1"),
        ("node.breaker", "n1"),
        ("node.breaker", "n1"),
        ("node.breaker", "n1"),
        ("node.up", "n1"),
    ]
    down, opened, half, closed, up = (p for _, _, p in events)
    assert (down["from"], down["to"], down["event"]) == ("unknown", "offline", "probe_failed")
    assert "error" in down and down["url"].endswith(str(port))
    assert (opened["from"], opened["state"], opened["error"]) == ("closed", "open", "boom 2")
    assert (half["from"], half["state"]) == ("open", "half_open")
    assert (closed["from"], closed["state"]) == ("half_open", "closed")
    assert (up["from"], up["to"]) == ("offline", "online")


def test_a_state_snapshot_is_announced_once_committed(store: Store, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", ollama_base_url="", import_default_models=False)
    bus = EventBus(store)
    record = PersistenceService(store, settings, publish=bus.publish).save("nightly")
    ((kind, subject, payload),) = seen(store)
    assert (kind, subject) == ("snapshot.saved", f"v{record.version}")
    assert payload == {
        "version": record.version,
        "reason": "nightly",
        "files": len(record.components),
        "bytes": sum(f.bytes for f in record.components.values()),
    }


def test_a_publisher_that_raises_breaks_nothing(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(kind: str, subject: str = "", **payload: Any) -> None:
        raise RuntimeError("the bus is down")

    settings = Settings(home=tmp_path / "home", ollama_base_url="", import_default_models=False)
    record = PersistenceService(store, settings, publish=broken).save()
    assert store.snapshots.get(record.version).status == "complete"
    store.nodes.add("gone", f"http://127.0.0.1:{free_port()}", "ollama")

    async def scenario() -> None:
        async with httpx.AsyncClient() as http:
            monitor = HealthMonitor(store, http, breaker_failures=1, publish=broken)
            await monitor.check_all()
            view = monitor.find("gone")
            assert view is not None and str(view.state) == "offline"
            monitor.report_failure(view, "boom")
            assert str(view.breaker.state) == "open"

    asyncio.run(scenario())
    logged = sorted(r.getMessage() for r in caplog.records if r.exc_info is not None)
    assert logged == [
        "announcing node.breaker gone failed",
        "announcing node.down gone failed",
        f"announcing state snapshot v{record.version} failed",
    ]
