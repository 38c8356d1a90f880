"""The control plane's lifespan is a BackendIntegrationSystem: its components start in the
documented order and stop in reverse, and a component that fails to start stops the ones
before it (the store is closed, the port never opens)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from neurons.api.app import NodeSpec, create_control_plane
from neurons.config import Settings
from neurons.errors import ComponentError
from neurons.system import BackendIntegrationSystem
from tests.conftest import free_port

ORDER = [
    "store", "events", "auth", "persistence", "node_clients", "network", "health_monitor",
    "plugins", "library", "inference", "gateway", "optimization", "fine_tuning", "learning",
]  # fmt: skip


def _settings(tmp_path: Path, **extra: object) -> Settings:
    return Settings(home=tmp_path, ollama_base_url="", **extra)  # type: ignore[arg-type]


def test_components_start_in_order_and_stop_in_reverse(tmp_path: Path) -> None:
    dead = NodeSpec("gone", f"http://127.0.0.1:{free_port()}", "embedded")
    app = create_control_plane(_settings(tmp_path), [dead])
    with TestClient(app) as client:
        system: BackendIntegrationSystem = app.state.system
        views = system.components()
        assert [v["name"] for v in views] == ORDER
        assert {v["state"] for v in views} == {"running"}
        started = [v["started_at"] for v in views]
        assert started == sorted(started)
        by_name = {v["name"]: v for v in views}
        assert by_name["gateway"]["health"] == {"ok": False, "routable_nodes": 0}
        assert by_name["health_monitor"]["metrics"]["states"] == {"offline": 1}
        assert by_name["network"]["depends_on"] == ["store", "events", "node_clients"]
        # The routes still find what the components built.
        assert client.get("/api/health").json()["nodes"][0]["status"] == "offline"
    views = system.components()
    assert {v["state"] for v in views} == {"stopped"}
    stopped = {v["name"]: v["stopped_at"] for v in views}
    assert [n for n, _ in sorted(stopped.items(), key=lambda kv: kv[1])] == ORDER[::-1]


def test_a_component_that_fails_to_start_stops_those_before_it(tmp_path: Path) -> None:
    app = create_control_plane(_settings(tmp_path, routing_policy="nope"), [])
    with pytest.raises(ComponentError, match="'gateway' failed to start: unknown routing"):
        with TestClient(app):
            pass  # pragma: no cover - never served
    system: BackendIntegrationSystem = app.state.system
    states = {v["name"]: v["state"] for v in system.components()}
    before = ORDER[: ORDER.index("gateway")]
    assert all(states[name] == "stopped" for name in before)
    assert states["gateway"] == "failed"
    assert all(states[name] == "registered" for name in ORDER[ORDER.index("gateway") + 1 :])


def test_serving_without_keys_beyond_loopback_stops_at_auth(tmp_path: Path) -> None:
    app = create_control_plane(_settings(tmp_path, host="0.0.0.0"), [])
    with pytest.raises(ComponentError, match="'auth' failed to start: .*--insecure"):
        with TestClient(app):
            pass  # pragma: no cover - never served
    states = {v["name"]: v["state"] for v in app.state.system.components()}
    assert states["store"] == states["events"] == "stopped" and states["auth"] == "failed"
