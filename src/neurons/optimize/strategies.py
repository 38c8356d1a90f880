"""The seed's five strategies as Optuna samplers and pruners, and Optuna's storage in our database.

- ``grid_search``: ``GridSampler`` over ``SearchSpace.grid``, with as many points per axis as
  fit the trial budget (at least 2; a grid larger than the budget is visited in random order).
- ``random_search``: ``RandomSampler``.
- ``bayesian_optimization``: ``TPESampler``, multivariate for single-objective studies (it models
  parameter interactions; Optuna itself uses independent TPE for multi-objective). Not
  ``GPSampler``: it needs torch, which is not a dependency, and fails at its 11th trial without.
- ``evolutionary``: ``CmaEsSampler`` where it applies (one objective, no categorical parameter,
  at least two dimensions: it raises for multi-objective studies and degrades to independent
  random sampling in 1-D), otherwise ``NSGAIISampler``.
- ``hyperband``: ``TPESampler`` with ``HyperbandPruner`` (the pairing Optuna's benchmarks
  recommend), whose resource is the number of evaluation prompts. Every other strategy gets a
  ``NopPruner``, and so does a multi-objective study: Optuna cannot report intermediate values
  for it.

:func:`optuna_storage` puts Optuna's tables (``studies``, ``trials``, ``version_info``,
``alembic_version``, ...) into the neurons database, so a session's trials survive a restart
and ``create_study(load_if_exists=True)`` continues where it stopped. Running trials record a
heartbeat; a trial whose process died (no heartbeat for ``grace_period`` seconds) is marked
failed and queued again, up to ``max_retry`` times, when the study next runs.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.pruners import BasePruner, HyperbandPruner, NopPruner
from optuna.samplers import (
    BaseSampler,
    CmaEsSampler,
    GridSampler,
    NSGAIISampler,
    RandomSampler,
    TPESampler,
)
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError

from neurons.errors import InvalidRequestError, StoreError
from neurons.optimize.objectives import is_multi_objective
from neurons.optimize.space import SearchSpace

__all__ = [
    "STRATEGIES",
    "grid_points_for_budget",
    "make_pruner",
    "make_sampler",
    "optuna_storage",
]

STRATEGIES: tuple[str, ...] = (
    "grid_search",
    "random_search",
    "bayesian_optimization",
    "evolutionary",
    "hyperband",
)
_MAX_POINTS_PER_AXIS = 64


def _check(strategy: str) -> str:
    if strategy not in STRATEGIES:
        raise InvalidRequestError(f"unknown strategy '{strategy}'; valid: {', '.join(STRATEGIES)}")
    return strategy


def grid_points_for_budget(space: SearchSpace, budget: int | None) -> int:
    """The most points per axis whose grid has at most ``budget`` points (3 without a budget,
    2 when even that grid is larger than the budget)."""
    if budget is None:
        return 3
    points, size = 2, space.grid_size(2)
    while points < _MAX_POINTS_PER_AXIS:
        bigger = space.grid_size(points + 1)
        if bigger > budget or bigger == size:  # over budget, or int/categorical axes saturated
            break
        points, size = points + 1, bigger
    return points


def _tpe(seed: int | None, objective: str) -> TPESampler:
    return TPESampler(seed=seed, multivariate=not is_multi_objective(objective))


def make_sampler(
    strategy: str,
    space: SearchSpace,
    objective: str,
    *,
    seed: int | None = None,
    budget: int | None = None,
) -> BaseSampler:
    """The sampler for ``strategy`` over ``space``; ``budget`` is the session's trial count."""
    strategy = _check(strategy)
    if budget is not None and budget < 1:
        raise InvalidRequestError(f"the trial budget must be at least 1, got {budget}")
    if strategy == "grid_search":
        grid: dict[str, Any] = space.grid(grid_points_for_budget(space, budget))
        return GridSampler(grid, seed=seed)
    if strategy == "random_search":
        return RandomSampler(seed=seed)
    if strategy in ("bayesian_optimization", "hyperband"):
        return _tpe(seed, objective)
    if not is_multi_objective(objective) and not space.has_categorical and len(space.ranges) > 1:
        return CmaEsSampler(seed=seed)
    # Five generations at least within the budget; Optuna's default population is 50.
    population = 50 if budget is None else max(4, min(50, budget // 5))
    return NSGAIISampler(seed=seed, population_size=population)


def make_pruner(strategy: str, max_resource: int, *, objective: str | None = None) -> BasePruner:
    """``HyperbandPruner`` over ``1..max_resource`` evaluation prompts for ``hyperband`` (unless
    ``objective`` is multi-objective), ``NopPruner`` otherwise."""
    strategy = _check(strategy)
    if max_resource < 1:
        raise InvalidRequestError(f"max_resource must be at least 1, got {max_resource}")
    if strategy != "hyperband" or (objective is not None and is_multi_objective(objective)):
        return NopPruner()
    return HyperbandPruner(min_resource=1, max_resource=max_resource, reduction_factor=3)


def optuna_storage(
    database_url: str,
    *,
    heartbeat_interval: int = 60,
    grace_period: int = 120,
    max_retry: int = 3,
) -> RDBStorage:
    """Optuna's storage in the database at ``database_url`` (``Settings.resolved_database_url``).

    A trial silent for ``grace_period`` seconds is failed and re-queued (``max_retry`` times).
    """
    try:
        url = make_url(database_url)
    except ArgumentError as exc:
        raise StoreError(f"invalid database URL {database_url!r}: {exc}") from exc
    engine_kwargs: dict[str, Any] = {}
    if url.get_backend_name() == "sqlite":
        # The service writes to the same file; wait for its locks instead of failing at once.
        engine_kwargs["connect_args"] = {"timeout": 30}
        if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)  # a fresh NEURONS_HOME
    # Heartbeats and the retry callback are marked experimental since Optuna 2.8; they are
    # what makes sessions resumable, so the warnings are expected and not passed on.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for attempt in range(3):
            try:
                return RDBStorage(
                    database_url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                        max_retry=max_retry
                    ),
                )
            except (IntegrityError, OperationalError) as error:
                # Two processes (a session's runner, a worker, a status read) creating Optuna's
                # tables at once: one stamps alembic_version first, and the other fails on the
                # stamp (IntegrityError) or on a table the first just made ("table
                # alembic_version already exists"); made by then, they are found next time.
                raced = isinstance(error, IntegrityError) or "already exists" in str(error)
                if not raced or attempt == 2:
                    raise
                time.sleep(0.5)
        raise AssertionError("unreachable")
