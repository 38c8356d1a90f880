"""The control plane in-process (FastAPI TestClient) in front of a real neuron subprocess."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from neurons.api.app import NodeSpec, create_control_plane
from neurons.config import Settings
from neurons.neuron.process import NeuronProcess
from neurons.store import open_store
from tests.conftest import free_port


def test_health_and_gateway(neuron: NeuronProcess, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, ollama_base_url="")
    app = create_control_plane(settings, [NodeSpec("neuron-1", neuron.url, "embedded")])
    with TestClient(app) as client:
        health = client.get("/api/health").json()
        assert health["status"] == "ok"
        assert health["nodes"] == [
            {"name": "neuron-1", "url": neuron.url, "kind": "embedded", "status": "online"}
        ]
        tags = client.get("/api/tags")
        assert tags.status_code == 200
        models = {m["name"]: m for m in tags.json()["models"]}
        assert models["smollm2:135m"]["nodes"] == ["neuron-1"]
        missing = client.post("/api/show", json={"model": "nope"})
        assert missing.status_code == 404 and missing.json() == {"error": "model 'nope' not found"}
        lines = client.post(
            "/api/generate",
            json={"model": "smollm2:135m", "prompt": "Hi", "options": {"num_predict": 3}},
        ).text.splitlines()
        assert len(lines) >= 2 and '"done":true' in lines[-1]
    # The registry is durable: the node is in the database after shutdown.
    store = open_store(settings.resolved_database_url)
    assert store.nodes.get("neuron-1").url == neuron.url
    assert [e["kind"] for e in store.nodes.events("neuron-1")] == ["online"]
    store.close()


def test_no_healthy_neuron_is_a_503_with_an_error(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    settings = Settings(home=tmp_path, ollama_base_url="")
    app = create_control_plane(settings, [NodeSpec("gone", dead, "embedded")])
    with TestClient(app) as client:
        health = client.get("/api/health").json()
        assert health["status"] == "degraded"
        assert health["nodes"][0]["status"] == "offline"
        for response in (
            client.get("/api/tags"),
            client.post("/api/generate", json={"model": "smollm2:135m", "prompt": "Hi"}),
        ):
            assert response.status_code == 503
            assert "no healthy neuron" in response.json()["error"]


def test_reachable_ollama_base_url_joins_the_network(neuron: NeuronProcess, tmp_path: Path) -> None:
    # No real Ollama exists here; a neuron speaks the same API, so it stands in for one.
    settings = Settings(home=tmp_path, ollama_base_url=neuron.url)
    with TestClient(create_control_plane(settings, [])) as client:
        nodes = client.get("/api/health").json()["nodes"]
    assert nodes == [{"name": "ollama", "url": neuron.url, "kind": "ollama", "status": "online"}]
