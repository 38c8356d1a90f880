"""The management API under ``/api/ai/network`` in-process, in front of the real neuron."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from neurons.api.app import NodeSpec, create_control_plane
from neurons.config import Settings
from neurons.neuron.process import NeuronProcess
from tests.api.envelope import error, ok
from tests.conftest import free_port

SMOL = "smollm2:135m"
BASE = "/api/ai/network"


@pytest.fixture
def client(neuron: NeuronProcess, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(home=tmp_path, health_interval_s=0.5, ollama_base_url="")
    app = create_control_plane(settings, [NodeSpec("n1", neuron.url, "embedded")])
    with TestClient(app) as test_client:
        yield test_client


def test_status_and_nodes(client: TestClient, neuron: NeuronProcess) -> None:
    status = ok(client.get(f"{BASE}/status"))
    assert (status["healthy"], status["total"], status["routing_policy"]) == (1, 1, "balanced")
    (node,) = status["nodes"]
    assert (node["name"], node["url"], node["state"]) == ("n1", neuron.url, "online")
    assert status["models"][SMOL] == ["n1"]
    assert ok(client.get(f"{BASE}/nodes"))["nodes"] == status["nodes"]
    (checked,) = ok(client.post(f"{BASE}/check"))["nodes"]
    assert checked["state"] == "online" and checked["version"]


def test_add_and_remove_nodes(client: TestClient, neuron: NeuronProcess) -> None:
    body = {"url": neuron.url, "name": "n2", "labels": {"zone": "b"}, "priority": 3}
    node = ok(client.post(f"{BASE}/nodes", json=body), 201)["node"]
    assert (node["name"], node["kind"], node["state"]) == ("n2", "embedded", "online")
    assert (node["labels"], node["priority"]) == ({"zone": "b"}, 3)
    names = [n["name"] for n in ok(client.get(f"{BASE}/nodes"))["nodes"]]
    assert names == ["n2", "n1"]  # higher priority first

    assert "already exists" in error(client.post(f"{BASE}/nodes", json=body), 409, "node_exists")
    dead = f"http://127.0.0.1:{free_port()}"
    gone = ok(client.post(f"{BASE}/nodes", json={"url": dead, "kind": "ollama"}), 201)["node"]
    assert (gone["name"], gone["state"]) == (f"127.0.0.1-{dead.rsplit(':', 1)[1]}", "offline")

    assert ok(client.delete(f"{BASE}/nodes/n2")) == {"removed": "n2"}
    assert ok(client.delete(f"{BASE}/nodes/{gone['name']}"))["removed"] == gone["name"]
    assert [n["name"] for n in ok(client.get(f"{BASE}/nodes"))["nodes"]] == ["n1"]
    assert "'ghost'" in error(client.delete(f"{BASE}/nodes/ghost"), 404, "node_not_found")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 422, "validation_error"),
        ({"url": 5}, 422, "validation_error"),
        ({"url": "http://h:1", "priority": "high"}, 422, "validation_error"),
        ({"url": "http://h:1", "labels": ["zone"]}, 422, "validation_error"),
        ({"url": "localhost:11434"}, 400, "invalid_request"),
        ({"url": "http://h:1/path"}, 400, "invalid_request"),
        ({"url": "http://h:1", "kind": "vllm"}, 400, "invalid_request"),
    ],
)
def test_bad_node_bodies(client: TestClient, body: dict[str, Any], status: int, code: str) -> None:
    error(client.post(f"{BASE}/nodes", json=body), status, code)


def test_drain_resume_and_events(client: TestClient) -> None:
    drained = ok(client.post(f"{BASE}/nodes/n1/drain"))["node"]
    assert drained["state"] == "draining"
    assert ok(client.get(f"{BASE}/status"))["healthy"] == 0
    assert client.get("/api/health").json()["status"] == "degraded"
    resumed = ok(client.post(f"{BASE}/nodes/n1/resume"))["node"]
    assert resumed["state"] == "online"
    events = ok(client.get(f"{BASE}/nodes/n1/events", params={"limit": 3}))["events"]
    assert [e["kind"] for e in events] == ["online", "unknown", "draining"]  # newest first
    assert events[-1]["detail"] == {"from": "online", "event": "drain"}
    error(client.post(f"{BASE}/nodes/ghost/drain"), 404, "node_not_found")
    error(client.get(f"{BASE}/nodes/ghost/events"), 404, "node_not_found")
    error(client.get(f"{BASE}/nodes/n1/events", params={"limit": 0}), 422, "validation_error")


def test_placements_and_sync(client: TestClient) -> None:
    assert ok(client.get(f"{BASE}/placements")) == {"placements": []}
    saved = ok(client.put(f"{BASE}/placements/{SMOL}", json={"replicas": 1}))["placement"]
    assert saved == {"model": SMOL, "labels": {}, "replicas": 1}
    labelled = ok(client.put(f"{BASE}/placements/gemma3", json={"labels": {"zone": "a"}}))
    assert labelled["placement"]["model"] == "gemma3:latest"  # stored canonical
    listed = ok(client.get(f"{BASE}/placements"))["placements"]
    assert {p["model"] for p in listed} == {SMOL, "gemma3:latest"}
    assert ok(client.delete(f"{BASE}/placements/gemma3")) == {"removed": "gemma3"}

    error(client.put(f"{BASE}/placements/{SMOL}", json={"replicas": 0}), 422, "validation_error")
    error(client.put(f"{BASE}/placements/{SMOL}", json={}), 400, "invalid_request")
    error(client.delete(f"{BASE}/placements/nope:1b"), 404, "model_not_found")

    report = ok(client.post(f"{BASE}/sync"))["report"]
    assert report["transfers"] == [] and report["problems"] == []
    assert report["skipped"] == [{"model": SMOL, "node": "n1", "reason": "present"}]
    one = ok(client.post(f"{BASE}/sync", params={"model": SMOL}))["report"]
    assert one["transfers"] == []
    error(client.post(f"{BASE}/sync", params={"model": "nope:1b"}), 404, "model_not_found")


def test_plugins_list_routing_policies(client: TestClient) -> None:
    plugins = ok(client.get("/api/ai/plugins"))
    assert {"balanced", "round-robin"} <= set(plugins["routing_policies"])
    assert isinstance(plugins["plugins"], list)


def test_unknown_management_route(client: TestClient) -> None:
    error(client.get(f"{BASE}/nope"), 404, "not_found")


def test_management_responses_carry_the_overhead_header(client: TestClient) -> None:
    # The app wraps every response in OverheadHeaderMiddleware, management routes included.
    for response in (
        client.get(f"{BASE}/status"),
        client.get(f"{BASE}/placements"),
        client.delete(f"{BASE}/nodes/ghost"),
        client.post(f"{BASE}/nodes", json={}),
    ):
        assert float(response.headers["X-Neurons-Overhead-Ms"]) >= 0
