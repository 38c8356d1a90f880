"""Every strategy on a real Optuna study, stored in a real SQLite file through optuna_storage."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.pruners import HyperbandPruner, NopPruner
from optuna.samplers import (
    BaseSampler,
    CmaEsSampler,
    GridSampler,
    NSGAIISampler,
    RandomSampler,
    TPESampler,
)
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState
from sqlalchemy import inspect

from neurons.errors import InvalidRequestError, StoreError
from neurons.optimize.objectives import directions, knee_point
from neurons.optimize.space import ParameterRange, SearchSpace
from neurons.optimize.strategies import (
    STRATEGIES,
    grid_points_for_budget,
    make_pruner,
    make_sampler,
    optuna_storage,
)
from neurons.store.engine import open_store

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = SearchSpace.for_model_type("general").restrict(["temperature", "top_p"])
PROMPTS = 9  # Hyperband's max_resource: evaluation prompts per trial


def synthetic(params: dict[str, Any]) -> float:
    """Known optimum 0 at temperature 0.7, top_p 0.9 (inside the general space)."""
    return float(-((params["temperature"] - 0.7) ** 2) - (params["top_p"] - 0.9) ** 2)


def objective(trial: optuna.Trial) -> float:
    return synthetic(SPACE.suggest(trial))


def pruned_objective(trial: optuna.Trial) -> float:
    """Evaluates prompt by prompt, reporting as it goes, as a Hyperband session does."""
    value = objective(trial)
    for prompt in range(1, PROMPTS + 1):
        # A running mean over prompts that starts pessimistic and converges to the true value.
        trial.report(value - 0.5 / prompt, prompt)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return value


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'home' / 'neurons.db'}"


def study_for(url: str, name: str, sampler: BaseSampler, **kwargs: Any) -> optuna.Study:
    return optuna.create_study(
        storage=optuna_storage(url),
        study_name=name,
        sampler=sampler,
        directions=kwargs.pop("directions", directions("maximize_quality")),
        load_if_exists=True,
        **kwargs,
    )


@pytest.mark.parametrize(
    ("strategy", "sampler_type"),
    [
        ("grid_search", GridSampler),
        ("random_search", RandomSampler),
        ("bayesian_optimization", TPESampler),
        ("evolutionary", CmaEsSampler),
        ("hyperband", TPESampler),
    ],
)
def test_every_strategy_finds_the_known_optimum(
    url: str, strategy: str, sampler_type: type[BaseSampler]
) -> None:
    budget = 25
    sampler = make_sampler(strategy, SPACE, "maximize_quality", seed=0, budget=budget)
    pruner = make_pruner(strategy, PROMPTS, objective="maximize_quality")
    assert type(sampler) is sampler_type
    assert type(pruner) is (HyperbandPruner if strategy == "hyperband" else NopPruner)
    study = study_for(url, strategy, sampler, pruner=pruner)
    study.optimize(pruned_objective if strategy == "hyperband" else objective, n_trials=budget)

    assert study.best_value > -0.01
    states = [t.state for t in study.trials]
    if strategy == "grid_search":
        assert len(set(map(str, (t.params for t in study.trials)))) == 25  # 5 x 5 fits
    if strategy == "hyperband":
        assert states.count(TrialState.PRUNED) > 0
    else:
        assert set(states) == {TrialState.COMPLETE}


def test_a_study_resumes_after_a_restart(url: str) -> None:
    sampler = make_sampler("bayesian_optimization", SPACE, "maximize_quality", seed=1)
    study_for(url, "s", sampler).optimize(objective, n_trials=4)
    # A new process: new storage and sampler objects on the same database file.
    sampler = make_sampler("bayesian_optimization", SPACE, "maximize_quality", seed=1)
    resumed = study_for(url, "s", sampler)
    assert len(resumed.trials) == 4
    resumed.optimize(objective, n_trials=3)
    assert [t.number for t in resumed.trials] == list(range(7))


def test_a_resumed_grid_visits_only_the_remaining_points(url: str) -> None:
    sampler = make_sampler("grid_search", SPACE, "maximize_quality", seed=0, budget=4)
    study_for(url, "g", sampler).optimize(objective, n_trials=2)
    sampler = make_sampler("grid_search", SPACE, "maximize_quality", seed=0, budget=4)
    resumed = study_for(url, "g", sampler)
    resumed.optimize(objective, n_trials=10)
    visited = {tuple(sorted(t.params.items())) for t in resumed.trials}
    assert len(resumed.trials) == len(visited) == 4


def test_a_crashed_trial_is_retried_when_the_session_resumes(url: str) -> None:
    crash = textwrap.dedent(
        f"""
        import os, time, optuna
        from neurons.optimize.strategies import optuna_storage
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = optuna_storage({url!r}, heartbeat_interval=1, grace_period=1)
        study = optuna.create_study(storage=storage, study_name="c", direction="maximize")
        def objective(trial):
            trial.suggest_float("temperature", 0.2, 1.2)
            time.sleep(0.2)  # the heartbeat thread has written once
            os._exit(3)  # the process dies mid-trial
        study.optimize(objective, n_trials=1)
        """
    )
    assert subprocess.run([sys.executable, "-c", crash], check=False).returncode == 3
    # Past the grace period of 1 s. SQLite's CURRENT_TIMESTAMP, which Optuna compares
    # heartbeats with, has whole seconds: "more than 1 s" means 2 s on the clock.
    time.sleep(2.0)

    study = optuna.create_study(
        storage=optuna_storage(url, heartbeat_interval=1, grace_period=1),
        study_name="c",
        direction="maximize",
        load_if_exists=True,
    )
    assert study.trials[0].state == TrialState.RUNNING
    study.optimize(lambda t: t.suggest_float("temperature", 0.2, 1.2), n_trials=1)
    first, retry = study.trials
    assert first.state == TrialState.FAIL
    assert retry.state == TrialState.COMPLETE
    assert retry.params == first.params
    with pytest.warns(optuna.exceptions.ExperimentalWarning):  # experimental since Optuna 2.8
        assert RetryHeartbeatStaleTrialCallback.retried_trial_number(retry) == 0


def test_optuna_shares_the_neurons_database(url: str) -> None:
    store = open_store(url)
    try:
        optuna.create_study(storage=optuna_storage(url), study_name="shared")
        tables = set(inspect(store.engine).get_table_names())
    finally:
        store.engine.dispose()
    assert {"nodes", "schema_migrations", "studies", "trials"} <= tables
    with pytest.raises(StoreError, match="invalid database URL"):
        optuna_storage("not a url")


def test_processes_opening_a_fresh_database_at_once_all_get_the_storage(tmp_path: Path) -> None:
    """A session's runner, a worker and a status read may each be first to open Optuna's
    storage: racing to create its tables fails one of them with IntegrityError or "table
    alembic_version already exists" (seen in a test run), which optuna_storage retries."""
    script = textwrap.dedent(
        """
        import sys, time
        from neurons.optimize.strategies import optuna_storage
        while time.time() < float(sys.argv[2]):  # start together
            time.sleep(0.001)
        optuna_storage(sys.argv[1])
        """
    )
    for round_ in range(3):
        url = f"sqlite:///{tmp_path / f'race{round_}.db'}"
        start = str(time.time() + 3)  # after the imports, in every process
        racers = [
            subprocess.Popen([sys.executable, "-c", script, url, start], stderr=subprocess.PIPE)
            for _ in range(4)
        ]
        errors = [racer.communicate(timeout=120)[1].decode() for racer in racers]
        assert [racer.returncode for racer in racers] == [0] * 4, "\n".join(errors)


def test_evolutionary_falls_back_to_nsga2_for_multi_objective(url: str) -> None:
    sampler = make_sampler("evolutionary", SPACE, "balance_quality_speed", seed=0, budget=25)
    assert type(sampler) is NSGAIISampler
    assert type(make_pruner("hyperband", PROMPTS, objective="balance_quality_speed")) is NopPruner

    def two_objectives(trial: optuna.Trial) -> tuple[float, float]:
        params = SPACE.suggest(trial)  # quality peaks at 0.7; "speed" grows with temperature
        return synthetic(params), params["temperature"]

    study = study_for(url, "mo", sampler, directions=directions("balance_quality_speed"))
    study.optimize(two_objectives, n_trials=25)
    front = [(t.values[0], t.values[1]) for t in study.best_trials]
    assert len(front) >= 2
    knee = study.best_trials[knee_point(front)]
    assert 0.7 <= knee.params["temperature"] <= 1.2


@pytest.mark.parametrize(
    "space",
    [
        SPACE.replace(ParameterRange("num_ctx", "categorical", choices=(2048, 4096))),
        SPACE.restrict(["temperature"]),
    ],
)
def test_evolutionary_falls_back_to_nsga2_where_cma_es_does_not_apply(space: SearchSpace) -> None:
    assert type(make_sampler("evolutionary", space, "maximize_quality")) is NSGAIISampler


@pytest.mark.parametrize(
    ("space", "budget", "expected"),
    [
        (SPACE, None, 3),
        (SPACE, 30, 5),
        (SPACE, 3, 2),  # nothing smaller than 2 x 2; the grid is visited in random order
        (SearchSpace.for_model_type("general"), 100, 2),
        (SearchSpace("x", (ParameterRange("top_k", "int", 1, 3),)), 1000, 3),  # saturated
    ],
)
def test_grid_points_for_budget(space: SearchSpace, budget: int | None, expected: int) -> None:
    assert grid_points_for_budget(space, budget) == expected


def test_unknown_strategy_and_bad_budgets() -> None:
    with pytest.raises(InvalidRequestError, match="valid: grid_search, random_search"):
        make_sampler("annealing", SPACE, "maximize_quality")
    with pytest.raises(InvalidRequestError, match="unknown strategy"):
        make_pruner("annealing", 3)
    with pytest.raises(InvalidRequestError, match="unknown objective"):
        make_sampler("bayesian_optimization", SPACE, "fastest")
    with pytest.raises(InvalidRequestError, match="budget"):
        make_sampler("grid_search", SPACE, "maximize_quality", budget=0)
    with pytest.raises(InvalidRequestError, match="max_resource"):
        make_pruner("hyperband", 0)
    assert len(STRATEGIES) == 5
