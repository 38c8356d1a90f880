"""The neuron's ``/metrics`` over a real neuron: the counters of ``/api/neuron/status`` in
Prometheus text, rising after a real generation."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from neurons.api.server import ServerThread
from neurons.config import Settings
from neurons.neuron.app import create_neuron_app
from neurons.neuron.process import NeuronProcess
from tests.conftest import free_port

SMOL = "smollm2:135m"


def _scrape(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample name -> labels -> value, from a text the official parser accepts."""
    response = httpx.get(url + "/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            key = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[key] = sample.value
    return samples


def test_metrics_rise_after_a_generation(neuron: NeuronProcess) -> None:
    before = _scrape(neuron.url)
    answer = httpx.post(
        neuron.url + "/api/generate",
        json={"model": SMOL, "prompt": "Say hi", "stream": False, "options": {"num_predict": 4}},
        timeout=120,
    )
    assert answer.status_code == 200, answer.text
    after = _scrape(neuron.url)
    model = (("model", SMOL),)

    predicted = "neurons:tokens_predicted_total"
    assert after[predicted][()] >= before[predicted][()] + answer.json()["eval_count"]
    assert after["neurons:prompt_tokens_total"][model] > before.get(
        "neurons:prompt_tokens_total", {}
    ).get(model, 0)
    assert after["neurons:decode_steps_total"][model] > 0
    assert model in after["neurons:prompt_tokens_reused_total"]
    # Nothing runs between requests; the slots are the neuron's num_parallel.
    assert after["neurons:requests_processing"][()] == 0
    assert after["neurons:requests_deferred"][()] == 0
    assert after["neurons:slots_busy"][()] == 0
    status = httpx.get(neuron.url + "/api/neuron/status", timeout=10).json()
    assert after["neurons:slots_total"][()] == status["slots"]
    assert after["neurons:models_loaded"][()] == len(status["loaded"])


def test_metrics_sit_behind_the_node_token(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", import_default_models=False, node_token="t0k3n")
    with ServerThread(create_neuron_app(settings), port=free_port()) as server:
        assert httpx.get(server.url + "/metrics", timeout=10).status_code == 401
        shown = httpx.get(
            server.url + "/metrics", headers={"Authorization": "Bearer t0k3n"}, timeout=10
        )
        assert shown.status_code == 200
        assert "neurons:slots_total" in shown.text
