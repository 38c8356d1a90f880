"""Reading a session's Optuna study back: its trials, its best result, its convergence.

Every finished trial carries user attributes written by the runner: ``metrics`` (a
:class:`~neurons.optimize.objectives.TrialMetrics` as a dict), ``node``, ``worker`` (the
session's runner ``main`` or a ``neurons optimize worker``), ``cases`` (per-prompt scores and
timings), ``baseline`` (True for the trial run with Ollama's defaults) and, for a pruned
trial, ``pruned_reason``. Scores are computed here, on reading, from the metrics and the
baseline trial, so the definition in :mod:`~neurons.optimize.objectives` is the only one.

The **best result** of a single-objective session is Optuna's best trial. For
``balance_quality_speed`` it is the knee point of the Pareto front of (quality, tokens/s)
(:func:`~neurons.optimize.objectives.knee_point`); the whole front is reported beside it.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from neurons.optimize.budget import FINISHED, MAIN_WORKER, counted, stale_retried, worker_of
from neurons.optimize.objectives import (
    TrialMetrics,
    is_multi_objective,
    knee_point,
    overall_score,
    pareto_front,
)

__all__ = [
    "FINISHED",
    "baseline_metrics",
    "best_result",
    "convergence",
    "finished_count",
    "metrics_of",
    "trial_rows",
    "worker_rows",
]


def metrics_of(trial: FrozenTrial) -> TrialMetrics | None:
    data = trial.user_attrs.get("metrics")
    if not isinstance(data, dict):
        return None
    try:
        return TrialMetrics(**data)
    except (TypeError, ValueError):
        return None


def _complete(study: optuna.Study) -> list[FrozenTrial]:
    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if metrics_of(t) is not None
    ]


def finished_count(study: optuna.Study) -> int:
    """Trials that count towards the session's iterations: complete, pruned or failed, but
    not those interrupted by a stop or a crash (they run again), nor surplus ones
    (:mod:`~neurons.optimize.budget`)."""
    return len(counted(study.get_trials(deepcopy=False)))


def baseline_metrics(study: optuna.Study) -> TrialMetrics | None:
    """The metrics of the trial run with Ollama's defaults, if it completed."""
    for trial in _complete(study):
        if trial.user_attrs.get("baseline"):
            return metrics_of(trial)
    return None


def _describe(trial: FrozenTrial, objective: str, baseline: TrialMetrics | None) -> dict[str, Any]:
    metrics = metrics_of(trial)
    assert metrics is not None
    return {
        "trial": trial.number,
        "overall_score": round(overall_score(objective, metrics, baseline), 4),
        "parameters": dict(trial.params),
        "metrics": asdict(metrics),
        "node": trial.user_attrs.get("node"),
        "baseline": bool(trial.user_attrs.get("baseline")),
    }


def best_result(study: optuna.Study, objective: str) -> dict[str, Any] | None:
    """The best trial so far, described (None before any trial completed); see the module
    docstring for what "best" means per objective."""
    complete = _complete(study)
    if not complete:
        return None
    baseline = baseline_metrics(study)
    if is_multi_objective(objective):
        points = [(t.values[0], t.values[1]) for t in complete]
        front = [complete[i] for i in pareto_front(points)]
        knee = front[knee_point([(t.values[0], t.values[1]) for t in front])]
        best = _describe(knee, objective, baseline)
        best["pareto_front"] = [_describe(t, objective, baseline) for t in front]
        return best
    # Ties go to the earlier trial, as Optuna's own best_trial does.
    sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
    chosen = max(complete, key=lambda t: (sign * t.values[0], -t.number))
    return _describe(chosen, objective, baseline)


def trial_rows(study: optuna.Study, objective: str) -> list[dict[str, Any]]:
    """Every trial in order: state, parameters, metrics and score where it completed."""
    baseline = baseline_metrics(study)
    trials = study.get_trials(deepcopy=False)
    retried = stale_retried(trials)
    rows = []
    for trial in trials:
        row: dict[str, Any] = {
            "trial": trial.number,
            "state": trial.state.name.lower(),
            "parameters": dict(trial.params),
            "node": trial.user_attrs.get("node"),
            "worker": None if trial.state == TrialState.WAITING else worker_of(trial),
            "baseline": bool(trial.user_attrs.get("baseline")),
        }
        metrics = metrics_of(trial)
        if metrics is not None:
            row["metrics"] = asdict(metrics)
            row["overall_score"] = round(overall_score(objective, metrics, baseline), 4)
        if "pruned_reason" in trial.user_attrs:
            row["pruned_reason"] = trial.user_attrs["pruned_reason"]
        if trial.user_attrs.get("interrupted"):
            row["pruned_reason"] = "interrupted (runs again when the session resumes)"
        if trial.state == TrialState.FAIL and trial.number in retried:
            row["pruned_reason"] = "its worker stopped answering (no heartbeat): run again"
        if trial.datetime_complete and trial.datetime_start:
            row["duration_s"] = round(
                (trial.datetime_complete - trial.datetime_start).total_seconds(), 3
            )
        rows.append(row)
    return rows


def worker_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """Trials by worker, the session's runner (``main``) first: the trials each one counts
    towards the session (``finished``), by state, the ones it runs now, and its nodes."""
    trials = study.get_trials(deepcopy=False)
    kept = {t.number for t in counted(trials)}
    rows: dict[str, dict[str, Any]] = {}
    for trial in trials:
        if trial.state == TrialState.WAITING:
            continue
        name = worker_of(trial)
        row = rows.setdefault(
            name,
            {"worker": name, "nodes": [], "finished": 0, "complete": 0, "pruned": 0,
             "failed": 0, "running": 0},
        )  # fmt: skip
        node = trial.user_attrs.get("node")
        if node and node not in row["nodes"]:
            row["nodes"].append(node)
        if trial.state == TrialState.RUNNING:
            row["running"] += 1
        elif trial.number in kept:
            row["finished"] += 1
            state = "failed" if trial.state == TrialState.FAIL else trial.state.name.lower()
            row[state] += 1
    return sorted(rows.values(), key=lambda r: (r["worker"] != MAIN_WORKER, r["worker"]))


def convergence(study: optuna.Study, objective: str) -> list[dict[str, Any]]:
    """Per completed trial: its overall_score and the best score so far (the seed's
    "convergence history"; what the PNG plot draws)."""
    baseline = baseline_metrics(study)
    history: list[dict[str, Any]] = []
    best = float("-inf")
    for trial in _complete(study):
        metrics = metrics_of(trial)
        assert metrics is not None
        value = overall_score(objective, metrics, baseline)
        best = max(best, value)
        history.append(
            {"trial": trial.number, "overall_score": round(value, 4), "best": round(best, 4)}
        )
    return history
