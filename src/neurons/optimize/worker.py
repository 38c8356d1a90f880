"""More workers for a running session: ``neurons optimize worker SESSION_ID``.

Optuna's own distributed mode: any process that reaches the session's database (SQLite on a
shared disk, or PostgreSQL) loads the session's study from Optuna's tables there and runs its
trials on its own node or nodes, while the session's runner (worker ``main``) and any other
workers do the same. Nothing else is shared: each worker's sampler reads every finished trial
from the database before it draws (its seed offset by the worker and node, so two workers
with one session seed do not draw the same configurations), and the trial budget is claimed
trial by trial (:mod:`neurons.optimize.budget`), so the session runs exactly
``max_iterations`` trials whoever runs them. Each trial records its ``worker`` and ``node``.

A worker runs one trial at a time per node (one thread each, each with its own
:class:`optuna.Study`: Optuna refuses two ``optimize`` calls on one study object) and stops
when:

- the budget is taken (every slot finished or running somewhere): ``budget``;
- the session's time is up (``timeout_minutes`` less what it had run when the worker
  joined): ``timeout``, or its grid is exhausted: ``grid``;
- the session is no longer running (cancelled, failed, completed: read every ``poll_s``): its
  trial stops after the current prompt as ``interrupted`` and runs again when the session
  resumes;
- three trials in a row failed on one node (that node's lane stops, with the error);
- it is interrupted (Ctrl-C): its trial stops after the current prompt and is queued again
  at once, so another worker runs it. A worker *killed* mid-trial leaves the trial running
  until Optuna sees its heartbeat stale (``optuna_storage``'s grace period): the trial is
  failed and queued again by Optuna, and does not count.

The workers' nodes should be alike (the same hardware): a trial's speed is measured where it
ran, and scores compare trials (and the baseline, which whichever worker asks first runs).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from neurons.errors import InvalidRequestError, SessionStateError
from neurons.jobs import StopReason, StopSignal
from neurons.optimize.budget import MAIN_WORKER, SURPLUS, slots_left, worker_of
from neurons.optimize.results import finished_count
from neurons.optimize.runner import (
    MAX_CONSECUTIVE_FAILURES,
    Lane,
    OptimizationKind,
    grid_exhausted,
    interrupt_trial,
    retry_attrs,
    run_trials,
)
from neurons.optimize.sessions import SessionConfig
from neurons.optimize.strategies import make_pruner, optuna_storage
from neurons.store import SessionRecord

__all__ = ["WorkerReport", "WorkerTrial", "default_worker_id", "run_worker"]

STUDY_WAIT_S = 30.0  # a session just started creates its study after picking its node


@dataclass(frozen=True)
class WorkerTrial:
    """One trial this worker ran, as its ``progress`` hook is told."""

    trial: int
    node: str
    state: str
    finished: int  # the session's trials finished so far, by every worker
    total: int

    def __str__(self) -> str:
        return f"trial {self.trial} on {self.node}: {self.state} ({self.finished}/{self.total})"


@dataclass
class WorkerReport:
    """What a worker did: its trials, and why it stopped (``ended``: ``budget``,
    ``timeout``, ``grid``, ``failures``, ``shutdown`` or ``session <status>``)."""

    session_id: str
    worker: str
    nodes: list[str]
    ended: str
    trials: list[WorkerTrial] = field(default_factory=list)
    error: str | None = None

    def __str__(self) -> str:
        return (
            f"worker {self.worker} ran {len(self.trials)} trial(s) of session "
            f"{self.session_id} on {', '.join(self.nodes) or '-'}; ended: {self.ended}"
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["trials"] = [{"trial": t.trial, "node": t.node, "state": t.state} for t in self.trials]
        return data


def default_worker_id() -> str:
    """``host-pid``: unique while the process lives (two live workers must not share an
    id: on joining, a worker fails the trials its id left running)."""
    return f"{socket.gethostname()}-{os.getpid()}"


async def run_worker(
    kind: OptimizationKind,
    session_id: str,
    *,
    nodes: Sequence[str] | None = None,
    worker: str | None = None,
    progress: Callable[[WorkerTrial], None] | None = None,
    poll_s: float = 1.0,
) -> WorkerReport:
    """Run trials of the running session ``session_id`` here on ``nodes`` (default: the
    session's node, or the network's pick) until it needs no more (see the module
    docstring). A completed session answers at once (``ended`` says so); a pending, failed
    or cancelled one is refused (409): a worker joins a session that runs."""
    name = worker or default_worker_id()
    if name == MAIN_WORKER:
        raise InvalidRequestError(f"'{MAIN_WORKER}' is the session's own runner: pick another id")
    record = await asyncio.to_thread(kind.store.optimization.get, session_id)
    if record.status == "completed":
        return WorkerReport(record.session_id, name, [], "session completed")
    _check_running(record)
    config = SessionConfig.from_dict(record.config)
    lanes: list[Lane] = []
    for node in list(dict.fromkeys(nodes)) if nodes else [config.node]:
        lane = await kind.lane(config, node)
        if all(lane.view.name != other.view.name for other in lanes):
            lanes.append(lane)
    report = WorkerReport(record.session_id, name, [lane.view.name for lane in lanes], "")
    storage = optuna_storage(kind.settings.resolved_database_url)  # thread-safe: shared
    await _wait_for_study(kind, record, storage)
    await asyncio.to_thread(_requeue_own, record, storage, name)

    stop = StopSignal()
    watcher = asyncio.create_task(_watch(kind, record.session_id, stop, poll_s))
    deadline = time.monotonic() + config.timeout_minutes * 60 - record.elapsed_s
    loop = asyncio.get_running_loop()

    def one_lane(lane: Lane) -> tuple[str, str | None]:
        return _run_lane(
            kind, record, storage, config, lane, name, stop, loop, deadline, report, progress
        )

    # Threads of their own: a lane holds its thread for the whole run, and its evaluations
    # need the loop's default executor free.
    pool = ThreadPoolExecutor(max_workers=len(lanes), thread_name_prefix="optimize-lane")
    runs = [loop.run_in_executor(pool, one_lane, lane) for lane in lanes]
    try:
        # Shielded: a Ctrl-C (this task cancelled) or one lane's error must not leave the
        # other lanes' threads waiting on a loop that is gone; they stop after their current
        # prompt, are awaited here, and the trials they interrupted are queued again.
        ends = await asyncio.shield(asyncio.gather(*runs))
    except BaseException:
        stop.stop(StopReason.SHUTDOWN)
        await asyncio.gather(*runs, return_exceptions=True)
        await asyncio.to_thread(_requeue_interrupted, kind, record, storage, name)
        raise
    finally:
        watcher.cancel()
        pool.shutdown(wait=False)
    report.ended = (
        ends[0][0]
        if len({end for end, _ in ends}) == 1
        else ", ".join(
            f"{lane.view.name}: {end}" for lane, (end, _) in zip(lanes, ends, strict=True)
        )
    )
    errors = [error for _, error in ends if error]
    report.error = "; ".join(errors) if errors else None
    return report


def _check_running(record: SessionRecord) -> None:
    if record.status != "running":
        raise SessionStateError(
            f"session {record.session_id} is {record.status}: a worker joins a running session"
            + (
                f" (start it with: neurons optimize start {record.session_id})"
                if record.status in ("pending", "failed", "cancelled")
                else ""
            )
        )


def _load(record: SessionRecord, storage: RDBStorage) -> optuna.Study:
    return optuna.load_study(study_name=record.study_name, storage=storage)


async def _wait_for_study(
    kind: OptimizationKind, record: SessionRecord, storage: RDBStorage
) -> None:
    """A session just started creates its study once its runner has picked its node."""
    deadline = time.monotonic() + STUDY_WAIT_S
    while True:
        try:
            await asyncio.to_thread(_load, record, storage)
            return
        except KeyError:
            if time.monotonic() >= deadline:
                raise SessionStateError(
                    f"session {record.session_id} has no study yet after {STUDY_WAIT_S:.0f} s"
                ) from None
        current = await asyncio.to_thread(kind.store.optimization.get, record.session_id)
        _check_running(current)
        await asyncio.sleep(0.2)


async def _watch(kind: OptimizationKind, session_id: str, stop: StopSignal, poll_s: float) -> None:
    """Stop the worker once the session is no longer running (whoever moved it)."""
    while not stop.is_set():
        await asyncio.sleep(poll_s)
        status = (await asyncio.to_thread(kind.store.optimization.get, session_id)).status
        if status != "running":
            stop.stop(f"session {status}")


def _run_lane(
    kind: OptimizationKind,
    record: SessionRecord,
    storage: RDBStorage,
    config: SessionConfig,
    lane: Lane,
    worker: str,
    stop: StopSignal,
    loop: asyncio.AbstractEventLoop,
    deadline: float,
    report: WorkerReport,
    progress: Callable[[WorkerTrial], None] | None,
) -> tuple[str, str | None]:
    """One node's trials, in a thread of its own, until the worker should stop; why it
    stopped, and the error when its trials kept failing."""
    budget = config.max_iterations
    study = _load(record, storage)
    study.sampler = kind.sampler(
        config, len(study.get_trials(deepcopy=False)), f"{worker}:{lane.view.name}"
    )
    study.pruner = make_pruner(config.strategy, len(config.cases), objective=config.objective)
    errors: list[str] = []
    failures: list[str] = []

    def after_trial(study: optuna.Study, trial: FrozenTrial) -> bool:
        if trial.user_attrs.get(SURPLUS):
            return True  # never ran: the budget is taken
        if trial.state == TrialState.FAIL:
            failures.append(errors[-1] if errors else "trial failed")
        elif trial.state == TrialState.COMPLETE:
            failures.clear()
        done = WorkerTrial(
            trial.number, lane.view.name, trial.state.name.lower(), finished_count(study), budget
        )
        report.trials.append(done)  # list.append: safe from the lanes' threads
        if progress is not None:
            progress(done)
        return (
            stop.is_set()
            or len(failures) >= MAX_CONSECUTIVE_FAILURES
            or slots_left(study, budget) <= 0
        )

    objective = kind.objective(config, lane, stop, worker, loop, errors)
    while not stop.is_set():
        if len(failures) >= MAX_CONSECUTIVE_FAILURES:
            message = f"{len(failures)} trials failed in a row on {lane.view.name}"
            return "failures", f"{message}; last: {failures[-1]}"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "timeout", None
        left = slots_left(study, budget)
        if left <= 0:
            return "budget", None
        if config.strategy == "grid_search" and grid_exhausted(study, config):
            return "grid", None
        if not run_trials(study, objective, left, remaining, after_trial):
            return "grid", None
    return stop.reason, None


def _requeue_own(record: SessionRecord, storage: RDBStorage, worker: str) -> None:
    """Trials this worker's id left running (it died, and is back before their heartbeat
    went stale): failed as interrupted and queued again."""
    study = _load(record, storage)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if worker_of(trial) == worker and interrupt_trial(storage, trial):
            study.enqueue_trial(dict(trial.params), user_attrs=retry_attrs(trial))


def _requeue_interrupted(
    kind: OptimizationKind, record: SessionRecord, storage: RDBStorage, worker: str
) -> None:
    """After a Ctrl-C: the trials it interrupted queued again for the other workers, while
    the session runs (a session that stopped queues them itself when it resumes)."""
    current = kind.store.optimization.get(record.session_id)
    if current.status != "running":
        return
    study = _load(record, storage)
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    for trial in trials:
        mine = worker_of(trial) == worker and trial.user_attrs.get("interrupted")
        if mine and trial.number not in retried:
            study.enqueue_trial(dict(trial.params), user_attrs=retry_attrs(trial))
