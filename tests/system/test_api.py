"""``GET /api/ai/system/components`` on a real control plane (uvicorn on a free port, keys on)
in front of a real neuron: every component running and healthy in start order, one by name,
404 for an unknown name, a read key enough and no key refused."""

from __future__ import annotations

from pathlib import Path

import httpx

from neurons.api.app import NodeSpec, create_control_plane
from neurons.api.server import ServerThread
from neurons.config import Settings
from neurons.neuron.process import NeuronProcess
from tests.api.envelope import error, ok
from tests.conftest import free_port
from tests.system.test_control_plane_components import ORDER

MASTER = "mk-system-tests-master-key"
COMPONENTS = "/api/ai/system/components"


def test_components_route(neuron: NeuronProcess, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, ollama_base_url="", master_key=MASTER)
    app = create_control_plane(settings, [NodeSpec("neuron-1", neuron.url, "embedded")])
    admin = {"Authorization": f"Bearer {MASTER}"}
    with (
        ServerThread(app, port=free_port()) as server,
        httpx.Client(base_url=server.url, headers=admin, timeout=30) as client,
    ):
        reader = ok(client.post("/api/ai/keys", json={"name": "r", "scope": "read"}), 201)
        client.post("/api/show", json={"model": "smollm2:135m"})  # routed, so counted
        answer = ok(client.get(COMPONENTS, headers={"Authorization": f"Bearer {reader['secret']}"}))
        assert answer["ok"] is True and answer["mock"] is False
        views = answer["components"]
        assert [v["name"] for v in views] == ORDER
        for view in views:
            assert view["state"] == "running" and view["health"]["ok"] is True, view
            assert view["started_at"] and view["stopped_at"] is None and view["error"] is None
            assert view["metrics"]["start_s"] >= 0
        by_name = {v["name"]: v for v in views}
        assert by_name["gateway"]["metrics"]["requests"] >= 1
        assert by_name["health_monitor"]["metrics"]["states"] == {"online": 1}
        assert by_name["auth"]["metrics"]["keys_required"] is True
        assert by_name["store"]["metrics"]["database"] == "sqlite"

        one = ok(client.get(f"{COMPONENTS}/learning"))["component"]
        assert one["name"] == "learning"
        assert one["depends_on"] == ["store", "events", "fine_tuning"]  # teaching jobs use it
        assert "no component named 'nope'" in error(
            client.get(f"{COMPONENTS}/nope"), 404, "component_not_found"
        )
        assert httpx.get(server.url + COMPONENTS).status_code == 401
        schema = client.get("/openapi.json").json()
        declared = schema["paths"][f"{COMPONENTS}/{{name}}"]["get"]["responses"]
        assert {"200", "401", "403", "404", "422", "429"} <= set(declared)
