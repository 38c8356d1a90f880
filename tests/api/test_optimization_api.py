"""The optimization API under ``/api/ai/ollama/optimization`` in-process, in front of the real
neuron: sessions created from form data, run in the control plane's background, cancelled,
resumed, applied, and carried over a restart of the control plane.

Sessions stay tiny (two options, two prompts, a handful of trials, no MiniLM) so a trial takes
about a second on a small machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ollama
import pytest
from fastapi.testclient import TestClient

from neurons.api.app import NodeSpec, create_control_plane
from neurons.config import Settings
from neurons.neuron.process import NeuronProcess
from neurons.optimize.runner import TRIAL_SEED
from neurons.optimize.service import load_study
from neurons.store import Store, open_store
from tests.api.envelope import error, ok

SMOL = "smollm2:135m"
TUNED = "smollm2:135m-tuned"
BASE = "/api/ai/ollama/optimization"
TUNED_NAMES = {"temperature", "top_k"}
# What every session here asks for unless a test says otherwise.
TINY = {
    "model_name": SMOL,
    "parameters": "temperature,top_k",
    "eval_limit": "2",
    "max_iterations": "3",
    "similarity": "false",
    "seed": "7",
}


def settings_for(home: Path, **overrides: Any) -> Settings:
    return Settings(home=home, health_interval_s=0.5, ollama_base_url="", **overrides)


@contextmanager
def control_plane(neuron: NeuronProcess, settings: Settings) -> Iterator[TestClient]:
    app = create_control_plane(settings, [NodeSpec("n1", neuron.url, "embedded")])
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def client(neuron: NeuronProcess, tmp_path: Path) -> Iterator[TestClient]:
    with control_plane(neuron, settings_for(tmp_path)) as test_client:
        yield test_client


def create(
    client: TestClient, files: dict[str, tuple[str, bytes]] | None = None, **fields: str
) -> str:
    form = {**TINY, **fields}
    created = ok(client.post(f"{BASE}/create", data=form, files=files))
    session_id: str = created["session_id"]
    return session_id


def session(client: TestClient, session_id: str) -> dict[str, Any]:
    found: dict[str, Any] = ok(client.get(f"{BASE}/status/{session_id}"))["session"]
    return found


def wait_for(
    client: TestClient,
    session_id: str,
    done: Callable[[dict[str, Any]], bool],
    timeout: float = 240.0,
) -> dict[str, Any]:
    """Poll the session's status until ``done`` holds; a failed session fails the test.
    (A trial takes about a second on an idle 2-core machine, up to a minute while other
    llama.cpp processes compete for its cores.)"""
    deadline = time.monotonic() + timeout
    while True:
        current = session(client, session_id)
        if done(current):
            return current
        assert current["status"] != "failed", current["error"]
        assert time.monotonic() < deadline, f"session never got there: {current}"
        time.sleep(0.2)


def completed(current: dict[str, Any]) -> bool:
    return bool(current["status"] == "completed")


def store_of(client: TestClient) -> Store:
    store: Store = client.app.state.store  # type: ignore[attr-defined]
    return store


def test_create_start_complete(client: TestClient) -> None:
    created = ok(
        client.post(
            f"{BASE}/create",
            data={**TINY, "objective": "maximize_quality", "strategy": "random_search"},
        )
    )
    assert created == {
        "session_id": created["session_id"],
        "model_name": SMOL,
        "objective": "maximize_quality",
        "strategy": "random_search",
        "model_type": "general",
        "status": "pending",
        "message": "Optimization session created successfully",
    }
    session_id = created["session_id"]
    assert session_id.isdigit()
    assert session(client, session_id)["status"] == "pending"
    assert ok(client.get(f"{BASE}/sessions", params={"status": "pending"}))["count"] == 1

    started = ok(client.post(f"{BASE}/start/{session_id}"))
    assert started["message"] == "Optimization session started"
    assert started["session"]["status"] == "running"
    assert started["session"]["started_at"] is not None

    done = wait_for(client, session_id, completed)
    assert done["current_iteration"] == done["max_iterations"] == 3
    assert (done["node"], done["error"], done["finished_at"] is not None) == ("n1", None, True)
    best = done["best_result"]
    assert 0.0 <= best["overall_score"] <= 1.0
    assert set(best["parameters"]) == TUNED_NAMES

    listed = ok(client.get(f"{BASE}/sessions", params={"status": "completed"}))
    assert (listed["count"], [s["session_id"] for s in listed["sessions"]]) == (1, [session_id])
    assert ok(client.get(f"{BASE}/sessions", params={"status": "pending"}))["count"] == 0
    assert ok(client.get(f"{BASE}/sessions"))["count"] == 1

    answer = ok(client.get(f"{BASE}/best-parameters/{session_id}"))
    assert (answer["session_id"], answer["model_name"], answer["status"]) == (
        session_id,
        SMOL,
        "completed",
    )
    assert answer["best_parameters"] == best["parameters"]
    assert answer["overall_score"] == best["overall_score"]
    assert set(answer["metrics"]) >= {"quality", "ttft_ms", "total_ms", "tokens_per_s"}

    details = ok(client.get(f"{BASE}/trials/{session_id}"))
    trials = details["trials"]
    assert len(trials) == 3
    assert [t["baseline"] for t in trials] == [True, False, False]
    assert all(t["state"] == "complete" and t["node"] == "n1" for t in trials)
    assert all(set(t["parameters"]) == TUNED_NAMES for t in trials)
    assert details["best"]["parameters"] == best["parameters"]
    assert "pareto_front" not in details["best"]  # single objective
    assert [c["trial"] for c in details["convergence"]] == [0, 1, 2]

    # A completed session is final.
    message = error(client.post(f"{BASE}/start/{session_id}"), 409, "invalid_session_state")
    assert "completed" in message
    error(client.post(f"{BASE}/cancel/{session_id}"), 409, "invalid_session_state")


def test_balance_quality_speed_reports_the_pareto_front(client: TestClient) -> None:
    space = (
        '{"model_type": "general", "ranges": ['
        '{"name": "temperature", "kind": "float", "low": 0.1, "high": 1.0},'
        '{"name": "top_k", "kind": "int", "low": 5, "high": 50, "step": 5}]}'
    )
    session_id = create(client, search_space=space, parameters="")
    ok(client.post(f"{BASE}/start/{session_id}"))
    wait_for(client, session_id, completed)

    details = ok(client.get(f"{BASE}/trials/{session_id}"))
    assert details["objective"] == "balance_quality_speed"
    assert len(details["trials"]) == 3
    for trial in details["trials"]:
        assert 0.1 <= trial["parameters"]["temperature"] <= 1.0
        assert trial["parameters"]["top_k"] in range(5, 51, 5)
    best = details["best"]
    front = best["pareto_front"]
    assert isinstance(front, list) and front
    assert best["trial"] in [member["trial"] for member in front]
    assert {k: v for k, v in best.items() if k != "pareto_front"} in front


def test_errors_use_the_envelope(neuron: NeuronProcess, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, max_optimization_iterations=5)
    with control_plane(neuron, settings) as client:
        for field, value in [
            ("objective", "fastest"),
            ("strategy", "guessing"),
            ("model_type", "poetry"),
        ]:
            message = error(
                client.post(f"{BASE}/create", data={**TINY, field: value}), 400, "invalid_request"
            )
            assert f"unknown {field} '{value}'" in message
        message = error(
            client.post(f"{BASE}/create", data={**TINY, "max_iterations": "6"}),
            400,
            "invalid_request",
        )
        assert "MAX_OPTIMIZATION_ITERATIONS (5)" in message
        message = error(
            client.post(f"{BASE}/create", data={**TINY, "search_space": "{ranges: ["}),
            400,
            "invalid_request",
        )
        assert "search_space is not valid JSON" in message
        message = error(
            client.post(f"{BASE}/create", data={**TINY, "samples": "0"}), 400, "invalid_request"
        )
        assert "samples must be an integer of at least 1" in message
        error(
            client.post(f"{BASE}/create", data={**TINY, "search_space": '{"ranges": 3}'}),
            400,
            "invalid_request",
        )
        error(
            client.post(f"{BASE}/create", data={**TINY, "parameters": "temperature,nope"}),
            400,
            "invalid_request",
        )
        error(
            client.post(f"{BASE}/create", data={**TINY, "model_name": "Bad Name!"}),
            400,
            "invalid_model_name",
        )
        bad_jsonl = b'{"prompt": "Say hi", "reference": "hi"}\n{"prompt": oops}\n'
        message = error(
            client.post(
                f"{BASE}/create", data=TINY, files={"eval_file": ("mine.jsonl", bad_jsonl)}
            ),
            400,
            "invalid_request",
        )
        assert "(line 2): not valid JSON" in message and "line 1" not in message
        error(client.post(f"{BASE}/create", data={"objective": "maximize_quality"}), 422,
              "validation_error")  # fmt: skip
        assert ok(client.get(f"{BASE}/sessions"))["count"] == 0  # nothing was created

        error(client.get(f"{BASE}/sessions", params={"status": "done"}), 400, "invalid_request")

        for bad in ("999", "abc", "-1", "..%2F..%2Fetc%2Fpasswd", "1%2F..%2F2", "%2E%2E"):
            error(client.get(f"{BASE}/status/{bad}"), 404, "session_not_found")
            error(client.post(f"{BASE}/start/{bad}"), 404, "session_not_found")
            error(client.post(f"{BASE}/cancel/{bad}"), 404, "session_not_found")
            error(client.get(f"{BASE}/trials/{bad}"), 404, "session_not_found")
            error(client.get(f"{BASE}/best-parameters/{bad}"), 404, "session_not_found")
            error(client.post(f"{BASE}/apply/{bad}"), 404, "session_not_found")

        pending = create(client)
        message = error(
            client.get(f"{BASE}/best-parameters/{pending}"), 409, "invalid_session_state"
        )
        assert "no completed trial" in message
        error(client.post(f"{BASE}/apply/{pending}"), 409, "invalid_session_state")
        details = ok(client.get(f"{BASE}/trials/{pending}"))
        assert (details["status"], details["trials"], details["best"]) == ("pending", [], None)
        # A pending session can be cancelled, and a cancelled one not cancelled again.
        cancelled = ok(client.post(f"{BASE}/cancel/{pending}"))["session"]
        assert cancelled["status"] == "cancelled"
        error(client.post(f"{BASE}/cancel/{pending}"), 409, "invalid_session_state")


def test_uploaded_eval_set_is_what_trials_run(client: TestClient) -> None:
    jsonl = (
        b"# two questions of my own\n"
        b'{"id": "sky", "prompt": "What color is the sky on a clear day?", '
        b'"reference": "blue", "metric": "contains", "max_tokens": 16}\n'
        b"\n"
        b'{"id": "france", "prompt": "What is the capital of France?", "reference": "Paris"}\n'
    )
    # The file name only labels the set; it is never used as a path.
    files = {"eval_file": ("../../etc/my set.jsonl", jsonl)}
    session_id = create(client, files=files, eval_limit="5", max_iterations="2", samples="2")
    ok(client.post(f"{BASE}/start/{session_id}"))
    wait_for(client, session_id, completed)

    store = store_of(client)
    record = store.optimization.get(session_id)
    assert record.config["samples"] == 2
    eval_set = record.config["eval_set"]
    assert eval_set["name"] == "my_set"
    assert [c["id"] for c in eval_set["cases"]] == ["sky", "france"]
    study = load_study(client.app.state.optimization.settings, record)  # type: ignore[attr-defined]
    assert study is not None
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 2
    for trial in trials:
        cases = trial.user_attrs["cases"]
        assert [c["case_id"] for c in cases] == ["sky", "sky", "france", "france"]
        assert [c["seed"] for c in cases] == [TRIAL_SEED, TRIAL_SEED + 1] * 2


def test_cancel_stops_the_run_and_start_resumes_it(client: TestClient) -> None:
    session_id = create(client, max_iterations="50")
    ok(client.post(f"{BASE}/start/{session_id}"))
    wait_for(client, session_id, lambda s: s["current_iteration"] >= 1)

    cancelled = ok(client.post(f"{BASE}/cancel/{session_id}"))
    assert cancelled["session"]["status"] == "cancelled"
    assert cancelled["message"] == "Optimization session cancelled"
    finished = cancelled["session"]["current_iteration"]
    assert finished >= 1
    time.sleep(3.0)  # a few trials' worth: none may finish
    after = session(client, session_id)
    assert (after["status"], after["current_iteration"]) == ("cancelled", finished)
    assert ok(client.get(f"{BASE}/sessions", params={"status": "cancelled"}))["count"] == 1

    resumed = ok(client.post(f"{BASE}/start/{session_id}"))["session"]
    assert resumed["status"] == "running"
    assert resumed["current_iteration"] == finished  # the finished trials still count
    wait_for(client, session_id, lambda s: s["current_iteration"] > finished)
    assert ok(client.post(f"{BASE}/cancel/{session_id}"))["session"]["status"] == "cancelled"
    details = ok(client.get(f"{BASE}/trials/{session_id}"))
    assert details["trials"][0]["baseline"] is True
    # One study across both runs: trial numbers continue, none is lost.
    numbers = [t["trial"] for t in details["trials"]]
    assert numbers == list(range(len(numbers)))


def test_apply_creates_the_tuned_model(client: TestClient, neuron: NeuronProcess) -> None:
    ollama_client = ollama.Client(host=neuron.url)
    session_id = create(client, objective="maximize_quality")
    ok(client.post(f"{BASE}/start/{session_id}"))
    done = wait_for(client, session_id, completed)
    best = done["best_result"]["parameters"]
    try:
        applied = ok(client.post(f"{BASE}/apply/{session_id}"))
        assert (applied["session_id"], applied["model"], applied["from"]) == (
            session_id,
            TUNED,
            SMOL,
        )
        assert applied["nodes"] == {"n1": "success"}
        assert applied["parameters"] == best
        assert applied["modelfile"].startswith(f"FROM {SMOL}\n")
        assert f"PARAMETER top_k {best['top_k']}" in applied["modelfile"]

        shown = ollama_client.show(TUNED)
        lines = dict(line.split(None, 1) for line in (shown.parameters or "").splitlines())
        assert int(lines["top_k"]) == best["top_k"]
        assert float(lines["temperature"]) == pytest.approx(best["temperature"], rel=1e-3)

        # A node that is not in the network: 404, nothing is created.
        error(
            client.post(f"{BASE}/apply/{session_id}", json={"name": "x:y", "nodes": ["ghost"]}),
            404,
            "node_not_found",
        )
        error(
            client.post(f"{BASE}/apply/{session_id}", json={"name": "Bad Name!"}),
            400,
            "invalid_model_name",
        )
    finally:
        names = {m.model for m in ollama_client.list().models}
        if TUNED in names:
            ollama_client.delete(TUNED)
    assert TUNED not in {m.model for m in ollama_client.list().models}


@pytest.mark.slow
@pytest.mark.timeout(420)  # twelve trials: about 15 s idle, minutes on a busy 2-core machine
def test_session_survives_a_restart_of_the_control_plane(
    neuron: NeuronProcess, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, optimization_lease_s=2)
    with control_plane(neuron, settings) as first:
        session_id = create(first, max_iterations="12")
        ok(first.post(f"{BASE}/start/{session_id}"))
        wait_for(first, session_id, lambda s: s["current_iteration"] >= 1)
    # The first control plane gave the lease back: still running, nobody running it.
    store = open_store(settings.resolved_database_url)
    try:
        left = store.optimization.get(session_id)
    finally:
        store.close()
    assert (left.status, left.runner) == ("running", None)
    assert 1 <= left.current_iteration < 12

    with control_plane(neuron, settings) as second:
        done = wait_for(second, session_id, completed, timeout=360.0)
        assert done["current_iteration"] == 12
        assert done["error"] is None
        details = ok(second.get(f"{BASE}/trials/{session_id}"))
        counted = [t for t in details["trials"] if t["state"] != "running"]
        assert len(counted) >= 12
        assert details["trials"][0]["baseline"] is True
