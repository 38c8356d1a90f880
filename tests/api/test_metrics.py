"""The control plane's ``/metrics`` over a real neuron: requests by route template and status,
node and breaker state, jobs by kind and status, and the read scope when keys are on."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from neurons.api.app import NodeSpec, create_control_plane
from neurons.api.server import ServerThread
from neurons.config import Settings
from neurons.neuron.process import NeuronProcess
from tests.conftest import free_port, wait_for

Samples = dict[str, list[tuple[dict[str, str], float]]]
MASTER = "master-key-for-the-metrics-tests-0123456789"


def scrape(url: str, headers: dict[str, str] | None = None) -> Samples:
    response = httpx.get(url + "/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(
        v for found, v in samples.get(name, []) if all(found.get(k) == w for k, w in labels.items())
    )


def settings_for(home: Path, **extra: object) -> Settings:
    return Settings(
        home=home, ollama_base_url="", import_default_models=False, health_interval_s=0.5, **extra
    )


@pytest.fixture(scope="module")
def plane(neuron: NeuronProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = settings_for(tmp_path_factory.mktemp("metrics") / "home")
    app = create_control_plane(settings, [NodeSpec("n1", neuron.url, "embedded")])
    with ServerThread(app, port=free_port()) as server:
        yield server.url


def test_requests_are_counted_by_route_template_and_status(plane: str) -> None:
    assert httpx.get(plane + "/api/ai/network/status", timeout=10).status_code == 200
    assert httpx.get(plane + "/api/ai/learning/runs/no-such-run", timeout=10).status_code == 404
    assert httpx.get(plane + "/no/such/path", timeout=10).status_code == 404
    samples = scrape(plane)
    total = "neurons:requests_total"
    assert value(samples, total, route="/api/ai/network/status", method="GET", status="200") >= 1
    # The template, never the raw path: ids in labels would grow without bound.
    assert value(samples, total, route="/api/ai/learning/runs/{run_id:path}", status="404") == 1
    assert value(samples, total, route="other", status="404") == 1
    assert not any("no-such-run" in labels["route"] for labels, _ in samples[total])
    latency = "neurons:e2e_request_latency_seconds_count"
    assert value(samples, latency, route="/api/ai/network/status") >= 1
    assert "/metrics" not in httpx.get(plane + "/openapi.json", timeout=10).json()["paths"]


def test_node_state_breaker_and_slots(plane: str, neuron: NeuronProcess) -> None:
    wait_for(lambda: value(scrape(plane), "neurons:node_state", node="n1", state="online") == 1)
    samples = scrape(plane)
    assert value(samples, "neurons:node_state", node="n1") == 1  # one state at a time
    assert value(samples, "neurons:breaker_state", node="n1", state="closed") == 1
    status = httpx.get(neuron.url + "/api/neuron/status", timeout=10).json()
    assert value(samples, "neurons:node_slots", node="n1") == status["slots"]
    assert value(samples, "neurons:node_in_flight", node="n1") == 0


def test_jobs_are_counted_by_kind_and_status(plane: str) -> None:
    before = value(scrape(plane), "neurons:jobs", kind="learning")
    created = httpx.post(
        plane + "/api/ai/learning/runs",
        json={"mode": "fedavg", "rounds": 1, "local_steps": 2, "nodes": 2},
        timeout=30,
    )
    assert created.status_code in (200, 201, 202), created.text
    samples = scrape(plane)
    assert value(samples, "neurons:jobs", kind="learning") == before + 1
    # Every kind is shown at every status, at zero when no job has it.
    assert value(samples, "neurons:jobs", kind="fine_tuning", status="failed") == 0
    assert any(labels["kind"] == "optimization" for labels, _ in samples["neurons:jobs"])


def test_metrics_need_a_read_key_when_keys_are_on(neuron: NeuronProcess, tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "home", master_key=MASTER)
    app = create_control_plane(settings, [NodeSpec("n1", neuron.url, "embedded")])
    with ServerThread(app, port=free_port()) as server:
        assert httpx.get(server.url + "/metrics", timeout=10).status_code == 401
        made = httpx.post(
            server.url + "/api/ai/keys",
            json={"name": "reader", "scope": "read"},
            headers={"Authorization": f"Bearer {MASTER}"},
            timeout=10,
        )
        assert made.status_code == 201, made.text
        reader = {"Authorization": f"Bearer {made.json()['secret']}"}
        samples = scrape(server.url, reader)
        # The refusal was counted under the route it was meant for.
        assert value(samples, "neurons:requests_total", route="/metrics", status="401") == 1


def test_latency_runs_until_a_streamed_answer_ends(plane: str, neuron: NeuronProcess) -> None:
    wait_for(lambda: value(scrape(plane), "neurons:node_state", node="n1", state="online") == 1)
    body = {"model": "smollm2:135m", "prompt": "Count to ten", "options": {"num_predict": 64}}
    # Loaded beforehand (straight on the node, so not counted here): the first bytes then
    # come at once, and a histogram that stopped at them would miss the stream's tail.
    httpx.post(neuron.url + "/api/generate", json={**body, "stream": False}, timeout=120)
    with httpx.stream("POST", plane + "/api/generate", json=body, timeout=120) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        next(lines)
        first_line_at = time.perf_counter()
        assert sum(1 for _ in lines) > 0
        after_first_line = time.perf_counter() - first_line_at
    samples = scrape(plane)
    route = "/api/generate"
    assert value(samples, "neurons:requests_total", route=route, status="200") == 1
    # The time after the first bytes is in the histogram: it measured to the stream's end.
    assert (
        value(samples, "neurons:e2e_request_latency_seconds_sum", route=route) >= after_first_line
    )
