"""``neurons top``: the frame drawn from a summary, then the command against a real control
plane routing to the session's real neuron (``--once`` as a subprocess, the live view on a
pseudo-terminal stopped with Ctrl-C)."""

from __future__ import annotations

import contextlib
import doctest
import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console, RenderableType

from neurons.api.app import NodeSpec, create_control_plane
from neurons.api.server import ServerThread
from neurons.cli import metrics_view
from neurons.cli.metrics_view import slot_bar, sparkline
from neurons.cli.top import error_view, header, jobs_panel, nodes_table, render, traffic_panel
from neurons.config import Settings
from neurons.neuron.process import NeuronProcess
from tests.conftest import free_port, wait_for

SMOL = "smollm2:135m"
URL = "http://127.0.0.1:8000"


def text(renderable: RenderableType) -> str:
    console = Console(record=True, width=120)
    console.print(renderable)
    return console.export_text()


def summary(**overrides: Any) -> dict[str, Any]:
    """A summary as a busy plane with one node up and one down answers it."""
    data: dict[str, Any] = {
        "success": True,
        "now": 1_750_000_000.0,
        "window_s": 60,
        "step_s": 2,
        "current": {
            "requests_per_s": 1.2,
            "error_rate": 0.05,
            "tokens_per_s": 45.3,
            "p50_ms": 120.4,
            "p95_ms": 1340.0,
        },
        "since_start": {
            "requests": 1234,
            "errors": 3,
            "prompt_tokens": 3456,
            "completion_tokens": 12040,
        },
        "series": [
            {
                "t": i,
                "requests_per_s": i * 0.1,
                "error_rate": 0.0,
                "tokens_per_s": 10.0,
                "p50_ms": None,
                "p95_ms": None,
            }
            for i in range(30)
        ],  # fmt: skip
        "nodes": [
            {
                "name": "n1",
                "state": "online",
                "breaker": "closed",
                "slots": 4,
                "slots_busy": 3,
                "in_flight": 3,
                "queued": 2,
                "requests": 1200,
                "failures": 0,
                "latency_ms": 3.2,
                "loaded": [SMOL, "all-minilm:l6-v2"],
            },
            {
                "name": "gpu-box",
                "state": "offline",
                "breaker": "open",
                "slots": 2,
                "slots_busy": 0,
                "in_flight": 0,
                "queued": 0,
                "requests": 34,
                "failures": 3,
                "latency_ms": None,
                "loaded": [],
            },
        ],  # fmt: skip
        "jobs": [
            {
                "kind": "learning",
                "id": "0123456789abcdef0123",
                "name": "fedavg-run",
                "status": "running",
            },
            {"kind": "fine_tuning", "id": "ft-2", "name": "lora-smol", "status": "pending"},
        ],  # fmt: skip
    }
    data.update(overrides)
    return data


# -- the frame -------------------------------------------------------------------------------


def test_doctests() -> None:
    result = doctest.testmod(metrics_view)
    assert result.attempted >= 4 and result.failed == 0


def test_sparkline_scales_to_the_maximum_and_keeps_the_last_points() -> None:
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert sparkline([0.0] * 5) == "▁▁▁▁▁"
    assert sparkline([]) == ""
    assert sparkline([None, 5]) == " █"
    # Any activity shows above the idle baseline, however small beside the peak.
    assert sparkline([0, 0.001, 100]) == "▁▂█"
    assert sparkline(list(range(100)), width=10) == sparkline(list(range(90, 100)))
    assert len(sparkline(list(range(100)), width=10)) == 10


def test_slot_bar() -> None:
    assert slot_bar(3, 4).plain == "████████░░ 3/4"
    assert slot_bar(0, 2).plain == "░░░░░░░░░░ 0/2"
    assert slot_bar(9, 2).plain == "██████████ 2/2"  # never past full
    assert slot_bar(0, 0).plain == "-"


def test_the_whole_frame() -> None:
    frame = text(render(summary(), URL, interval=2))
    assert "neurons top" in frame and URL in frame
    assert "1/2 node(s) up" in frame
    assert "requests/s" in frame and "1.20" in frame
    assert "tokens/s" in frame and "45.3" in frame
    assert "5.0%" in frame
    assert "p50 120.4 ms" in frame and "p95 1.34 s" in frame
    assert "since start: 1,234 requests, 3 errors, 3,456 prompt + 12,040 completion" in frame
    assert sparkline([p["requests_per_s"] for p in summary()["series"]], 40) in frame
    assert "▁" * 30 not in frame  # tokens/s was flat but busy: the top block, not idle
    assert "█" * 30 in frame
    assert "sparklines: last 60 s by 2 s" in frame
    step_1s = summary(step_s=1, series=summary()["series"] * 2)  # 60 points, 40 drawn
    assert "sparklines: last 40 s by 1 s" in text(render(step_1s, URL))
    assert "refresh every 2 s; Ctrl-C quits" in frame
    assert "fedavg-run" in frame and "lora-smol" in frame and "jobs (2)" in frame


def test_nodes_table_rows() -> None:
    rows = text(nodes_table(summary()["nodes"])).splitlines()
    n1 = next(line for line in rows if " n1 " in line)
    assert "online" in n1 and "closed" in n1 and "████████░░ 3/4" in n1
    assert "1200" in n1.replace(",", "") and "3.2 ms" in n1
    assert SMOL in n1  # the second loaded model may wrap onto the next line
    assert "all-minilm:l6-v2" in "".join(rows)
    assert re.search(r"│\s+3\s+│\s+2\s+│", n1)  # in flight, queued
    down = next(line for line in rows if "gpu-box" in line)
    assert "offline" in down and "open" in down and "0/2" in down
    assert "2 node(s)" in text(nodes_table(summary()["nodes"]))


def test_a_quiet_plane_without_nodes_or_jobs() -> None:
    quiet = summary(
        current={
            "requests_per_s": 0.0,
            "error_rate": 0.0,
            "tokens_per_s": 0.0,
            "p50_ms": None,
            "p95_ms": None,
        },
        since_start={"requests": 0, "errors": 0, "prompt_tokens": 0, "completion_tokens": 0},
        series=[],
        nodes=[],
        jobs=[],
    )
    frame = text(render(quiet, URL))
    assert "p50 -" in frame and "p95 -" in frame
    assert "0.0%" in frame
    assert "no nodes registered" in frame
    assert "no pending or running jobs" in frame
    assert "0/0 node(s) up" in frame
    assert "Ctrl-C" not in frame  # --once draws no live footer


def test_parts_tolerate_missing_fields() -> None:
    # An older or newer plane may leave fields out: the frame still draws.
    assert "requests/s" in text(traffic_panel({}))
    assert "?" in text(nodes_table([{}]))
    assert "-" in text(jobs_panel([{}]))
    assert "0/0 node(s) up" in text(header({}, URL))


def test_error_view() -> None:
    shown = text(error_view(URL, "could not connect to a neurons server", 0.5))
    assert "could not connect to a neurons server" in shown
    assert "retrying every 0.5 s; Ctrl-C quits" in shown
    assert URL in shown


# -- the command against a real control plane -------------------------------------------------


def run_cli(host: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NEURONS_HOST": host, "NEURONS_HOME": str(home), "COLUMNS": "160"}
    env.pop("NEURONS_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "neurons", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def generate(url: str, count: int) -> None:
    for i in range(count):
        answer = httpx.post(
            url + "/api/generate",
            json={"model": SMOL, "prompt": f"Say {i}", "stream": False,
                  "options": {"num_predict": 4}},
            timeout=120,
        )  # fmt: skip
        assert answer.status_code == 200, answer.text
        assert answer.json()["done"]


class Plane:
    def __init__(self, url: str, home: Path, sent: int) -> None:
        self.url, self.home, self.sent = url, home, sent


@contextlib.contextmanager
def routed_plane(neuron: NeuronProcess, home: Path, sent: int) -> Iterator[Plane]:
    """A control plane over ``neuron`` (as node n1) that has routed ``sent`` generate
    requests once the node was online."""
    settings = Settings(
        home=home, ollama_base_url="", import_default_models=False, health_interval_s=0.5
    )
    app = create_control_plane(settings, [NodeSpec("n1", neuron.url, "embedded")])
    with ServerThread(app, port=free_port()) as server:

        def online() -> bool:
            data = httpx.get(server.url + "/api/ai/metrics/summary", timeout=10).json()
            return any(n["name"] == "n1" and n["state"] == "online" for n in data["nodes"])

        wait_for(online)
        generate(server.url, sent)
        yield Plane(server.url, home, sent)


@pytest.fixture(scope="module")
def plane(neuron: NeuronProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    with routed_plane(neuron, tmp_path_factory.mktemp("top") / "home", 3) as routed:
        yield routed


def test_top_once_shows_the_node_and_the_traffic(plane: Plane) -> None:
    result = run_cli(plane.url, plane.home, "top", "--once")
    assert result.returncode == 0, result.stderr
    frame = result.stdout
    assert "1/1 node(s) up" in frame
    n1 = next(line for line in frame.splitlines() if " n1 " in line)
    assert "online" in n1 and "closed" in n1 and SMOL in n1
    totals = re.search(r"since start: (\d+) requests, (\d+) errors, ([\d,]+) prompt", frame)
    assert totals is not None, frame
    assert int(totals[1]) >= plane.sent and int(totals[2]) == 0
    assert int(totals[3].replace(",", "")) > 0
    assert "no pending or running jobs" in frame
    assert "\x1b[" not in frame  # not a terminal: plain text for scripts


def test_top_once_against_nothing_exits_as_the_other_commands_do(tmp_path: Path) -> None:
    result = run_cli(f"http://127.0.0.1:{free_port()}", tmp_path, "top", "--once")
    assert result.returncode == 1
    assert result.stderr.startswith("Error: could not connect to a neurons server at ")
    assert result.stdout == ""


class Terminal:
    """``neurons top`` on a pseudo-terminal: its output read back, Ctrl-C sent as a signal."""

    def __init__(self, host: str, home: Path, *args: str) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 140, 0, 0))
        env = {**os.environ, "NEURONS_HOST": host, "NEURONS_HOME": str(home), "TERM": "xterm"}
        env.pop("NEURONS_API_KEY", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "neurons", "top", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        self.fd = master
        self.output = b""

    def expect(self, needle: str, count: int = 1, timeout: float = 30.0) -> None:
        """Wait until ``needle`` has been drawn ``count`` times."""
        deadline = time.monotonic() + timeout
        while self.output.count(needle.encode()) < count:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{needle!r} not seen: {self.output[-2000:]!r}"
            ready, _, _ = select.select([self.fd], [], [], min(remaining, 0.5))
            if ready:
                try:
                    self.output += os.read(self.fd, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(15)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        os.close(self.fd)


def test_the_live_view_repaints_and_ctrl_c_exits_0(plane: Plane) -> None:
    terminal = Terminal(plane.url, plane.home, "--interval", "0.3")
    try:
        terminal.expect("1/1 node(s) up")
        terminal.expect("refresh every 0.3 s")
        terminal.expect(SMOL)
        terminal.expect("1/1 node(s) up", count=3)  # repainted, not drawn once
        assert terminal.interrupt() == 0
    finally:
        terminal.close()


def test_the_live_view_waits_for_an_unreachable_plane(tmp_path: Path) -> None:
    terminal = Terminal(f"http://127.0.0.1:{free_port()}", tmp_path, "--interval", "0.3")
    try:
        terminal.expect("could not connect to a neurons server")
        terminal.expect("retrying every 0.3 s")
        assert terminal.interrupt() == 0
    finally:
        terminal.close()


def test_summary_is_json_the_frame_can_draw(plane: Plane) -> None:
    # The frame is drawn from the wire's dict as is: whatever the plane answers now draws.
    data = httpx.get(plane.url + "/api/ai/metrics/summary", timeout=10).json()
    assert json.loads(json.dumps(data)) == data
    assert "n1" in text(render(data, plane.url))
