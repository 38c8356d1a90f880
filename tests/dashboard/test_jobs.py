"""The dashboard's jobs view in headless Chromium over a real control plane with real jobs in
its store: a distributed-learning run (distill: nodes teach each other), an ensemble run, an
optimization session of real trials against the neuron, and a fine-tuning job that fails
validating its data. Nothing is mocked; the view must load with no console error.

- learning: the accuracy curve draws one point per node per round recorded, and the
  teacher→student lessons are the run's ``taught`` events;
- optimization: the trials table has every trial, the convergence plot the best-so-far line
  and each trial's score, and "apply" creates the tuned model on the node;
- fine-tuning: the failed phase and the log's reason;
- live: a run started while the page is open appears, completed, through the event stream.

A full-page screenshot lands in ``artifacts/screenshots/jobs.png``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

from neurons.neuron.process import NeuronProcess
from tests.api.envelope import ok
from tests.dashboard.conftest import control_plane

SMOL = "smollm2:135m"
APPLIED = "jobs-view-tuned:latest"
LEARN = "/api/ai/learning/runs"
OPT = "/api/ai/ollama/optimization"
FT = "/api/ai/ollama/fine-tuning"
# distill on digits: 3 nodes, 4 rounds; node-0 starts teaching the others in round 2.
DISTILL = {"mode": "distill", "nodes": 3, "rounds": 4, "local_steps": 20, "hidden_size": 32}
ENSEMBLE = {"mode": "ensemble", "nodes": 3, "rounds": 3, "local_steps": 10, "hidden_size": 16}
# Two trials (the baseline and one more), two prompts each, no MiniLM: seconds per trial.
SESSION = {
    "model_name": SMOL,
    "parameters": "temperature,top_k",
    "eval_limit": "2",
    "max_iterations": "2",
    "similarity": "false",
    "seed": "7",
}
BAD_DATA = b'{"nope": 1}\nnot json\n'


@dataclass
class Jobs:
    url: str
    http: httpx.Client
    distill: str
    ensemble: str
    session: str
    job: str


def wait_until(read: Any, done: Any, timeout: float = 180.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        current: dict[str, Any] = read()
        if done(current):
            return current
        assert time.monotonic() < deadline, f"never got there: {current}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def jobs(neuron: NeuronProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jobs]:
    """A plane with one job of each kind, started together and waited for."""
    home = tmp_path_factory.mktemp("dash-jobs") / "home"
    with control_plane(home, neuron) as url, httpx.Client(base_url=url, timeout=60) as http:
        session = ok(http.post(f"{OPT}/create", data=SESSION))["session_id"]
        ok(http.post(f"{OPT}/start/{session}"))
        distill = ok(http.post(LEARN, json=DISTILL))["run_id"]
        ensemble = ok(http.post(LEARN, json=ENSEMBLE))["run_id"]
        job = ok(
            http.post(
                f"{FT}/create",
                data={"base_model": SMOL, "target_model_name": "smollm2-bad"},
                files={"training_file": ("bad.jsonl", BAD_DATA)},
            )
        )["job_id"]
        ok(http.post(f"{FT}/start/{job}"))
        for run in (distill, ensemble):
            state = wait_until(
                lambda run=run: ok(http.get(f"{LEARN}/{run}"))["run"],
                lambda r: r["status"] in ("completed", "failed"),
            )
            assert state["status"] == "completed", state["error"]
        wait_until(
            lambda: ok(http.get(f"{FT}/status/{job}"))["job"], lambda j: j["state"] == "failed"
        )
        state = wait_until(
            lambda: ok(http.get(f"{OPT}/status/{session}"))["session"],
            lambda s: s["status"] in ("completed", "failed"),
            timeout=300,
        )
        assert state["status"] == "completed", state["error"]
        yield Jobs(url, http, distill, ensemble, session, job)


def open_jobs(page: Any, url: str) -> None:
    page.goto(f"{url}/dashboard#/jobs")
    page.wait_for_selector('#view[data-view="jobs"]:not([data-state="loading"])')
    assert page.get_attribute("#view", "data-state") == "ready", page.inner_text("#view")


def select(page: Any, key: str, job_id: str) -> Any:
    """Click the job's row; its detail panel once drawn."""
    row = f'tr[data-testid="{key}-row"][data-id="{job_id}"]'
    page.click(row)
    detail = f'[data-testid="{key}-detail"][data-id="{job_id}"][data-state="ready"]'
    page.wait_for_selector(detail)
    assert page.get_attribute(row, "aria-selected") == "true"
    return page.locator(detail)


def points(page: Any, chart: str) -> int:
    return int(page.get_attribute(f"#{chart} svg.chart", "data-points"))


def test_jobs_view_shows_every_kind_live(
    page: Any, jobs: Jobs, neuron: NeuronProcess, shots_dir: Path
) -> None:
    http = jobs.http
    open_jobs(page, jobs.url)
    page.wait_for_selector('#jobs-live[data-state="connected"]')

    # -- learning: accuracy per node per round, and who taught whom -------------------------
    assert page.locator('tr[data-testid="learn-row"]').count() == 2
    select(page, "learn", jobs.distill)
    rounds = ok(http.get(f"{LEARN}/{jobs.distill}/events", params={"kind": "round"}))["events"]
    assert [e["round"] for e in rounds] == [1, 2, 3, 4]
    per_node = sum(len(e["payload"]["knowledge"]) for e in rounds)
    assert per_node == DISTILL["rounds"] * DISTILL["nodes"]
    assert points(page, "learn-accuracy-chart") == per_node
    legend = page.locator("#learn-accuracy-chart .chart-legend").all_text_contents()
    assert sorted(legend) == ["node-0", "node-1", "node-2"]  # one line per node
    taught = ok(http.get(f"{LEARN}/{jobs.distill}/events", params={"kind": "taught"}))["events"]
    assert taught, "node-0 never taught: the fixture's run is meant to show teaching"
    lessons = page.locator('[data-testid="learn-transfer-row"]')
    assert lessons.count() == len(taught)
    first = taught[0]
    assert f"{first['payload']['teacher']} → {first['node_id']}" in lessons.first.inner_text()
    pairs = {(e["payload"]["teacher"], e["node_id"]) for e in taught}
    shown = page.locator('[data-testid="learn-pair"]')
    assert {(shown.nth(i).get_attribute("data-teacher"), shown.nth(i).get_attribute("data-student"))
            for i in range(shown.count())} == pairs  # fmt: skip
    # the graph over time: a cell per round in which a pair had lessons
    cells = page.locator('[data-testid="learn-timeline-cell"]')
    assert cells.count() == len(
        {(e["round"], e["payload"]["teacher"], e["node_id"]) for e in taught}
    )

    select(page, "learn", jobs.ensemble)
    assert points(page, "learn-accuracy-chart") == ENSEMBLE["rounds"] * ENSEMBLE["nodes"]
    # From round 2 each node learns from its two peers: 2 rounds x 3 nodes.
    assert page.locator('[data-testid="learn-transfer-row"]').count() == 6

    # -- optimization: trials, convergence, best parameters, apply ---------------------------
    select(page, "opt", jobs.session)
    details = ok(http.get(f"{OPT}/trials/{jobs.session}"))
    rows = page.locator('[data-testid="opt-trial-row"]')
    assert rows.count() == len(details["trials"]) == 2
    for i, trial in enumerate(details["trials"]):
        assert rows.nth(i).get_attribute("data-trial") == str(trial["trial"])
        assert rows.nth(i).get_attribute("data-state") == trial["state"] == "complete"
    # best-so-far line plus each trial's own score
    assert points(page, "opt-convergence-chart") == 2 * len(details["convergence"]) == 4
    best = details["best"]
    for name, value in best["parameters"].items():
        assert page.locator(f'#opt-best .chip[data-param="{name}"]').count() == 1, (name, value)
    apply = page.locator('[data-testid="opt-apply"]')
    assert apply.is_enabled()
    page.fill('[data-testid="opt-apply-name"]', APPLIED)
    apply.click()
    page.wait_for_selector('[data-testid="opt-apply-result"][data-state]', timeout=60_000)
    assert page.get_attribute('[data-testid="opt-apply-result"]', "data-state") == "ok"
    assert "n1: created" in page.inner_text('[data-testid="opt-apply-result"]')
    client = ollama.Client(host=neuron.url)
    try:
        assert client.show(APPLIED).parameters is not None
    finally:
        client.delete(APPLIED)

    # -- fine-tuning: the failed phase and its reason in the log -----------------------------
    detail = select(page, "ft", jobs.job)
    assert page.get_attribute('#ft-phases li[data-phase="validating"]', "data-state") == "failed"
    assert "no valid training examples" in page.inner_text('[data-testid="ft-logs"]')
    assert "no valid training examples" in detail.locator('[data-testid="ft-error"]').inner_text()

    # -- live: a run started now shows up, completed, with no reload -------------------------
    select(page, "learn", jobs.distill)
    run = ok(http.post(LEARN, json={**ENSEMBLE, "rounds": 2}))["run_id"]
    page.wait_for_selector(
        f'tr[data-testid="learn-row"][data-id="{run}"][data-state="completed"]', timeout=60_000
    )
    assert int(page.get_attribute("#jobs-live", "data-events")) >= 2  # running, completed

    select(page, "learn", jobs.distill)
    page.screenshot(path=shots_dir / "jobs.png", full_page=True)
