"""Issue 20's proof for learning runs, with real processes: a control plane started while
``neurons learn run`` trains does not run the run a second time, and ``neurons learn cancel``
from another shell stops it (the training process exits 130, the run ends ``cancelled``);
Ctrl-C in the training shell cancels it the same way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from neurons.api.app import create_control_plane
from neurons.api.server import ServerThread
from neurons.config import Settings
from neurons.store import open_store
from neurons.store.learning import LearningRunRecord
from tests.api.envelope import ok
from tests.conftest import free_port

LEASE_S = 1.5
ROOT = Path(__file__).resolve().parents[2]


def _until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_control_plane_started_mid_run_leaves_it_alone_and_a_cancel_stops_it(
    tmp_path: Path,
) -> None:
    settings = Settings(
        home=tmp_path / "home",
        ollama_base_url="",
        import_default_models=False,
        health_interval_s=60,
        snapshot_interval_s=0,
        learning_lease_s=LEASE_S,
    )
    env = {
        **os.environ,
        "NEURONS_HOME": str(settings.home),
        "NEURONS_LEARNING_LEASE_S": str(LEASE_S),
        "OMP_NUM_THREADS": "1",  # two shared cores: a second torch thread only waits
    }
    cli = [sys.executable, "-m", "neurons", "learn"]
    # Far more rounds than the test lasts: it ends by the cancel, never by itself.
    argv = [*cli, "run", "--nodes", "2", "--local-steps", "20", "--rounds", "1000", "--json"]
    log = tmp_path / "learn.log"
    with log.open("wb") as out:
        trainer = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=out)
    store = open_store(settings.resolved_database_url)
    try:

        def run() -> LearningRunRecord:
            if trainer.poll() is not None:
                raise AssertionError(f"trainer exited {trainer.returncode}: {log.read_text()}")
            (record,) = store.learning.list()
            return record

        _until(lambda: bool(store.learning.list()) and run().current_round >= 2, 120, "rounds")
        runner = run().runner
        assert runner is not None and runner.split(":")[1] == str(trainer.pid)

        app = create_control_plane(settings, [])
        plane = ServerThread(app, port=free_port()).start(ready_path="/api/health")
        try:
            url = f"{plane.url}/api/ai/learning/runs/{run().run_id}"
            before = run().current_round
            # Several leases: the trainer's heartbeats keep the run its own meanwhile.
            time.sleep(3 * LEASE_S)
            state = ok(httpx.get(url, timeout=30))["run"]
            assert state["status"] == "running" and state["runner"] == runner, state
            assert state["current_round"] > before  # still training, in the trainer
            assert not app.state.learning.runtime.runs_here(state["run_id"])

            cancel = subprocess.run(
                [*cli, "cancel", state["run_id"]],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert cancel.returncode == 0, cancel.stderr
            asked = time.monotonic()
            assert trainer.wait(timeout=30) == 130, log.read_text()
            took = time.monotonic() - asked
            final = ok(httpx.get(url, timeout=30))["run"]
            events = ok(httpx.get(f"{url}/events", params={"limit": 5000}, timeout=30))
        finally:
            plane.stop()
    finally:
        if trainer.poll() is None:
            trainer.kill()
            trainer.wait()
        store.close()

    assert took < 10, took
    assert final["status"] == "cancelled" and final["runner"] is None, final
    assert final["attempts"] == 1  # started once, by the trainer, never adopted
    rounds = [e["round"] for e in events["events"] if e["kind"] == "round"]
    assert rounds == list(range(1, final["current_round"] + 1))  # each round exactly once
    assert not [e for e in events["events"] if e["kind"] == "resumed"]


def test_ctrl_c_cancels_the_run_and_exits_130(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "NEURONS_HOME": str(home), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "neurons", "learn", "run", "--nodes", "2", "--rounds", "1000"]
    trainer = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    store = open_store(Settings(home=home).resolved_database_url)

    def trained() -> bool:
        assert trainer.poll() is None, trainer.returncode
        return any(run.current_round >= 2 for run in store.learning.list())

    try:
        _until(trained, 120, "rounds")
        trainer.send_signal(signal.SIGINT)
        _, stderr = trainer.communicate(timeout=30)
        (run,) = store.learning.list()
    finally:
        if trainer.poll() is None:
            trainer.kill()
            trainer.wait()
        store.close()
    assert trainer.returncode == 130, stderr
    assert f"neurons learn start {run.run_id}" in stderr
    assert run.status == "cancelled" and run.runner is None, run
