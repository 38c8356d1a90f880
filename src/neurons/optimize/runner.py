"""Running a session: an Optuna study whose trials are evaluations on a node of the network.

:class:`OptimizationKind` is optimization's kind of background work for the jobs runtime
(:mod:`neurons.jobs`). The runtime takes the session's lease, renews it, notices a cancel or an
adoption from any process and then sets the run's :class:`~neurons.jobs.StopSignal`;
``execute`` runs the session in this process. The order of things:

1. Pick the **node**: the configured one, else the network's routing policy's first choice
   among healthy nodes holding the model. It is kept for the whole session so trials compare.
2. Load or create the **study** in our database (``optuna_storage``). Trials a dead runner
   left ``RUNNING`` are failed and queued again with the same parameters. A new study first
   runs the **baseline**: Ollama's defaults, which every ``overall_score`` is relative to.
3. ``study.optimize`` runs in a worker thread (Optuna is synchronous); each trial's evaluation
   runs on the event loop. Before a trial runs, its memory estimate is checked against the
   node's memory (``hardware.memory``); a configuration that does not fit is **pruned** without
   running. Under ``hyperband`` the trial reports its running score after every prompt (all
   its ``samples``), so Hyperband's budget is the number of prompts. After each trial the
   session's progress (trials finished, the best so far, running seconds) is written with a
   renewal of the lease. The stop signal is checked before every prompt: a cancel, a shutdown
   or a lost lease stops the run after the current prompt (that trial runs again on resume)
   and ``execute`` raises :class:`~neurons.jobs.JobStopped`.
4. The session ends ``completed`` when it has run ``max_iterations`` trials, its time is up
   (``timeout_minutes``, summed over restarts) or the grid is exhausted (``execute`` returns
   the final progress); ``failed`` after three consecutive failed trials (a node gone, a model
   missing), with the last error, or on the first error outside a trial.

This runner is the session's worker ``main``. ``neurons optimize worker``
(:mod:`neurons.optimize.worker`) runs more workers, in any process that reaches the database,
through the same :class:`Lane` and :meth:`OptimizationKind.objective`: all of them ask trials
from the one study and share its budget (:mod:`neurons.optimize.budget`), and ``main``
completes the session once the budget is met, after the trials other workers still run.

Trials send a fixed ``seed`` (:data:`TRIAL_SEED`) with their options, so two configurations
differ by their options and not by the luck of the sampler; with ``samples`` above 1 each
prompt runs that many times, with seeds ``TRIAL_SEED``, ``TRIAL_SEED + 1``, ..., and the
metrics are means over every run (a configuration judged by one draw is judged by its luck).
The seed is not part of what ``apply`` writes.
"""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
import zlib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import optuna
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import BaseStorage, fail_stale_trials
from optuna.trial import FrozenTrial, Trial, TrialState

from neurons.config import Settings
from neurons.errors import (
    ModelNotFoundError,
    NeuronsError,
    NodeNotFoundError,
    NoNodeAvailableError,
    SessionNotFoundError,
    SessionStateError,
)
from neurons.hardware.gguf import ModelProfile, read_model_profile
from neurons.hardware.inventory import HardwareInventory
from neurons.hardware.locate import locate_gguf
from neurons.hardware.memory import EstimateOptions, estimate_memory, memory_budget
from neurons.jobs import JobKind, JobStopped, LeaseTable, StopSignal
from neurons.library.catalog import load_catalog
from neurons.library.service import LibraryService
from neurons.modelfile.tuning import DEFAULT_HEADROOM
from neurons.network.manager import NetworkManager
from neurons.network.routing import BalancedPolicy, NodeView, RouteRequest
from neurons.ollama.names import canonical_name
from neurons.optimize.budget import MAIN_WORKER, SURPLUS, WORKER, claim, slots_left, worker_of
from neurons.optimize.budget import running as running_trials
from neurons.optimize.objectives import directions, is_multi_objective, values
from neurons.optimize.results import FINISHED, best_result, finished_count
from neurons.optimize.scoring import Embedder
from neurons.optimize.sessions import SessionConfig
from neurons.optimize.strategies import (
    grid_points_for_budget,
    make_pruner,
    make_sampler,
    optuna_storage,
)
from neurons.optimize.trials import CaseResult, TrialEvaluator, aggregate
from neurons.store import SessionRecord, Store
from neurons.store.optimization import progress_columns, sessions_table

__all__ = [
    "MAX_CONSECUTIVE_FAILURES",
    "TRIAL_SEED",
    "FitCheck",
    "Lane",
    "OptimizationKind",
    "Progress",
    "grid_exhausted",
    "interrupt_trial",
    "retry_attrs",
    "run_trials",
    "session_leases",
]

log = logging.getLogger(__name__)

TRIAL_SEED = 42
MAX_CONSECUTIVE_FAILURES = 3
POLL_S = 0.5  # how often main looks at the trials other workers still run


@dataclass(frozen=True)
class Progress:
    """What :class:`OptimizationKind`'s ``progress`` hook is told after each trial."""

    session_id: str
    finished: int
    total: int
    trial: int
    state: str
    best: dict[str, Any] | None
    node: str


@dataclass(frozen=True)
class FitCheck:
    """Whether a configuration's memory estimate fits the node (80% headroom, as the
    Modelfile tuner uses); built once per session, applied to every trial."""

    profile: ModelProfile
    inventory: HardwareInventory
    num_parallel: int = 1
    headroom: float = DEFAULT_HEADROOM

    def problem(self, params: dict[str, Any]) -> str | None:
        """Why ``params`` do not fit, or None when they do."""
        options = EstimateOptions(
            num_ctx=int(params.get("num_ctx", 4096)),
            num_batch=int(params.get("num_batch", 512)),
            num_parallel=self.num_parallel,
        )
        estimate = estimate_memory(self.profile, options, self.inventory.gpus)
        needed, available, where = memory_budget(estimate, self.inventory)
        if needed <= available * self.headroom:
            return None
        return (
            f"needs {needed / 2**30:.2f} GiB at num_ctx {options.num_ctx}, more than "
            f"{self.headroom:.0%} of the node's {available / 2**30:.2f} GiB {where}"
        )

    def estimate_bytes(self, params: dict[str, Any]) -> int:
        options = EstimateOptions(
            num_ctx=int(params.get("num_ctx", 4096)),
            num_batch=int(params.get("num_batch", 512)),
            num_parallel=self.num_parallel,
        )
        return estimate_memory(self.profile, options, self.inventory.gpus).total_bytes


@dataclass(frozen=True)
class Lane:
    """Where one worker runs trials: a node, the evaluator that sends them there, and the
    node's memory facts for pruning what does not fit (None: no pruning)."""

    view: NodeView
    evaluator: TrialEvaluator
    fit: FitCheck | None


class _Stop(Exception):
    """The run must end now (cancelled, lease lost, shutting down)."""


class _TrialsFailed(Exception):
    """Too many trials failed in a row: the session fails with this message."""


def session_leases(store: Store) -> LeaseTable:
    """The lifecycle columns of the sessions' table, as the jobs runtime moves them."""
    return LeaseTable(
        store.engine,
        sessions_table,
        what="session",
        not_found=SessionNotFoundError,
        refused=SessionStateError,
    )


class OptimizationKind(JobKind):
    """Optimization sessions as a kind of background work (see the module docstring).

    ``progress`` is called from Optuna's thread after every trial (a benchmark stops a session
    once it is good enough; tests watch the trials go by)."""

    name: ClassVar[str] = "optimization"

    def __init__(
        self,
        store: Store,
        settings: Settings,
        network: NetworkManager,
        *,
        embedder: Embedder | None = None,
        progress: Callable[[Progress], None] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.network = network
        self.embedder = embedder
        self.progress = progress
        self.leases = session_leases(store)

    # -- the node ----------------------------------------------------------------------------

    async def lane(self, config: SessionConfig, node: str | None) -> Lane:
        """Trials of ``config`` on ``node`` (None: the network's pick, see the module
        docstring); the node must be healthy and hold the model."""
        view = await self._node(config, node)
        fit = await self._fit_check(config, view)
        evaluator = TrialEvaluator(
            self.network.http,
            view.url,
            config.model_name,
            node=view.name,
            embedder=self.embedder if config.similarity else None,
        )
        return Lane(view, evaluator, fit)

    async def _node(self, config: SessionConfig, node: str | None) -> NodeView:
        monitor = self.network.monitor
        if not monitor.views or all(v.version is None for v in monitor.views.values()):
            await monitor.check_all()
        if node is not None:
            view = monitor.find(node)
            if view is None:
                raise NodeNotFoundError(f"no node named '{node}'")
            if not (view.state.routable and view.breaker.available()):
                raise NoNodeAvailableError(f"node '{view.name}' is {view.state}")
            if not view.has(config.model_name):
                raise ModelNotFoundError(f"node '{view.name}' has no model {config.model_name}")
            return view
        eligible = monitor.eligible(config.model_name)
        if not eligible:
            raise NoNodeAvailableError(
                f"no healthy node holds {config.model_name}; pull it first "
                f"(neurons models pull {config.model_name})"
            )
        return BalancedPolicy().order(RouteRequest(config.model_name), eligible)[0]

    async def _fit_check(self, config: SessionConfig, view: NodeView) -> FitCheck | None:
        """Memory facts for pruning, or None (no pruning) when the model's shape or the
        node's memory is unknown here, e.g. a remote Ollama with a model we cannot read."""
        profile = await asyncio.to_thread(self._profile, config.model_name)
        if profile is None:
            return None
        record = await asyncio.to_thread(self.store.nodes.get, view.name)
        library = LibraryService(self.store, self.settings, self.network.http)
        try:
            inventory = await library.node_inventory(record)
        except NeuronsError as exc:
            log.info("no memory facts for node %s (%s); fit pruning is off", view.name, exc)
            return None
        # An embedded neuron gives a model fewer slots when num_ctx x slots would not fit, so
        # a configuration fits there when one slot does; other nodes load all of theirs.
        slots = 1 if view.kind == "embedded" else view.slots
        return FitCheck(profile, inventory, num_parallel=slots)

    def _profile(self, model: str) -> ModelProfile | None:
        try:
            path = locate_gguf(
                model, self.settings.resolved_models_dir, self.settings.home / "cache"
            )
            return read_model_profile(path)
        except NeuronsError:
            pass
        wanted = canonical_name(model)
        for entry in load_catalog():
            if canonical_name(entry.name) == wanted:
                return entry.profile()
        return None

    # -- the study ---------------------------------------------------------------------------

    def _study(self, record: SessionRecord, config: SessionConfig) -> optuna.Study:
        storage = optuna_storage(self.settings.resolved_database_url)
        study = optuna.create_study(
            study_name=record.study_name,
            storage=storage,
            sampler=self.sampler(config, 0),
            pruner=make_pruner(config.strategy, len(config.cases), objective=config.objective),
            directions=directions(config.objective),
            load_if_exists=True,
        )
        trials = study.get_trials(deepcopy=False)
        if trials:
            study.sampler = self.sampler(config, len(trials))
        retried = {t.user_attrs.get("retry_of") for t in trials}
        for trial in trials:
            if trial.state == TrialState.RUNNING and worker_of(trial) == MAIN_WORKER:
                # Its runner died mid-trial: fail it and run the same configuration again.
                # (Another worker's running trial is its own; its heartbeat tells.)
                if not interrupt_trial(storage, trial):
                    continue
            elif not trial.user_attrs.get("interrupted") or trial.number in retried:
                continue
            study.enqueue_trial(dict(trial.params), user_attrs=retry_attrs(trial))
        if not trials and config.baseline:
            study.enqueue_trial(config.space.baseline(), user_attrs={"baseline": True})
        return study

    def sampler(
        self, config: SessionConfig, trials: int, salt: str = ""
    ) -> optuna.samplers.BaseSampler:
        """The session's sampler, for a study with ``trials`` so far, in the worker and on the
        node ``salt`` names ("" for main). A resumed run with the same seed would replay the
        draws made before the restart, and two workers with one seed would draw the same
        configurations: the seed is offset by both."""
        seed = config.seed
        if seed is not None:
            seed = (seed + trials + (zlib.crc32(salt.encode()) if salt else 0)) % 2**31
        return make_sampler(
            config.strategy, config.space, config.objective, seed=seed,
            budget=config.max_iterations,
        )  # fmt: skip

    # -- one trial ---------------------------------------------------------------------------

    async def _evaluate(
        self,
        trial: Trial,
        params: dict[str, Any],
        config: SessionConfig,
        evaluator: TrialEvaluator,
        fit: FitCheck | None,
        stop: StopSignal,
    ) -> float | tuple[float, float]:
        trial.set_user_attr("node", evaluator.node)
        if fit is not None:
            problem = fit.problem(params)
            if problem is not None:
                trial.set_user_attr("pruned_reason", f"does not fit: {problem}")
                raise optuna.TrialPruned(problem)
        report = config.strategy == "hyperband" and not is_multi_objective(config.objective)
        results: list[CaseResult] = []
        memory = 0
        for step, case in enumerate(config.cases, start=1):
            for sample in range(config.samples):
                if stop.is_set():
                    # Not a verdict on the configuration: it runs again when the session
                    # resumes.
                    trial.set_user_attr("interrupted", True)
                    raise _Stop()
                options = {**params, "seed": TRIAL_SEED + sample}
                results.append(await evaluator.run_case(case, options))
            if step == 1:
                loaded = await evaluator.loaded_size()
                estimate = fit.estimate_bytes(params) if fit is not None else 0
                memory = loaded if loaded is not None else estimate
            if report:
                value = values(config.objective, aggregate(results, memory))
                assert isinstance(value, float)
                trial.report(value, step)
                if trial.should_prune():
                    trial.set_user_attr("pruned_reason", f"hyperband after {step} prompts")
                    trial.set_user_attr("metrics", asdict(aggregate(results, memory)))
                    raise optuna.TrialPruned(f"pruned by hyperband after {step} prompts")
        metrics = aggregate(results, memory)
        trial.set_user_attr("metrics", asdict(metrics))
        trial.set_user_attr("cases", [r.to_dict() for r in results])
        return values(config.objective, metrics)

    def objective(
        self,
        config: SessionConfig,
        lane: Lane,
        stop: StopSignal,
        worker: str,
        loop: asyncio.AbstractEventLoop,
        errors: list[str],
    ) -> Callable[[Trial], float | tuple[float, float]]:
        """Optuna's objective for ``worker``'s trials on ``lane``, run in ``study.optimize``'s
        thread with the evaluation on ``loop``: it claims the trial's place in the session's
        budget first (a surplus trial is pruned unrun and stops the worker), then evaluates.
        A stop prunes the trial as ``interrupted`` and stops the study; a node error is
        appended to ``errors`` and fails the trial."""

        def objective(trial: Trial) -> float | tuple[float, float]:
            trial.set_user_attr(WORKER, worker)
            if not claim(trial.study, trial.number, config.max_iterations):
                trial.set_user_attr(SURPLUS, True)
                trial.set_user_attr(
                    "pruned_reason", "surplus: every trial of the session was taken already"
                )
                trial.study.stop()
                raise optuna.TrialPruned("the session's budget is taken")
            # Sample here, in study.optimize's thread: Optuna caches a study's trials per thread
            # and refreshes the cache only in the thread that asks for a trial, so a sampler run
            # on the event loop saw the study as it was at the first trial, and TPE, CMA-ES and
            # NSGA-II never left their random start.
            params = config.space.suggest(trial)
            future = asyncio.run_coroutine_threadsafe(
                self._evaluate(trial, params, config, lane.evaluator, lane.fit, stop), loop
            )
            try:
                result = future.result()
            except _Stop:
                trial.study.stop()
                raise optuna.TrialPruned("session stopped") from None
            except NeuronsError as exc:
                self.network.monitor.report_failure(lane.view, str(exc))
                errors.append(str(exc))
                raise
            return result

        return objective

    # -- the run -----------------------------------------------------------------------------

    async def execute(self, job_id: str, stop: StopSignal, runner: str) -> Mapping[str, Any]:
        """Run the session until it ends (its final progress, for the completing move) or
        ``stop`` is set (:class:`JobStopped`); errors fail it."""
        record = await asyncio.to_thread(self.store.optimization.get, job_id)
        config = SessionConfig.from_dict(record.config)
        lane = await self.lane(config, config.node)
        study = await asyncio.to_thread(self._study, record, config)
        budget = config.max_iterations
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        failures: list[str] = []  # consecutive failed trials' errors
        errors: list[str] = []

        def elapsed() -> float:
            return record.elapsed_s + time.monotonic() - started

        def remaining_s() -> float:
            return config.timeout_minutes * 60 - elapsed()

        def renew(study: optuna.Study) -> tuple[int, dict[str, Any] | None]:
            """Progress (every worker's trials) written with a renewal of the lease; a
            refused renewal (cancelled, adopted elsewhere) sets the signal saying which."""
            best = best_result(study, config.objective)
            finished = finished_count(study)
            columns = progress_columns(current_iteration=finished, best=best, elapsed_s=elapsed())
            self.leases.renew(job_id, runner, columns, stop=stop)
            return finished, best

        def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
            if trial.user_attrs.get(SURPLUS):
                return True  # it never ran: not a verdict; the budget is taken
            if trial.state == TrialState.FAIL:
                failures.append(errors[-1] if errors else "trial failed")
            elif trial.state == TrialState.COMPLETE:
                failures.clear()
            finished, best = renew(study)
            if self.progress is not None:
                self.progress(
                    Progress(
                        job_id,
                        finished,
                        budget,
                        trial.number,
                        trial.state.name.lower(),
                        best,
                        lane.view.name,
                    )
                )
            return (
                stop.is_set()
                or len(failures) >= MAX_CONSECUTIVE_FAILURES
                or slots_left(study, budget) <= 0
            )

        objective = self.objective(config, lane, stop, MAIN_WORKER, loop, errors)
        while not stop.is_set() and len(failures) < MAX_CONSECUTIVE_FAILURES:
            if remaining_s() <= 0:
                break
            left = await asyncio.to_thread(slots_left, study, budget)
            if left > 0:
                if config.strategy == "grid_search" and await asyncio.to_thread(
                    grid_exhausted, study, config
                ):
                    break
                more = await asyncio.to_thread(
                    run_trials, study, objective, left, remaining_s(), after_trial
                )
                if not more:
                    break
                continue
            # Every slot is taken; those still running elsewhere count once they end. A
            # worker that died mid-trial is failed by its heartbeat, and Optuna queues the
            # trial again (a slot frees up, and this loop runs it).
            if not await asyncio.to_thread(self._others_running, study):
                break
            await asyncio.to_thread(renew, study)
            await stop.wait_async(POLL_S)
        if len(failures) >= MAX_CONSECUTIVE_FAILURES:
            raise _TrialsFailed(f"{len(failures)} trials failed in a row; last: {failures[-1]}")
        final = await asyncio.to_thread(
            lambda: (finished_count(study), best_result(study, config.objective))
        )
        if stop.is_set() and await asyncio.to_thread(
            self._stopped_early, study, config, final[0], elapsed()
        ):
            raise JobStopped(stop.reason)
        return progress_columns(current_iteration=final[0], best=final[1], elapsed_s=elapsed())

    @staticmethod
    def _others_running(study: optuna.Study) -> bool:
        """Whether a trial that holds a slot runs elsewhere, after failing stale ones."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            fail_stale_trials(study)
        return bool(running_trials(study.get_trials(deepcopy=False)))

    def _stopped_early(
        self, study: optuna.Study, config: SessionConfig, finished: int, elapsed_s: float
    ) -> bool:
        """True when the run ended before its trials, its time and its grid were spent."""
        if finished >= config.max_iterations:
            return False
        if elapsed_s >= config.timeout_minutes * 60 - 1:
            return False
        sampler_done = config.strategy == "grid_search" and grid_exhausted(study, config)
        return not sampler_done


def run_trials(
    study: optuna.Study,
    objective: Callable[[Trial], float | tuple[float, float]],
    n_trials: int,
    timeout: float,
    after_trial: Callable[[optuna.Study, FrozenTrial], bool],
) -> bool:
    """``study.optimize`` (node errors fail a trial, not the run) until ``after_trial`` says
    stop, ``n_trials`` ran or ``timeout`` passed: True then, the caller decides what next;
    False when the sampler stopped the study itself (``GridSampler``: its grid is
    exhausted), and there is nothing left to run."""
    ran, ours = 0, False
    started = time.monotonic()

    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        nonlocal ran, ours
        ran += 1
        if after_trial(study, trial):
            ours = True
            study.stop()

    study.optimize(
        objective,
        n_trials=n_trials,
        timeout=timeout,
        callbacks=[callback],
        catch=(NeuronsError,),
        gc_after_trial=False,
    )
    return ours or ran >= n_trials or time.monotonic() - started >= timeout


def retry_attrs(trial: FrozenTrial) -> dict[str, Any]:
    """The user attributes of an interrupted trial's retry (enqueued with its parameters)."""
    attrs: dict[str, Any] = {"retry_of": trial.number}
    if trial.user_attrs.get("baseline"):
        attrs["baseline"] = True
    return attrs


def interrupt_trial(storage: BaseStorage, trial: FrozenTrial) -> bool:
    """Fail a trial whose worker died mid-trial as ``interrupted`` (it does not count and
    runs again); False when it finished meanwhile (another worker found its heartbeat stale
    first, and Optuna queued it again)."""
    try:
        storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    except UpdateFinishedTrialError:
        return False
    return True


def grid_exhausted(study: optuna.Study, config: SessionConfig) -> bool:
    """Whether every point of the session's grid has been tried (by any worker)."""
    size = config.space.grid_size(grid_points_for_budget(config.space, config.max_iterations))
    finished = [t for t in study.get_trials(deepcopy=False, states=FINISHED)]
    skipped = ("baseline", "interrupted", "retry_of")
    counted = [t for t in finished if not any(k in t.user_attrs for k in skipped)]
    return len(counted) >= size
