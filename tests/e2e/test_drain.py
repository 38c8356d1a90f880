"""Graceful shutdown of ``neurons up`` as a user meets it: a streamed generation is running
when SIGTERM (or a terminal's Ctrl-C, sent to the whole process group) arrives. The port
closes at once (new connections are refused), the stream goes on to ``done: true``, the
embedded neuron (in a session of its own) did not get the signal and still serves, and then
the components stop and the process exits 0 well within the drain deadline."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import free_port
from tests.e2e.test_up import _wait_health

pytestmark = pytest.mark.slow

# Generous: 200 tokens take a few seconds here, but this machine may be shared and loaded.
DEADLINE_S = 120
PROMPT = "Write a long story about a lighthouse keeper and the sea, in many paragraphs."


class _Reader(threading.Thread):
    """Reads one streamed /api/generate, noting when each line arrived."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.lines: list[tuple[float, dict[str, object]]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        body = {
            "model": "smollm2:135m",
            "prompt": PROMPT,
            "options": {"num_predict": 200, "temperature": 0},
        }
        try:
            with httpx.stream("POST", self.url + "/api/generate", json=body, timeout=90) as r:
                assert r.status_code == 200, r.read()
                for line in r.iter_lines():
                    if line:
                        self.lines.append((time.monotonic(), json.loads(line)))
        except BaseException as exc:  # reported by the test
            self.error = exc


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.parametrize("how", ["sigterm", "ctrl-c"])
def test_a_streamed_generation_finishes_when_neurons_up_is_stopped(
    tmp_path: Path, how: str
) -> None:
    port, node_port = free_port(), free_port()
    env = {
        **os.environ,
        "OLLAMA_BASE_URL": "",
        "NEURONS_DRAIN_DEADLINE_S": str(DEADLINE_S),
    }
    log = (tmp_path / "up.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable, "-m", "neurons", "up", "--port", str(port),
            "--node-port", str(node_port), "--home", str(tmp_path / "home"),
        ],
        stdout=log, stderr=subprocess.STDOUT, env=env,
        start_new_session=True,  # its own process group, as a shell gives a foreground job
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_health(url, process)
        neuron = psutil.Process(process.pid).children()[0]
        reader = _Reader(url)
        reader.start()
        deadline = time.monotonic() + 60
        while len(reader.lines) < 5 and time.monotonic() < deadline and reader.is_alive():
            time.sleep(0.01)
        assert len(reader.lines) >= 5 and not reader.lines[-1][1]["done"], reader.error

        signalled = time.monotonic()
        if how == "sigterm":
            process.send_signal(signal.SIGTERM)
        else:
            os.killpg(process.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
        while not _refused(port):
            assert time.monotonic() - signalled < 5, "the port stayed open"
            time.sleep(0.05)
        refused_at = time.monotonic()
        assert process.poll() is None, "still draining when the port closed"
        # The neuron did not get the signal: it still takes new connections (and refuses
        # them without its token), so it can serve whatever the drain still needs.
        assert httpx.get(f"http://127.0.0.1:{node_port}/api/version").status_code == 401

        reader.join(DEADLINE_S)
        assert not reader.is_alive() and reader.error is None, reader.error
        last_at, last = reader.lines[-1]
        assert last["done"] is True and last["eval_count"] == len(reader.lines) - 1
        assert last_at > refused_at, "the stream went on after the port closed"
        assert sum(1 for at, _ in reader.lines if at > refused_at) >= 3
        code = process.wait(timeout=DEADLINE_S)
        exited_in = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
    output = (tmp_path / "up.log").read_text()
    assert code == 0, output
    assert exited_in < DEADLINE_S, output
    assert "stopping: no new connections" in output
    assert "embedded neuron stopped (exit 0)" in output, output
    assert not neuron.is_running()
