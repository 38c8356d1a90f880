"""``neurons up --mock --config neurons.yaml`` as a user runs it: a real process with a
simulated neuron (no model to load, so it is up in seconds), served to the official ``ollama``
client through the control plane; the mock mode said loudly at start and when ready, shown in
``/api/ai/system/components``, kept in state of its own; SIGTERM stops it with exit 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import ollama

from neurons.system.up import MOCK_BANNER
from tests.conftest import free_port
from tests.e2e.test_up import _wait_health


def test_up_mock_serves_the_official_client(tmp_path: Path) -> None:
    port, node_port = free_port(), free_port()
    config = tmp_path / "neurons.yaml"
    config.write_text(
        f"system:\n  port: {port}\n  node_port: {node_port}\n  home: home\n"
        "  thread_count: 4\n"
        "persistence:\n  auto_save_interval: 3600\nmodel:\n  default: demo:7b\n"
    )
    # A real Ollama address that answers nothing: mock mode must not even try to join it.
    env = {**os.environ, "OLLAMA_BASE_URL": f"http://127.0.0.1:{free_port()}"}
    log = (tmp_path / "up.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "neurons", "up", "--mock", "--config", str(config)],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        health = _wait_health(url, process, timeout=120)
        assert [n["name"] for n in health["nodes"]] == ["neuron-1"]  # type: ignore[index]

        client = ollama.Client(host=url)
        names = {m.model for m in client.list().models}
        assert {"mock:latest", "mock-embed:latest", "demo:7b"} <= names
        first = client.generate("demo:7b", "Why is the sky blue?", options={"seed": 7})
        again = client.generate("demo:7b", "Why is the sky blue?", options={"seed": 7})
        assert first.done and first.response and first.response == again.response
        streamed = list(client.generate("mock:latest", "Hi", stream=True))
        assert streamed[-1].done and "".join(c.response for c in streamed[:-1])
        chat = client.chat("demo:7b", messages=[{"role": "user", "content": "Hello"}])
        assert chat.message.role == "assistant" and chat.message.content
        assert len(client.embed("mock-embed:latest", "a b c").embeddings[0]) > 0

        system = httpx.get(url + "/api/ai/system/components").json()
        assert system["success"] is True and system["mock"] is True and system["ok"] is True
        neuron = next(c for c in system["components"] if c["name"] == "neuron")
        assert neuron["health"]["mock"] is True and neuron["metrics"]["mock"] is True
        assert neuron["metrics"]["model"] == "demo:7b"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
            log.close()
    output = (tmp_path / "up.log").read_text()
    assert code == 0, output
    assert f"config: {config} (5 settings)" in output
    assert "config: ignored system.thread_count" in output
    assert output.count(MOCK_BANNER) == 3, output  # at start, and twice around the ready box
    assert "loading" not in output  # nothing to load
    assert "model demo:7b (simulated)" in output
    assert (tmp_path / "home" / "mock" / "neurons.db").exists()  # state of its own
    assert not (tmp_path / "home" / "neurons.db").exists()
    assert "embedded neuron stopped (exit 0)" in output
