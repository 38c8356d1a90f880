"""``neurons up`` as a user runs it: a real subprocess with the control plane and one embedded
neuron; the official client talks to the control plane's Ollama pass-through; SIGTERM stops
both processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import ollama
import psutil
import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.slow


def _wait_health(
    url: str, process: subprocess.Popen[bytes], timeout: float = 300
) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "neurons up exited early"
        try:
            response = httpx.get(url + "/api/health", timeout=2)
            if response.status_code == 200 and response.json()["status"] == "ok":
                data: dict[str, object] = response.json()
                return data
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("control plane never became healthy")


def test_up_serves_ollama_api_and_stops_cleanly(tmp_path: Path) -> None:
    port, node_port = free_port(), free_port()
    env = {**os.environ, "OLLAMA_BASE_URL": f"http://127.0.0.1:{free_port()}"}  # nothing there
    log = (tmp_path / "up.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable, "-m", "neurons", "up", "--port", str(port),
            "--node-port", str(node_port), "--home", str(tmp_path / "home"),
        ],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        health = _wait_health(url, process)
        nodes = health["nodes"]
        assert isinstance(nodes, list) and len(nodes) == 1  # the unreachable Ollama did not join
        assert nodes[0]["kind"] == "embedded" and nodes[0]["status"] == "online"
        assert nodes[0]["url"] == f"http://127.0.0.1:{node_port}"

        client = ollama.Client(host=url)
        assert "smollm2:135m" in {m.model for m in client.list().models}
        assert "smollm2:135m" in {m.model for m in client.ps().models}  # preloaded by up
        reply = client.chat(
            "smollm2:135m",
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            options={"temperature": 0, "num_predict": 16},
        )
        assert "Paris" in reply.message.content
        streamed = list(
            client.generate("smollm2:135m", "Hi", options={"num_predict": 4}, stream=True)
        )
        assert streamed[-1].done
        response = httpx.post(url + "/api/show", json={"model": "nope"})
        assert response.status_code == 404 and "not found" in response.json()["error"]
        assert "X-Neurons-Overhead-Ms" in response.headers

        children = psutil.Process(process.pid).children(recursive=True)
        assert children, "the embedded neuron runs as a child process"
        # Only the control plane holds the neuron's token, and not in the neuron's argv.
        refused = httpx.get(f"http://127.0.0.1:{node_port}/api/tags")
        assert refused.status_code == 401 and "error" in refused.json()
        assert not any("--token" in child.cmdline() for child in children)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        log.close()
    assert code == 0, (tmp_path / "up.log").read_text()
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, "the neuron outlived neurons up"
    output = (tmp_path / "up.log").read_text()
    assert f"http://127.0.0.1:{port}" in output and f"http://127.0.0.1:{node_port}" in output
    assert "embedded neuron stopped (exit 0)" in output
