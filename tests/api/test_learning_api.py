"""The learning API under ``/api/ai/learning`` in-process: runs created from JSON, trained in
the control plane's background on real digits, read back with their rounds and events,
cancelled, resumed from a checkpoint, and carried over a restart of the control plane.
Runs stay tiny (a few rounds of a few steps) so each takes seconds."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from neurons.api.app import create_control_plane
from neurons.config import Settings
from tests.api.envelope import error, ok

BASE = "/api/ai/learning"
TINY = {"mode": "fedavg", "rounds": 3, "local_steps": 5, "nodes": 3}


def settings_for(home: Path) -> Settings:
    return Settings(home=home, health_interval_s=0.5, ollama_base_url="")


@contextmanager
def control_plane(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_control_plane(settings, [])) as test_client:
        yield test_client


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with control_plane(settings_for(tmp_path)) as test_client:
        yield test_client


def run_state(client: TestClient, run_id: str) -> dict[str, Any]:
    state: dict[str, Any] = ok(client.get(f"{BASE}/runs/{run_id}"))["run"]
    return state


def wait_for(
    client: TestClient, run_id: str, done: Callable[[dict[str, Any]], bool], timeout: float = 120
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = run_state(client, run_id)
        if done(state):
            return state
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not get there: {run_state(client, run_id)}")


def test_a_federated_run_trains_in_the_background_and_keeps_its_rounds_and_events(
    client: TestClient,
) -> None:
    created = ok(client.post(f"{BASE}/runs", json=TINY))
    run_id = created["run_id"]
    assert created["run"]["status"] == "running"
    state = wait_for(client, run_id, lambda s: s["status"] == "completed")
    assert state["current_round"] == state["total_rounds"] == 3
    assert [h["round"] for h in state["history"]] == [1, 2, 3]
    assert state["result"]["test_accuracy"] > 0.5  # 10 classes: chance is 0.1
    events = ok(client.get(f"{BASE}/runs/{run_id}/events"))["events"]
    kinds = [e["kind"] for e in events]
    assert kinds.count("round") == 3
    updates = [e for e in events if e["kind"] == "update"]
    assert sorted({e["node_id"] for e in updates}) == ["node-0", "node-1", "node-2"]
    assert all(e["payload"]["num_examples"] > 0 for e in updates)
    ids = [e["event_id"] for e in events]
    assert ids == sorted(ids)
    later = ok(client.get(f"{BASE}/runs/{run_id}/events", params={"after": ids[-2]}))["events"]
    assert [e["event_id"] for e in later] == ids[-1:]
    listed = ok(client.get(f"{BASE}/runs", params={"status": "completed"}))
    assert [r["run_id"] for r in listed["runs"]] == [run_id]
    assert "fedavg" in listed["modes"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"mode": "telepathy"}, 400, "invalid_request"),
        ({"rounds": 0}, 400, "invalid_request"),
        ({"dataset": "../../etc/passwd"}, 400, "invalid_request"),
        ({"quantum": 1}, 400, "invalid_request"),
        ({"start": "yes"}, 400, "invalid_request"),
        ({"nodes": "four"}, 400, "invalid_request"),
    ],
)
def test_bad_runs_are_refused_with_the_envelope(
    client: TestClient, body: dict[str, Any], status: int, code: str
) -> None:
    error(client.post(f"{BASE}/runs", json=body), status, code)
    assert ok(client.get(f"{BASE}/runs"))["total"] == 0  # nothing was stored


@pytest.mark.parametrize(
    ("run_id", "code"),
    [
        ("42", "learning_run_not_found"),
        ("abc", "learning_run_not_found"),
        ("1%2F..%2F2", "learning_run_not_found"),
        # the client resolves the dots first: the path leaves the API's routes altogether
        ("../../etc/passwd", "not_found"),
    ],
)
def test_unknown_runs_are_404(client: TestClient, run_id: str, code: str) -> None:
    error(client.get(f"{BASE}/runs/{run_id}"), 404, code)
    error(client.post(f"{BASE}/runs/{run_id}/cancel"), 404, code)


def test_a_bad_status_filter_is_400(client: TestClient) -> None:
    error(client.get(f"{BASE}/runs", params={"status": "sleeping"}), 400, "invalid_request")


def test_cancel_then_start_resumes_and_a_finished_run_cannot_restart(client: TestClient) -> None:
    run_id = ok(client.post(f"{BASE}/runs", json={**TINY, "start": False}))["run_id"]
    assert run_state(client, run_id)["status"] == "pending"
    assert ok(client.post(f"{BASE}/runs/{run_id}/cancel"))["run"]["status"] == "cancelled"
    ok(client.post(f"{BASE}/runs/{run_id}/start"))
    wait_for(client, run_id, lambda s: s["status"] == "completed")
    error(client.post(f"{BASE}/runs/{run_id}/start"), 409, "invalid_learning_state")
    error(client.post(f"{BASE}/runs/{run_id}/cancel"), 409, "invalid_learning_state")


def test_a_running_run_is_cancelled_at_a_round_boundary(client: TestClient) -> None:
    body = {**TINY, "rounds": 400, "local_steps": 20}
    run_id = ok(client.post(f"{BASE}/runs", json=body))["run_id"]
    wait_for(client, run_id, lambda s: s["current_round"] >= 1)
    cancelled = ok(client.post(f"{BASE}/runs/{run_id}/cancel"))["run"]
    assert cancelled["status"] == "cancelled"
    assert 1 <= cancelled["current_round"] < 400


def test_a_run_survives_a_restart_of_the_control_plane(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    body = {**TINY, "mode": "distill", "rounds": 60, "local_steps": 10}
    with control_plane(settings) as first:
        run_id = ok(first.post(f"{BASE}/runs", json=body))["run_id"]
        wait_for(first, run_id, lambda s: s["current_round"] >= 2)
    # Shut down mid-run: the run stopped at a round boundary and is still "running".
    with control_plane(settings) as second:
        reached = run_state(second, run_id)
        assert reached["status"] in ("running", "completed")
        done = wait_for(second, run_id, lambda s: s["status"] == "completed", timeout=300)
        events = ok(second.get(f"{BASE}/runs/{run_id}/events", params={"kind": "resumed"}))
    assert done["current_round"] == 60
    if reached["current_round"] < 60:
        assert len(events["events"]) == 1
        assert events["events"][0]["payload"]["round"] >= 2
    rounds = [h["round"] for h in done["history"]]
    assert rounds == sorted(rounds) and rounds[-1] == 60
    assert done["result"]["student_accuracy"] > done["result"]["scratch_accuracy"]
