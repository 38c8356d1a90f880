"""After N known requests through a real control plane and a real neuron, the inference
counters, histograms, seed 001's ModelMetrics and the live summary hold exactly N; every
family of both ``/metrics`` endpoints parses with prometheus-client's own parser."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from neurons.api.app import NodeSpec, create_control_plane
from neurons.api.server import ServerThread
from neurons.neuron.process import NeuronProcess
from tests.api.test_metrics import MASTER, Samples, scrape, settings_for, value
from tests.conftest import free_port, wait_for

MODEL = "smollm2:135m"
GENERATE = {"model": MODEL, "prompt": "Say hi", "options": {"num_predict": 4, "seed": 1}}
CHAT = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "Hello"}],
    "options": {"num_predict": 4, "seed": 1},
}


def online(url: str, node: str = "n1", headers: dict[str, str] | None = None) -> bool:
    return value(scrape(url, headers), "neurons:node_state", node=node, state="online") == 1


@pytest.fixture
def plane(neuron: NeuronProcess, tmp_path: Path) -> Iterator[str]:
    app = create_control_plane(
        settings_for(tmp_path / "home"), [NodeSpec("n1", neuron.url, "embedded")]
    )
    with ServerThread(app, port=free_port()) as server:
        wait_for(lambda: online(server.url))
        yield server.url


def ndjson(response: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def test_n_requests_are_counted_exactly(plane: str, neuron: NeuronProcess) -> None:
    prompt_tokens = completion_tokens = 0
    for _ in range(3):  # non-streamed generations
        answer = httpx.post(
            plane + "/api/generate", json={**GENERATE, "stream": False}, timeout=120
        )
        assert answer.status_code == 200, answer.text
        prompt_tokens += answer.json()["prompt_eval_count"]
        completion_tokens += answer.json()["eval_count"]
    for _ in range(2):  # streamed chats: the counts come in the last line
        answer = httpx.post(plane + "/api/chat", json=CHAT, timeout=120)
        assert answer.status_code == 200, answer.text
        final = ndjson(answer)[-1]
        assert final["done"] is True
        prompt_tokens += final["prompt_eval_count"]
        completion_tokens += final["eval_count"]
    embedded = httpx.post(plane + "/api/embed", json={"model": MODEL, "input": "hi"}, timeout=60)
    assert embedded.status_code == 200, embedded.text
    prompt_tokens += embedded.json()["prompt_eval_count"]
    # The client's mistake: counted as a request, not as an inference or an error.
    missing = httpx.post(plane + "/api/generate", json={"model": "no-such:1", "prompt": "x"})
    assert missing.status_code == 404

    samples = scrape(plane)
    requests = "neurons:inference_requests_total"
    assert value(samples, requests, node="n1", model=MODEL, route="/api/generate",
                 status="200") == 3  # fmt: skip
    assert value(samples, requests, node="n1", model=MODEL, route="/api/chat", status="200") == 2
    assert value(samples, requests, node="n1", model=MODEL, route="/api/embed", status="200") == 1
    # A name no node holds is not a label of its own.
    assert value(samples, requests, model="other", status="404") == 1
    assert not any("no-such" in labels["model"] for labels, _ in samples[requests])
    # Time to first token and per output token: one observation per generation.
    assert value(samples, "neurons:time_to_first_token_seconds_count", model=MODEL) == 5
    assert value(samples, "neurons:time_per_output_token_seconds_count", model=MODEL) == 5
    assert value(samples, "neurons:prompt_tokens_total", node="n1", model=MODEL) == prompt_tokens
    assert (
        value(samples, "neurons:generation_tokens_total", node="n1", model=MODEL)
        == completion_tokens
    )
    assert value(samples, "neurons:gateway_retries_total") == 0

    # Seed 001's ModelMetrics, with the digest the node lists as the model's version.
    stats = httpx.get(plane + "/api/ai/metrics/models", timeout=10).json()
    assert stats["success"] is True
    (entry,) = stats["models"]
    assert entry["model"] == MODEL
    assert entry["inference_count"] == 6
    assert entry["error_count"] == 0
    assert entry["completion_tokens"] == completion_tokens
    assert 0 < entry["average_latency"] < 120
    assert entry["tokens_per_s"] > 0
    tags = httpx.get(neuron.url + "/api/tags", timeout=10).json()["models"]
    digest = next(m["digest"] for m in tags if m["name"] == MODEL)
    assert entry["digests"] == [digest]
    (row,) = entry["nodes"]
    assert row["node"] == "n1" and row["digest"] == digest and row["inference_count"] == 6
    only = httpx.get(plane + "/api/ai/metrics/models", params={"model": "x:1"}, timeout=10)
    assert only.json()["models"] == []

    # The live window saw the same requests.
    summary = httpx.get(plane + "/api/ai/metrics/summary", params={"window_s": 60}).json()
    assert summary["since_start"]["requests"] == 6
    assert summary["since_start"]["errors"] == 0
    assert summary["since_start"]["completion_tokens"] == completion_tokens
    assert sum(p["requests_per_s"] * summary["step_s"] for p in summary["series"]) == pytest.approx(
        6
    )
    assert summary["current"]["p50_ms"] is not None
    (node,) = summary["nodes"]
    assert node["name"] == "n1" and node["state"] == "online" and node["slots_busy"] == 0


def test_every_family_parses_on_the_plane_and_the_neuron(plane: str, neuron: NeuronProcess) -> None:
    httpx.post(plane + "/api/generate", json={**GENERATE, "stream": False}, timeout=120)
    for url in (plane, neuron.url):
        text = httpx.get(url + "/metrics", timeout=10).text
        families = list(text_string_to_metric_families(text))
        assert families
        for family in families:
            assert family.name.startswith("neurons:"), family.name
            for sample in family.samples:
                assert sample.value == sample.value  # not NaN


class FailingNode(ThreadingHTTPServer):
    """A node that lists the model and answers every generation with a 500. A remote node
    failing on demand cannot exist here, so this stands in for one."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", free_port()), _FailingHandler)
        self.generations = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _FailingHandler(BaseHTTPRequestHandler):
    server: FailingNode

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/api/version":
            self._json(200, {"version": "0.12.0"})
        elif self.path == "/api/tags":
            entry = {"name": MODEL, "model": MODEL, "digest": "d1", "capabilities": ["completion"]}
            self._json(200, {"models": [entry]})
        elif self.path == "/api/ps":
            self._json(200, {"models": []})
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            self.server.generations += 1
        self._json(500, {"error": "out of memory"})

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_retries_are_counted_by_the_node_that_failed(neuron: NeuronProcess, tmp_path: Path) -> None:
    failing = FailingNode()
    threading.Thread(target=failing.serve_forever, daemon=True).start()
    settings = settings_for(tmp_path / "home", routing_policy="round-robin")
    nodes = [NodeSpec("n1", neuron.url, "embedded"), NodeSpec("bad", failing.url, "ollama")]
    try:
        with ServerThread(create_control_plane(settings, nodes), port=free_port()) as server:
            wait_for(lambda: online(server.url) and online(server.url, "bad"))
            for _ in range(4):
                answer = httpx.post(
                    server.url + "/api/generate", json={**GENERATE, "stream": False}, timeout=120
                )
                assert answer.status_code == 200, answer.text
            samples: Samples = scrape(server.url)
            tried = failing.generations
            assert tried >= 1  # round robin sent at least one there first
            retries = "neurons:gateway_retries_total"
            assert value(samples, retries, node="bad", route="/api/generate") == tried
            answered = "neurons:inference_requests_total"
            assert value(samples, answered, node="n1", status="200") == 4
            stats = httpx.get(server.url + "/api/ai/metrics/models").json()["models"][0]
            by_node = {row["node"]: row for row in stats["nodes"]}
            assert by_node["bad"]["error_count"] == tried
            assert by_node["n1"]["error_count"] == 0
            assert stats["inference_count"] == 4 + tried
    finally:
        failing.shutdown()


def test_per_key_requests_tokens_and_429s(neuron: NeuronProcess, tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "home", master_key=MASTER)
    app = create_control_plane(settings, [NodeSpec("n1", neuron.url, "embedded")])
    admin = {"Authorization": f"Bearer {MASTER}"}
    with ServerThread(app, port=free_port()) as server:
        wait_for(lambda: online(server.url, headers=admin))
        made = httpx.post(
            server.url + "/api/ai/keys",
            json={"name": "app-1", "scope": "inference", "rpm": 2},
            headers=admin,
            timeout=10,
        )
        assert made.status_code == 201, made.text
        key = {"Authorization": f"Bearer {made.json()['secret']}"}
        statuses, tokens = [], 0
        for _ in range(3):
            answer = httpx.post(
                server.url + "/api/generate",
                json={**GENERATE, "stream": False},
                headers=key,
                timeout=120,
            )
            statuses.append(answer.status_code)
            if answer.status_code == 200:
                tokens += answer.json()["prompt_eval_count"] + answer.json()["eval_count"]
        assert statuses == [200, 200, 429]
        samples = scrape(server.url, admin)
        assert value(samples, "neurons:key_requests_total", key="app-1", status="200") == 2
        assert value(samples, "neurons:key_tokens_total", key="app-1") == tokens
        assert value(samples, "neurons:key_rate_limited_total", key="app-1") == 1
        # The master key is not a key: nothing is labelled with it.
        assert all(labels["key"] == "app-1" for labels, _ in samples["neurons:key_requests_total"])


def test_metrics_off_records_nothing_and_answers_404(neuron: NeuronProcess, tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "home", metrics=False)
    app = create_control_plane(settings, [NodeSpec("n1", neuron.url, "embedded")])
    with ServerThread(app, port=free_port()) as server:
        for path in ("/metrics", "/api/ai/metrics/summary", "/api/ai/metrics/models"):
            answer = httpx.get(server.url + path, timeout=10)
            assert answer.status_code == 404, path
            assert answer.json()["success"] is False
