"""A session's trial budget, shared by every worker that runs its trials.

A session runs ``max_iterations`` trials in all, whoever runs them: its own runner (worker
:data:`MAIN_WORKER`) and any ``neurons optimize worker`` processes that joined it, each
asking trials from the same Optuna study in the shared database (Optuna's distributed mode).
Optuna's own ``MaxTrialsCallback`` checks the count only after a trial, so two workers that
finish together both start another one and the study overruns its budget by up to one trial
per extra worker. Here a trial **claims** its place when it starts instead:

- a trial *holds a slot* unless it was interrupted (a stop: it runs again), is
  :data:`SURPLUS`, or failed for want of a heartbeat and was queued again by Optuna's retry
  callback (the retry holds its slot). Waiting (enqueued) trials hold one too: every worker's
  ``ask`` runs them before it creates a new trial;
- trial numbers are given out one at a time by the storage, so "the slots held by trials
  numbered below mine" is the same set for every worker that looks. A trial with ``budget``
  of them ahead is surplus: it is pruned before it runs, with no parameters, and its worker
  stops. Whatever trial is numbered last among the kept ones saw all the others ahead of it,
  so the kept trials never exceed the budget; surplus trials are rare (two workers asking
  at the same moment for the last slot) and shown as such.

Workers stop asking once :func:`slots_left` is 0; the session's runner then waits for the
trials still running elsewhere before it completes the session.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

__all__ = [
    "FINISHED",
    "MAIN_WORKER",
    "SURPLUS",
    "WORKER",
    "claim",
    "counted",
    "running",
    "slots_left",
    "stale_retried",
    "worker_of",
]

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
WORKER = "worker"  # the user attribute naming who ran a trial
MAIN_WORKER = "main"  # the session's own runner (and every trial from before workers)
SURPLUS = "surplus"  # the user attribute of a trial pruned for want of a slot


def worker_of(trial: FrozenTrial) -> str:
    return str(trial.user_attrs.get(WORKER) or MAIN_WORKER)


def stale_retried(trials: Iterable[FrozenTrial]) -> set[int]:
    """The trials Optuna failed for a stale heartbeat and queued again (their numbers)."""
    return {n for t in trials for n in t.system_attrs.get("retry_history", ())}


def _holds_slot(trial: FrozenTrial, retried: set[int]) -> bool:
    attrs = trial.user_attrs
    if attrs.get("interrupted") or attrs.get(SURPLUS):
        return False
    return not (trial.state == TrialState.FAIL and trial.number in retried)


def counted(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The finished trials that count towards the session's iterations."""
    retried = stale_retried(trials)
    return [t for t in trials if t.state in FINISHED and _holds_slot(t, retried)]


def running(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The running trials that hold a slot (being evaluated by some worker now)."""
    retried = stale_retried(trials)
    return [t for t in trials if t.state == TrialState.RUNNING and _holds_slot(t, retried)]


def slots_left(study: optuna.Study, budget: int) -> int:
    """Trials still to start for the session to reach ``budget``: those finished and running
    are taken; a waiting one is not (whoever asks next runs it)."""
    trials = study.get_trials(deepcopy=False)
    return budget - len(counted(trials)) - len(running(trials))


def claim(study: optuna.Study, number: int, budget: int) -> bool:
    """Whether trial ``number`` (started, not yet evaluated) fits in the budget; see the
    module docstring for why this never admits more than ``budget`` trials."""
    trials = study.get_trials(deepcopy=False)
    retried = stale_retried(trials)
    ahead = sum(1 for t in trials if t.number < number and _holds_slot(t, retried))
    return ahead < budget
