"""Running a session: an Optuna study whose trials are evaluations on a node of the network.

:class:`SessionRunner` runs one session in this process until it completes, fails, is
cancelled, or this process stops. The order of things:

1. Take the session's **lease** (compare-and-set on its status, see ``store.optimization``)
   and keep it alive from a heartbeat task; losing it (the session was cancelled, or another
   process adopted it) stops the run after the current prompt.
2. Pick the **node**: the configured one, else the network's routing policy's first choice
   among healthy nodes holding the model. It is kept for the whole session so trials compare.
3. Load or create the **study** in our database (``optuna_storage``). Trials a dead runner
   left ``RUNNING`` are failed and queued again with the same parameters. A new study first
   runs the **baseline**: Ollama's defaults, which every ``overall_score`` is relative to.
4. ``study.optimize`` runs in a worker thread (Optuna is synchronous); each trial's evaluation
   runs on the event loop. Before a trial runs, its memory estimate is checked against the
   node's memory (``hardware.memory``); a configuration that does not fit is **pruned** without
   running. Under ``hyperband`` the trial reports its running score after every prompt (all
   its ``samples``), so Hyperband's budget is the number of prompts.
5. The session ends ``completed`` when it has run ``max_iterations`` trials, its time is up
   (``timeout_minutes``, summed over restarts) or the grid is exhausted; ``failed`` after
   three consecutive failed trials (a node gone, a model missing), with the error.

Trials send a fixed ``seed`` (:data:`TRIAL_SEED`) with their options, so two configurations
differ by their options and not by the luck of the sampler; with ``samples`` above 1 each
prompt runs that many times, with seeds ``TRIAL_SEED``, ``TRIAL_SEED + 1``, ..., and the
metrics are means over every run (a configuration judged by one draw is judged by its luck).
The seed is not part of what ``apply`` writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import optuna
from optuna.trial import Trial, TrialState

from neurons.config import Settings
from neurons.errors import (
    ModelNotFoundError,
    NeuronsError,
    NodeNotFoundError,
    NoNodeAvailableError,
    SessionStateError,
)
from neurons.hardware.gguf import ModelProfile, read_model_profile
from neurons.hardware.inventory import HardwareInventory
from neurons.hardware.locate import locate_gguf
from neurons.hardware.memory import EstimateOptions, estimate_memory, memory_budget
from neurons.library.catalog import load_catalog
from neurons.library.service import LibraryService
from neurons.modelfile.tuning import DEFAULT_HEADROOM
from neurons.network.manager import NetworkManager
from neurons.network.routing import BalancedPolicy, NodeView, RouteRequest
from neurons.ollama.names import canonical_name
from neurons.optimize.objectives import directions, is_multi_objective, values
from neurons.optimize.results import FINISHED, best_result, finished_count
from neurons.optimize.scoring import Embedder
from neurons.optimize.sessions import SESSION_TRANSITIONS, SessionConfig, SessionEvent
from neurons.optimize.strategies import (
    grid_points_for_budget,
    make_pruner,
    make_sampler,
    optuna_storage,
)
from neurons.optimize.trials import CaseResult, TrialEvaluator, aggregate
from neurons.store import SessionRecord, Store

__all__ = [
    "TRIAL_SEED",
    "FitCheck",
    "Progress",
    "SessionRunner",
    "pid_exists",
    "runner_identity",
    "runner_is_dead",
]

log = logging.getLogger(__name__)

TRIAL_SEED = 42
MAX_CONSECUTIVE_FAILURES = 3


def runner_identity() -> str:
    """``host:pid:nonce``: whose lease a session holds, and whether that process still lives."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def runner_is_dead(runner: str | None) -> bool:
    """True when ``runner`` names a process on this host that no longer exists."""
    if not runner:
        return True
    host, _, rest = runner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    return not pid_exists(int(pid_text))


def pid_exists(pid: int) -> bool:
    """True when a process ``pid`` exists on this host (one we may not signal counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Progress:
    """What a progress bar shows after each trial."""

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


class _Stop(Exception):
    """The run must end now (cancelled, lease lost, shutting down)."""


class SessionRunner:
    """Runs sessions in this process; one instance can run several, one at a time each."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        network: NetworkManager,
        *,
        embedder: Embedder | None = None,
        identity: str | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.network = network
        self.embedder = embedder
        self.identity = identity or runner_identity()

    # -- the lease ----------------------------------------------------------------------------

    async def take(self, session_id: str, event: SessionEvent) -> SessionRecord:
        """Take the session's lease for this runner (START or ADOPT); 409 if not allowed."""
        repo = self.store.optimization
        record = await asyncio.to_thread(repo.get, session_id)
        if event == SessionEvent.ADOPT:
            return await asyncio.to_thread(
                repo.transition,
                session_id,
                ("running",),
                "running",
                runner=self.identity,
                expected_runner=record.runner or "",  # "": still released, not just adopted
            )
        allowed = [str(s) for (s, e) in SESSION_TRANSITIONS if e == event]
        if record.status not in allowed:
            raise SessionStateError(f"cannot {event} a session that is {record.status}")
        return await asyncio.to_thread(
            repo.transition, session_id, allowed, "running", runner=self.identity
        )

    async def _heartbeat(self, session_id: str, stop: threading.Event) -> None:
        interval = max(0.05, self.settings.optimization_lease_s / 3)
        while not stop.is_set():
            await asyncio.sleep(interval)
            held = await asyncio.to_thread(
                self.store.optimization.record_progress, session_id, self.identity
            )
            if not held:
                log.info("session %s: lease lost (cancelled or adopted); stopping", session_id)
                stop.set()

    # -- the node ----------------------------------------------------------------------------

    async def _node(self, config: SessionConfig) -> NodeView:
        monitor = self.network.monitor
        if not monitor.views or all(v.version is None for v in monitor.views.values()):
            await monitor.check_all()
        if config.node is not None:
            view = monitor.find(config.node)
            if view is None:
                raise NodeNotFoundError(f"no node named '{config.node}'")
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
        sampler = make_sampler(
            config.strategy,
            config.space,
            config.objective,
            seed=config.seed,
            budget=config.max_iterations,
        )
        pruner = make_pruner(config.strategy, len(config.cases), objective=config.objective)
        study = optuna.create_study(
            study_name=record.study_name,
            storage=storage,
            sampler=sampler,
            pruner=pruner,
            directions=directions(config.objective),
            load_if_exists=True,
        )
        trials = study.get_trials(deepcopy=False)
        if trials and config.seed is not None:
            # A resumed run with the same seed would replay the draws made before the
            # restart and try those configurations again: offset it by the trials so far.
            study.sampler = make_sampler(
                config.strategy,
                config.space,
                config.objective,
                seed=config.seed + len(trials),
                budget=config.max_iterations,
            )
        retried = {t.user_attrs.get("retry_of") for t in trials}
        for trial in trials:
            if trial.state == TrialState.RUNNING:
                # Its runner died mid-trial: fail it and run the same configuration again.
                storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
                storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            elif not trial.user_attrs.get("interrupted") or trial.number in retried:
                continue
            study.enqueue_trial(dict(trial.params), user_attrs=_retry_attrs(trial))
        if not trials and config.baseline:
            study.enqueue_trial(config.space.baseline(), user_attrs={"baseline": True})
        return study

    # -- one trial ---------------------------------------------------------------------------

    async def _evaluate(
        self,
        trial: Trial,
        params: dict[str, Any],
        config: SessionConfig,
        evaluator: TrialEvaluator,
        fit: FitCheck | None,
        stop: threading.Event,
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

    # -- the run -----------------------------------------------------------------------------

    async def run(
        self,
        session_id: str,
        *,
        event: SessionEvent = SessionEvent.START,
        stop: threading.Event | None = None,
        progress: Callable[[Progress], None] | None = None,
        taken: SessionRecord | None = None,
    ) -> SessionRecord:
        """Run the session until it ends or ``stop`` is set; the session's record after.

        ``taken`` is the record :meth:`take` returned when the caller took the lease itself
        (to answer "running" before the run starts)."""
        stop = stop or threading.Event()
        record = taken if taken is not None else await self.take(session_id, event)
        config = SessionConfig.from_dict(record.config)
        heartbeat = asyncio.create_task(self._heartbeat(session_id, stop))
        try:
            error = await self._optimize(record, config, stop, progress)
        except NeuronsError as exc:
            error = str(exc)
        except Exception as exc:  # a bug must not leave the session "running" forever
            log.exception("session %s failed", session_id)
            error = f"{type(exc).__name__}: {exc}"
        finally:
            stop.set()
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        return await asyncio.to_thread(self._finish, session_id, config, error)

    async def _optimize(
        self,
        record: SessionRecord,
        config: SessionConfig,
        stop: threading.Event,
        progress: Callable[[Progress], None] | None,
    ) -> str | None:
        view = await self._node(config)
        fit = await self._fit_check(config, view)
        study = await asyncio.to_thread(self._study, record, config)
        evaluator = TrialEvaluator(
            self.network.http,
            view.url,
            config.model_name,
            node=view.name,
            embedder=self.embedder if config.similarity else None,
        )
        loop = asyncio.get_running_loop()
        session_id = record.session_id
        elapsed_before = record.elapsed_s
        started = time.monotonic()
        failures: list[str] = []  # consecutive failed trials' errors
        errors: list[str] = []

        def objective(trial: Trial) -> float | tuple[float, float]:
            # Sample here, in study.optimize's thread: Optuna caches a study's trials per thread
            # and refreshes the cache only in the thread that asks for a trial, so a sampler run
            # on the event loop saw the study as it was at the first trial, and TPE, CMA-ES and
            # NSGA-II never left their random start.
            params = config.space.suggest(trial)
            future = asyncio.run_coroutine_threadsafe(
                self._evaluate(trial, params, config, evaluator, fit, stop), loop
            )
            try:
                result = future.result()
            except _Stop:
                trial.study.stop()
                raise optuna.TrialPruned("session stopped") from None
            except NeuronsError as exc:
                self.network.monitor.report_failure(view, str(exc))
                errors.append(str(exc))
                raise
            return result

        def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            if trial.state == TrialState.FAIL:
                failures.append(errors[-1] if errors else "trial failed")
            elif trial.state == TrialState.COMPLETE:
                failures.clear()
            best = best_result(study, config.objective)
            finished = finished_count(study)
            elapsed = elapsed_before + time.monotonic() - started
            held = self.store.optimization.record_progress(
                session_id,
                self.identity,
                current_iteration=finished,
                best=best,
                elapsed_s=elapsed,
            )
            if not held:
                stop.set()
            if progress is not None:
                progress(
                    Progress(
                        session_id,
                        finished,
                        config.max_iterations,
                        trial.number,
                        trial.state.name.lower(),
                        best,
                        view.name,
                    )
                )
            if stop.is_set() or len(failures) >= MAX_CONSECUTIVE_FAILURES:
                study.stop()

        remaining_trials = config.max_iterations - finished_count(study)
        remaining_s = config.timeout_minutes * 60 - record.elapsed_s
        if remaining_trials > 0 and remaining_s > 0 and not stop.is_set():
            await asyncio.to_thread(
                study.optimize,
                objective,
                n_trials=remaining_trials,
                timeout=remaining_s,
                callbacks=[after_trial],
                catch=(NeuronsError,),
                gc_after_trial=False,
            )
        if len(failures) >= MAX_CONSECUTIVE_FAILURES:
            return f"{len(failures)} trials failed in a row; last: {failures[-1]}"
        return None

    def _finish(self, session_id: str, config: SessionConfig, error: str | None) -> SessionRecord:
        repo = self.store.optimization
        record = repo.get(session_id)
        if record.status != "running" or record.runner != self.identity:
            return record  # cancelled, or adopted by another process: theirs to finish
        try:
            if error is not None:
                return repo.transition(
                    session_id, ("running",), "failed", error=error, expected_runner=self.identity
                )
            if self._stopped_early(record, config):
                # Shutting down mid-session: give the lease back so the next start resumes it.
                return repo.transition(
                    session_id, ("running",), "running", runner=None, expected_runner=self.identity
                )
            return repo.transition(
                session_id, ("running",), "completed", expected_runner=self.identity
            )
        except SessionStateError:
            return repo.get(session_id)

    def _stopped_early(self, record: SessionRecord, config: SessionConfig) -> bool:
        """True when the run ended before its trials, its time and its grid were spent."""
        if record.current_iteration >= config.max_iterations:
            return False
        if record.elapsed_s >= config.timeout_minutes * 60 - 1:
            return False
        study = optuna.load_study(
            study_name=record.study_name,
            storage=optuna_storage(self.settings.resolved_database_url),
        )
        sampler_done = config.strategy == "grid_search" and _grid_exhausted(study, config)
        return not sampler_done


def _retry_attrs(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    attrs: dict[str, Any] = {"retry_of": trial.number}
    if trial.user_attrs.get("baseline"):
        attrs["baseline"] = True
    return attrs


def _grid_exhausted(study: optuna.Study, config: SessionConfig) -> bool:
    size = config.space.grid_size(grid_points_for_budget(config.space, config.max_iterations))
    finished = [t for t in study.get_trials(deepcopy=False, states=FINISHED)]
    skipped = ("baseline", "interrupted", "retry_of")
    counted = [t for t in finished if not any(k in t.user_attrs for k in skipped)]
    return len(counted) >= size
