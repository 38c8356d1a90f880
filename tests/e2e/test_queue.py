"""Fair queueing, 503 on a full queue, and generation that stops when the client leaves."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from neurons.neuron.process import NeuronProcess
from tests.conftest import neuron_status, start_neuron, wait_for

LONG = {
    "model": "smollm2:135m",
    "prompt": "Write a very long story.",
    "options": {"num_predict": 400},
}


@pytest.fixture(scope="module")
def small_queue_neuron(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NeuronProcess]:
    home = tmp_path_factory.mktemp("queue") / "home"
    process = start_neuron(home, "--max-queue", "1", "--parallel", "1")
    try:
        yield process
    finally:
        process.stop()


def test_full_queue_answers_503_with_ollamas_message(small_queue_neuron: NeuronProcess) -> None:
    url = small_queue_neuron.url + "/api/generate"
    results: dict[str, int] = {}

    def run(label: str) -> None:
        results[label] = httpx.post(url, json={**LONG, "stream": False}, timeout=120).status_code

    first = threading.Thread(target=run, args=("running",))
    first.start()
    wait_for(lambda: neuron_status(small_queue_neuron)["running"] == 1)
    second = threading.Thread(target=run, args=("queued",))
    second.start()
    wait_for(lambda: neuron_status(small_queue_neuron)["waiting"] == 1)
    busy = httpx.post(url, json={**LONG, "stream": False}, timeout=30)
    assert busy.status_code == 503
    assert busy.json() == {
        "error": "server busy, please try again.  maximum pending requests exceeded"
    }
    first.join()
    second.join()
    assert results == {"running": 200, "queued": 200}


def test_client_disconnect_stops_generation(small_queue_neuron: NeuronProcess) -> None:
    url = small_queue_neuron.url + "/api/generate"
    with httpx.Client(timeout=60) as client:
        with client.stream(
            "POST", url, json={**LONG, "options": {"num_predict": 2000}}
        ) as response:
            lines = response.iter_lines()
            for _ in range(3):
                next(lines)
        # Leaving the block closed the connection mid-stream.
    wait_for(lambda: neuron_status(small_queue_neuron)["running"] == 0, timeout=20)
    # The count settles (a step already in flight on a loaded machine may still add its
    # token after the slot was freed) and then stays put, far short of num_predict.
    counts = [neuron_status(small_queue_neuron)["tokens_generated"]]

    def settled() -> bool:
        time.sleep(0.5)
        counts.append(neuron_status(small_queue_neuron)["tokens_generated"])
        return counts[-1] == counts[-2]

    wait_for(settled, timeout=20)
    generated = counts[-1]
    assert isinstance(generated, int) and generated < 2000


def test_queued_requests_are_served_in_arrival_order(
    small_queue_neuron: NeuronProcess, tmp_path: Path
) -> None:
    del tmp_path
    url = small_queue_neuron.url + "/api/generate"
    finished: list[str] = []
    lock = threading.Lock()

    def run(label: str, n: int) -> None:
        httpx.post(url, json={**LONG, "stream": False, "options": {"num_predict": n}}, timeout=120)
        with lock:
            finished.append(label)

    first = threading.Thread(target=run, args=("first", 200))
    first.start()
    wait_for(lambda: neuron_status(small_queue_neuron)["running"] == 1)
    second = threading.Thread(target=run, args=("second", 2))
    second.start()
    first.join()
    second.join()
    # The short request waited for the long one: no overtaking.
    assert finished == ["first", "second"]
