"""Workers sharing a session: the budget claimed trial by trial, Optuna's heartbeat retries,
and ``neurons optimize worker`` as its own process beside the session's runner, over two real
neurons.

The budget tests build studies by hand (no node); the end-to-end test runs real generations,
kept tiny as in ``test_runner`` (two options, two prompts, token-F1 scoring).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.storages import fail_stale_trials
from optuna.trial import TrialState, create_trial
from typer.testing import CliRunner, Result

from neurons.cli.optimize import optimize_app
from neurons.config import Settings
from neurons.jobs import JobRuntime
from neurons.network.manager import NetworkManager
from neurons.neuron.process import NeuronProcess
from neurons.optimize.budget import SURPLUS, WORKER, claim, counted, slots_left
from neurons.optimize.results import finished_count, trial_rows, worker_rows
from neurons.optimize.runner import OptimizationKind, Progress, session_leases
from neurons.optimize.service import OptimizationService, load_study
from neurons.optimize.sessions import SessionConfig
from neurons.optimize.strategies import optuna_storage
from neurons.store import SessionRecord, Store, open_store
from tests.conftest import start_neuron
from tests.optimize.test_runner import create  # the same session, one definition

SMOL = "smollm2:135m"
TEMPERATURE = FloatDistribution(0.0, 2.0)


def add(study: optuna.Study, state: TrialState, **attrs: Any) -> None:
    value = 1.0 if state == TrialState.COMPLETE else None
    study.add_trial(
        create_trial(
            state=state,
            value=value,
            params={"temperature": 0.5},
            distributions={"temperature": TEMPERATURE},
            user_attrs=attrs,
        )
    )


# -- the budget -------------------------------------------------------------------------------


def test_a_trial_claims_a_slot_only_within_the_budget() -> None:
    study = optuna.create_study()
    add(study, TrialState.COMPLETE)  # 0
    add(study, TrialState.PRUNED, interrupted=True)  # 1: runs again, holds nothing
    add(study, TrialState.FAIL, **{WORKER: "w2"})  # 2: a failure counts
    add(study, TrialState.PRUNED, **{SURPLUS: True})  # 3: never ran
    add(study, TrialState.RUNNING, **{WORKER: "w2"})  # 4: some worker runs it
    add(study, TrialState.WAITING)  # 5: queued; whoever asks next runs it

    assert [t.number for t in counted(study.trials)] == [0, 2]
    assert finished_count(study) == 2
    assert slots_left(study, 4) == 1  # 0, 2 finished, 4 running; 5 is not taken yet
    # Ranked by number: 0, 2, 4 and 5 hold the first four slots of a budget of four.
    assert claim(study, 5, 4) and not claim(study, 6, 4)
    assert claim(study, 6, 5)  # with a budget of five, a new trial is the fifth
    assert not claim(study, 7, 4)

    workers = [r["worker"] for r in trial_rows(study, "maximize_quality")]
    assert workers == ["main", "main", "w2", "main", "w2", None]  # nobody runs 5 yet
    rows = {r["worker"]: r for r in worker_rows(study)}
    assert list(rows) == ["main", "w2"]  # trials before workers existed are main's
    assert (rows["main"]["finished"], rows["main"]["complete"]) == (1, 1)
    assert (rows["w2"]["finished"], rows["w2"]["failed"], rows["w2"]["running"]) == (1, 1, 1)


def test_a_trial_whose_worker_went_silent_is_retried_and_not_counted(tmp_path: Path) -> None:
    """Optuna's heartbeat fails a dead worker's trial and queues it again: the retry holds its
    slot, the failure does not (a budget of 2 still needs 2 trials)."""
    storage = optuna_storage(f"sqlite:///{tmp_path / 'h.db'}", heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(storage=storage, study_name="s")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # heartbeats expect optimize(), not ask()
        dead = study.ask()
    dead.suggest_float("temperature", 0.0, 2.0)
    dead.set_user_attr(WORKER, "w2")
    storage.record_heartbeat(dead._trial_id)
    time.sleep(2.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        fail_stale_trials(study)

    failed, retry = study.trials
    assert (failed.state, retry.state) == (TrialState.FAIL, TrialState.WAITING)
    assert retry.params == failed.params
    assert finished_count(study) == 0 and slots_left(study, 2) == 2
    assert claim(study, retry.number, 1)  # the retry takes the slot the failure gave up
    row = trial_rows(study, "maximize_quality")[0]
    assert "no heartbeat" in row["pruned_reason"] and row["worker"] == "w2"


# -- the command ------------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NEURONS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NEURONS_OLLAMA_BASE_URL", "")
    monkeypatch.setenv("COLUMNS", "200")  # rich tables: no cell cut short
    return tmp_path / "home"


@pytest.fixture
def settings(home: Path) -> Settings:
    return Settings(home=home, ollama_base_url="", optimization_lease_s=1.0)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    opened = open_store(settings.resolved_database_url)
    try:
        yield opened
    finally:
        opened.close()


def invoke(*args: str) -> Result:
    return CliRunner().invoke(optimize_app, list(args))


def test_a_worker_refuses_what_it_cannot_join(store: Store, home: Path) -> None:
    unknown = invoke("worker", "99")
    assert unknown.exit_code == 1 and "no optimization session '99'" in unknown.stderr

    pending = create(store)
    refused = invoke("worker", pending.session_id, "--json")
    envelope = json.loads(refused.stdout)
    assert refused.exit_code == 1 and envelope["error_code"] == "invalid_session_state"
    assert "is pending: a worker joins a running session" in envelope["error"]
    assert f"neurons optimize start {pending.session_id}" in envelope["error"]

    done = create(store)
    leases = session_leases(store)
    leases.transition(done.session_id, ["pending"], "running", runner="elsewhere")
    leases.transition(done.session_id, ["running"], "completed")
    finished = invoke("worker", done.session_id)
    assert finished.exit_code == 0, finished.output
    assert "ran 0 trial(s)" in finished.stdout and "ended: session completed" in finished.stdout

    main = invoke("worker", done.session_id, "--worker-id", "main")
    assert main.exit_code == 1 and "session's own runner" in main.stderr


@pytest.mark.slow
def test_a_worker_process_shares_the_session_over_two_nodes(
    store: Store, settings: Settings, home: Path, neuron: NeuronProcess, tmp_path: Path
) -> None:
    """The session's runner on n1 and ``neurons optimize worker`` in its own process on n2:
    both run trials, and the study holds exactly the budget. The runner waits after its first
    trial until the worker has finished one, so the worker joins however slowly it starts."""
    second = start_neuron(tmp_path / "n2")
    try:
        store.nodes.upsert("n1", neuron.url, "embedded")
        store.nodes.upsert("n2", second.url, "embedded")
        budget = 4
        record = create(store, max_iterations=budget, node="n1")
        worker_done = threading.Event()

        def hold_until_the_worker_ran(progress: Progress) -> None:
            if progress.finished == 1:
                worker_done.wait(90)

        async def main() -> tuple[SessionRecord, subprocess.CompletedProcess[str]]:
            network = NetworkManager(store, settings)
            kind = OptimizationKind(store, settings, network, progress=hold_until_the_worker_ran)
            runtime = JobRuntime(kind, lease_s=settings.optimization_lease_s)
            env = {**os.environ, "NEURONS_HOME": str(home), "NEURONS_OLLAMA_BASE_URL": ""}
            command = [sys.executable, "-m", "neurons", "optimize", "worker"]
            command += [record.session_id, "--node", "n2", "--worker-id", "w2", "--json"]
            try:
                await runtime.start(record.session_id)
                proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
                while not await asyncio.to_thread(_ran_a_trial, settings, record, "w2"):
                    assert proc.poll() is None, proc.communicate()
                    await asyncio.sleep(0.2)
                worker_done.set()
                await runtime.wait(record.session_id, 120)
                out, _ = await asyncio.to_thread(proc.communicate, timeout=60)
                finished = subprocess.CompletedProcess(command, proc.returncode, out)
            finally:
                worker_done.set()
                await runtime.aclose()
                await network.aclose()
            return await asyncio.to_thread(store.optimization.get, record.session_id), finished

        done, worker = asyncio.run(main())
    finally:
        second.stop()

    assert (done.status, done.current_iteration, done.error) == ("completed", budget, None)
    assert worker.returncode == 0, worker.stdout
    report = json.loads(worker.stdout)
    assert report["success"] is True and report["worker"] == "w2"
    assert report["nodes"] == ["n2"] and report["ended"] == "budget" and report["trials"]

    study = load_study(settings, done)
    assert study is not None
    trials = study.trials
    surplus = [t for t in trials if t.user_attrs.get(SURPLUS)]
    kept = [t for t in trials if not t.user_attrs.get(SURPLUS)]
    # Exactly the budget: a surplus trial (two workers asking for the last slot at once) is
    # pruned unrun, with no parameters; at most one per extra worker.
    assert len(kept) == budget and len(surplus) <= 1
    assert all(t.state == TrialState.COMPLETE for t in kept)
    assert all(t.state == TrialState.PRUNED and not t.params for t in surplus)
    by_worker = {t.user_attrs[WORKER]: t.user_attrs["node"] for t in kept}
    assert by_worker == {"main": "n1", "w2": "n2"}
    assert len(report["trials"]) == sum(1 for t in kept if t.user_attrs[WORKER] == "w2")

    status = invoke("status", done.session_id, "--json")
    workers = {w["worker"]: w for w in json.loads(status.stdout)["workers"]}
    assert set(workers) == {"main", "w2"}
    assert sum(w["finished"] for w in workers.values()) == budget
    assert all(w["complete"] >= 1 and w["running"] == 0 for w in workers.values())
    assert workers["w2"]["nodes"] == ["n2"] and workers["main"]["nodes"] == ["n1"]
    text = invoke("status", done.session_id).stdout
    assert "2 workers" in text and "w2 (n2)" in text and "main (n1)" in text


def _ran_a_trial(settings: Settings, record: SessionRecord, worker: str) -> bool:
    study = load_study(settings, record)
    return study is not None and any(
        t.user_attrs.get(WORKER) == worker and t.state == TrialState.COMPLETE
        for t in study.get_trials(deepcopy=False)
    )


def test_an_interrupted_worker_queues_its_trial_again(
    store: Store, settings: Settings, neuron: NeuronProcess
) -> None:
    """Ctrl-C (its task cancelled) mid-trial: the trial stops after its prompt, does not
    count, and runs again for the other workers with the same parameters."""
    store.nodes.upsert("n1", neuron.url, "embedded")
    record = create(store, max_iterations=5, eval_limit=4, baseline=False)
    session_leases(store).transition(record.session_id, ["pending"], "running", runner="gone")

    async def main() -> None:
        network = NetworkManager(store, settings)
        service = OptimizationService(store, settings, network)
        try:
            config = SessionConfig.from_dict(record.config)
            await asyncio.to_thread(service.kind._study, record, config)  # as its runner did
            task = asyncio.create_task(service.join(record.session_id, worker_id="w2"))
            while not await asyncio.to_thread(_running, settings, record):
                assert not task.done()
                await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            await service.aclose()
            await network.aclose()

    asyncio.run(main())
    study = load_study(settings, record)
    assert study is not None
    stopped = [t for t in study.trials if t.user_attrs.get("interrupted")]
    assert len(stopped) == 1 and stopped[0].state == TrialState.PRUNED
    (retry,) = [t for t in study.trials if t.state == TrialState.WAITING]
    assert retry.user_attrs["retry_of"] == stopped[0].number
    assert retry.system_attrs["fixed_params"] == stopped[0].params  # enqueued: set on running
    assert finished_count(study) == sum(t.state == TrialState.COMPLETE for t in study.trials)


def _running(settings: Settings, record: SessionRecord) -> bool:
    study = load_study(settings, record)
    return study is not None and any(t.state == TrialState.RUNNING for t in study.trials)
