"""Sessions run for real: an embedded neuron, a SQLite store, Optuna's tables in it, the
optimization kind on the jobs runtime.

Sessions are kept tiny (two options, two prompts, a handful of trials) and score similarity
cases by token F1 (``similarity=False``) so the MiniLM model is not loaded here; the trials
themselves are real generations on the neuron.
"""

from __future__ import annotations

import asyncio
import json
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from neurons.config import Settings
from neurons.jobs import JobRuntime
from neurons.modelfile.schema import PARAMETERS
from neurons.network.manager import NetworkManager
from neurons.neuron.process import NeuronProcess
from neurons.optimize.evalsets import builtin_set
from neurons.optimize.results import trial_rows
from neurons.optimize.runner import TRIAL_SEED, OptimizationKind, Progress
from neurons.optimize.service import OptimizationService, load_study
from neurons.optimize.sessions import SessionConfig
from neurons.store import SessionRecord, Store, open_store
from tests.conftest import start_neuron

SMOL = "smollm2:135m"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "control", ollama_base_url="", optimization_lease_s=1.0)


@pytest.fixture
def store(settings: Settings, neuron: NeuronProcess) -> Iterator[Store]:
    opened = open_store(settings.resolved_database_url)
    opened.nodes.upsert("n1", neuron.url, "embedded")
    try:
        yield opened
    finally:
        opened.close()


def create(store: Store, **overrides: Any) -> SessionRecord:
    options: dict[str, Any] = {
        "model_name": SMOL,
        "objective": "maximize_quality",
        "strategy": "random_search",
        "parameters": ["temperature", "top_k"],
        "eval_limit": 2,
        "max_iterations": 3,
        "seed": 7,
        "similarity": False,
        **overrides,
    }
    return store.optimization.create(SessionConfig.create(**options).to_dict())


def run(
    store: Store,
    settings: Settings,
    session_id: str,
    progress: Callable[[Progress], None] | None = None,
) -> SessionRecord:
    """Run the session to its end in a runtime of this process; its record after."""

    async def main() -> SessionRecord:
        network = NetworkManager(store, settings)
        kind = OptimizationKind(store, settings, network, progress=progress)
        runtime = JobRuntime(kind, lease_s=settings.optimization_lease_s)
        try:
            await runtime.start(session_id)
            await runtime.wait(session_id)
        finally:
            await runtime.aclose()
            await network.aclose()
        return await asyncio.to_thread(store.optimization.get, session_id)

    return asyncio.run(main())


def study_of(settings: Settings, record: SessionRecord) -> optuna.Study:
    study = load_study(settings, record)
    assert study is not None
    return study


def test_a_session_runs_its_trials_on_the_node(store: Store, settings: Settings) -> None:
    record = create(store, strategy="bayesian_optimization", max_iterations=4)
    seen: list[Progress] = []
    done = run(store, settings, record.session_id, progress=seen.append)

    assert (done.status, done.current_iteration, done.error) == ("completed", 4, None)
    assert [p.finished for p in seen] == [1, 2, 3, 4] and {p.node for p in seen} == {"n1"}
    rows = trial_rows(study_of(settings, done), "maximize_quality")
    assert [r["state"] for r in rows] == ["complete"] * 4
    baseline = rows[0]
    assert baseline["baseline"] is True
    assert baseline["parameters"] == {"temperature": 0.8, "top_k": 40}  # Ollama's defaults
    assert baseline["overall_score"] == pytest.approx(baseline["metrics"]["quality"], abs=1e-4)
    for row in rows:
        metrics = row["metrics"]
        assert 0.0 <= metrics["quality"] <= 1.0
        assert 0 < metrics["ttft_ms"] <= metrics["total_ms"]
        assert metrics["tokens_per_s"] > 0
        assert metrics["memory_bytes"] > 50 * 2**20  # the node's /api/ps size of the model
        assert row["node"] == "n1"
    best = done.best
    assert best is not None and set(best["parameters"]) == {"temperature", "top_k"}
    assert best["overall_score"] == max(r["overall_score"] for r in rows)
    assert done.to_dict()["best_result"]["overall_score"] == best["overall_score"]


def test_hyperband_reports_a_value_per_prompt(store: Store, settings: Settings) -> None:
    record = create(store, strategy="hyperband", max_iterations=3, eval_limit=3)
    done = run(store, settings, record.session_id)
    assert done.status == "completed"
    study = study_of(settings, done)
    for trial in study.get_trials(states=(TrialState.COMPLETE,)):
        assert sorted(trial.intermediate_values) == [1, 2, 3]  # budget = prompts


def test_samples_run_each_prompt_with_its_own_seed(store: Store, settings: Settings) -> None:
    record = create(store, strategy="hyperband", max_iterations=1, eval_limit=2, samples=2)
    done = run(store, settings, record.session_id)
    assert done.status == "completed"
    (trial,) = study_of(settings, done).get_trials(states=(TrialState.COMPLETE,))
    cases = trial.user_attrs["cases"]
    first, second = builtin_set("general").cases[:2]
    assert [(c["case_id"], c["seed"]) for c in cases] == [
        (first.id, TRIAL_SEED),
        (first.id, TRIAL_SEED + 1),
        (second.id, TRIAL_SEED),
        (second.id, TRIAL_SEED + 1),
    ]
    # Hyperband's resource is still the prompt: one report per prompt, after its samples.
    assert sorted(trial.intermediate_values) == [1, 2]
    mean = sum(c["score"] for c in cases) / len(cases)
    assert trial.user_attrs["metrics"]["quality"] == pytest.approx(mean, abs=1e-3)


def test_multi_objective_keeps_a_pareto_front(store: Store, settings: Settings) -> None:
    record = create(store, objective="balance_quality_speed", strategy="hyperband")
    done = run(store, settings, record.session_id)
    assert done.status == "completed" and done.best is not None
    front = done.best["pareto_front"]
    assert front and done.best["trial"] in [p["trial"] for p in front]
    study = study_of(settings, done)
    assert all(not t.intermediate_values for t in study.trials)  # never pruned or reported


def test_configurations_that_do_not_fit_are_pruned_before_running(
    tmp_path: Path, settings: Settings
) -> None:
    # A node that says it has 500 MiB: SmolLM2 needs ~334 MiB at num_ctx 4096 (fits within
    # 80%) and ~437 MiB at 6144 (does not). Only the reported memory is fake here.
    stats = tmp_path / "host.json"
    stats.write_text(json.dumps({"memory": {"total_bytes": 500 * 2**20}}))
    small = start_neuron(tmp_path / "small", env={"NEURONS_HOST_STATS": str(stats)})
    try:
        store = open_store(settings.resolved_database_url)
        try:
            store.nodes.upsert("small", small.url, "embedded")
            record = create(store, strategy="grid_search", parameters=["num_ctx"], max_iterations=5)
            done = run(store, settings, record.session_id)
            rows = trial_rows(study_of(settings, done), "maximize_quality")
        finally:
            store.close()
    finally:
        small.stop()
    assert done.status == "completed"
    by_ctx = {r["parameters"]["num_ctx"]: r for r in rows if not r["baseline"]}
    assert by_ctx[2048]["state"] == "complete"
    for ctx in (6144, 8192):
        assert by_ctx[ctx]["state"] == "pruned"
        assert "does not fit" in by_ctx[ctx]["pruned_reason"]
        assert "metrics" not in by_ctx[ctx]  # never ran


def test_a_missing_model_fails_the_session_with_the_reason(
    store: Store, settings: Settings
) -> None:
    record = create(store, model_name="no-such-model:1b")
    done = run(store, settings, record.session_id)
    assert done.status == "failed"
    assert done.error is not None and "no healthy node holds no-such-model:1b" in done.error
    assert done.runner is None


def test_the_timeout_ends_a_session_early(store: Store, settings: Settings) -> None:
    record = create(store, max_iterations=50, timeout_minutes=0.02)  # 1.2 s of trials
    done = run(store, settings, record.session_id)
    assert done.status == "completed"
    assert 1 <= done.current_iteration < 50
    assert done.elapsed_s >= 1.2


def test_an_orphaned_session_resumes_and_reruns_the_interrupted_trial(
    store: Store, settings: Settings
) -> None:
    """Its process shuts down after one trial, a crash leaves a trial RUNNING; the service
    adopts the session and finishes it with the same configurations."""
    record = create(store, max_iterations=4)
    first_done, shutting_down = threading.Event(), threading.Event()

    def hold_after_first(progress: Progress) -> None:
        # Optuna's thread waits here until the shutdown has set the stop signal, so the
        # session stops after exactly this trial.
        if progress.finished == 1:
            first_done.set()
            shutting_down.wait(60)

    async def shut_down_after_first() -> SessionRecord:
        network = NetworkManager(store, settings)
        kind = OptimizationKind(store, settings, network, progress=hold_after_first)
        runtime = JobRuntime(kind, lease_s=settings.optimization_lease_s)
        try:
            await runtime.start(record.session_id)
            assert await asyncio.to_thread(first_done.wait, 120)
            closing = asyncio.create_task(runtime.aclose())
            await asyncio.sleep(0)  # aclose sets every run's stop before its first await
            shutting_down.set()
            await closing
        finally:
            shutting_down.set()
            await network.aclose()
        return await asyncio.to_thread(store.optimization.get, record.session_id)

    paused = asyncio.run(shut_down_after_first())
    assert (paused.status, paused.runner, paused.current_iteration) == ("running", None, 1)

    study = study_of(settings, paused)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # heartbeats expect optimize(), not ask()
        crashed = study.ask()  # as if a process died mid-trial
    crashed.suggest_float("temperature", 0.2, 1.2)
    crashed.suggest_int("top_k", 10, 100)
    crashed_params = dict(study.trials[-1].params)

    async def resume() -> SessionRecord:
        network = NetworkManager(store, settings)
        service = OptimizationService(store, settings, network)
        try:
            assert await service.adopt_orphans() == [record.session_id]
            assert await service.adopt_orphans() == []  # already running here
            return await service.wait(record.session_id, timeout=120)
        finally:
            await service.aclose()
            await network.aclose()

    done = asyncio.run(resume())
    assert (done.status, done.current_iteration) == ("completed", 4)
    trials = study_of(settings, done).trials
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [crashed.number]
    retried = [t for t in trials if t.user_attrs.get("retry_of") == crashed.number]
    assert len(retried) == 1 and retried[0].params == crashed_params
    assert retried[0].state == TrialState.COMPLETE


def test_cancel_stops_a_running_session(store: Store, settings: Settings) -> None:
    record = create(store, max_iterations=50)

    async def main() -> tuple[SessionRecord, SessionRecord]:
        network = NetworkManager(store, settings)
        service = OptimizationService(store, settings, network)
        try:
            started = await service.start(record.session_id)
            assert started.status == "running"
            while (await asyncio.to_thread(store.optimization.get, record.session_id)).best is None:
                await asyncio.sleep(0.1)
            cancelled = await service.cancel(record.session_id)
            return cancelled, await service.wait(record.session_id, timeout=60)
        finally:
            await service.aclose()
            await network.aclose()

    cancelled, after = asyncio.run(main())
    assert cancelled.status == after.status == "cancelled"
    assert after.current_iteration < 50 and after.finished_at is not None
    assert store.optimization.get(record.session_id).current_iteration == after.current_iteration


def test_apply_creates_the_tuned_model(
    store: Store, settings: Settings, neuron: NeuronProcess
) -> None:
    import ollama

    record = create(store, max_iterations=2)
    run(store, settings, record.session_id)

    async def main() -> dict[str, Any]:
        network = NetworkManager(store, settings)
        service = OptimizationService(store, settings, network)
        try:
            return await service.apply(record.session_id)
        finally:
            await network.aclose()

    applied = asyncio.run(main())
    client = ollama.Client(host=neuron.url)
    try:
        assert applied["model"] == "smollm2:135m-tuned" and applied["nodes"] == {"n1": "success"}
        assert applied["modelfile"].startswith("FROM smollm2:135m\nPARAMETER temperature ")
        shown = client.show("smollm2:135m-tuned")
        best = store.optimization.get(record.session_id).best
        assert best is not None
        for name, value in best["parameters"].items():
            assert name in (shown.parameters or "")
            assert PARAMETERS[name] is not None and value is not None
    finally:
        client.delete("smollm2:135m-tuned")
