"""Job transitions on the event stream, end to end: a real control plane on a loopback port
trains learning runs in its background while two SSE clients follow ``/api/ai/events``; both
get every move of every run, in order, with the same ids. And a control plane stopping with
an SSE client still connected ends the stream instead of waiting on it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from neurons.api.app import create_control_plane
from neurons.api.server import ServerThread
from neurons.config import Settings
from tests.api.envelope import ok
from tests.conftest import free_port
from tests.events.sse import SSEReader, ids

EVENTS = "/api/ai/events"
RUNS = "/api/ai/learning/runs"
TINY = {"mode": "fedavg", "rounds": 2, "local_steps": 5, "nodes": 2}
LONG = {"mode": "fedavg", "rounds": 200, "local_steps": 20, "nodes": 2}


def _settings(home: Path) -> Settings:
    return Settings(home=home, ollama_base_url="", snapshot_interval_s=0)


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[ServerThread]:
    with ServerThread(create_control_plane(_settings(tmp_path), []), port=free_port()) as s:
        yield s


def _moves(events: list[dict[str, Any]], run_id: str) -> list[tuple[str, str]]:
    return [
        (e["payload"]["previous"], e["payload"]["status"])
        for e in events
        if e["subject"] == f"learning/{run_id}"
    ]


def test_two_sse_clients_get_every_job_transition_in_order(plane: ServerThread) -> None:
    http = httpx.Client(base_url=plane.url, timeout=30)
    mark = ok(http.get(EVENTS))["last_id"]
    finished: set[str] = set()

    def both_ended(events: list[dict[str, Any]]) -> bool:
        return {
            e["subject"] for e in events if e["payload"]["status"] in ("completed", "cancelled")
        } >= finished and len(finished) == 2

    url = f"{plane.url}{EVENTS}?after={mark}&kind=job.transition"
    readers = [SSEReader(url, until=both_ended) for _ in range(2)]
    for reader in readers:
        reader.start()
        assert reader.connected.wait(10) and reader.status == 200

    done = ok(http.post(RUNS, json=TINY))["run_id"]
    cancelled = ok(http.post(RUNS, json=LONG))["run_id"]
    finished.update({f"learning/{done}", f"learning/{cancelled}"})
    ok(http.post(f"{RUNS}/{cancelled}/cancel"))
    deadline = time.monotonic() + 120
    while ok(http.get(f"{RUNS}/{done}"))["run"]["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)

    first, second = (reader.finish(120) for reader in readers)
    assert ids(first) == ids(second) and ids(first) == sorted(ids(first))
    for events in (first, second):
        assert {e["kind"] for e in events} == {"job.transition"}
        assert _moves(events, done) == [("pending", "running"), ("running", "completed")]
        assert _moves(events, cancelled) == [("pending", "running"), ("running", "cancelled")]
        assert all(e["wire"]["event"] == "job.transition" for e in events)


def test_stopping_ends_a_connected_stream(tmp_path: Path) -> None:
    server = ServerThread(create_control_plane(_settings(tmp_path), []), port=free_port())
    server.start()
    reader = SSEReader(f"{server.url}{EVENTS}", until=lambda events: False)
    reader.start()
    assert reader.connected.wait(10) and reader.status == 200
    began = time.monotonic()
    server.stop(timeout=20)
    assert not server._thread.is_alive(), "the open stream held the shutdown"
    assert time.monotonic() - began < 10
    reader.finish(10)  # the stream ended, not the reader
