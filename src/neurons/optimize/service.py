"""Optimization sessions in the control plane: created, run in the background, resumed.

:class:`OptimizationService` is what the REST API calls. ``start`` takes the session's lease
and runs it as a task of this process. A supervisor task (every third of
``NEURONS_OPTIMIZATION_LEASE_S``) adopts sessions left ``running`` by a process that is gone:
one whose lease was given back at shutdown, whose process no longer exists on this host, or
whose heartbeat is older than the lease. So a session survives a restart of the control plane,
and one started by ``neurons optimize run`` survives that CLI being killed while a control plane
runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import optuna

from neurons import lifecycle
from neurons.config import Settings
from neurons.errors import SessionStateError
from neurons.network.manager import NetworkManager
from neurons.optimize.apply import apply_parameters
from neurons.optimize.evalsets import EvalSet, parse_jsonl
from neurons.optimize.results import best_result, convergence, trial_rows
from neurons.optimize.runner import SessionRunner, runner_is_dead
from neurons.optimize.scoring import Embedder, MiniLMEmbedder
from neurons.optimize.sessions import SessionConfig, SessionEvent, next_status
from neurons.optimize.space import SearchSpace
from neurons.optimize.strategies import optuna_storage
from neurons.store import SessionRecord, Store
from neurons.store.engine import utc_now

__all__ = ["OptimizationService", "load_study"]

log = logging.getLogger(__name__)


def load_study(settings: Settings, record: SessionRecord) -> optuna.Study | None:
    """The session's study, or None before its first run created it."""
    storage = optuna_storage(settings.resolved_database_url)
    try:
        return optuna.load_study(study_name=record.study_name, storage=storage)
    except KeyError:
        return None


class OptimizationService:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        network: NetworkManager,
        *,
        embedder: Embedder | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        chosen = embedder if embedder is not None else MiniLMEmbedder()  # loads on first use
        self.runner = SessionRunner(store, settings, network, embedder=chosen)
        self.network = network
        self._tasks: dict[str, tuple[asyncio.Task[SessionRecord], threading.Event]] = {}
        self._supervisor: asyncio.Task[None] | None = None

    # -- sessions ----------------------------------------------------------------------------

    async def create(
        self,
        *,
        model_name: str,
        objective: str = "balance_quality_speed",
        strategy: str = "bayesian_optimization",
        model_type: str = "general",
        max_iterations: int | None = None,
        timeout_minutes: float | None = None,
        parameters: Sequence[str] | None = None,
        search_space: dict[str, Any] | None = None,
        eval_jsonl: str | None = None,
        eval_name: str = "custom",
        **options: Any,
    ) -> SessionRecord:
        """A new ``pending`` session. ``eval_jsonl`` is the text of the user's own evaluation
        set (its problems are reported by line); the packaged set for ``model_type`` is used
        without one."""
        eval_set: EvalSet | None = None
        if eval_jsonl is not None:
            eval_set = parse_jsonl(eval_jsonl, name=eval_name, model_type=model_type)
        space = SearchSpace.from_dict(search_space) if search_space is not None else None
        config = SessionConfig.create(
            model_name=model_name,
            objective=objective,
            strategy=strategy,
            model_type=model_type,
            max_iterations=max_iterations,
            timeout_minutes=timeout_minutes,
            limit_iterations=self.settings.max_optimization_iterations,
            limit_minutes=self.settings.optimization_timeout_minutes,
            parameters=list(parameters) if parameters else None,
            space=space,
            eval_set=eval_set,
            **options,
        )
        return await asyncio.to_thread(self.store.optimization.create, config.to_dict())

    async def start(self, session_id: str) -> SessionRecord:
        """Take the lease and run the session in the background; 409 unless it is pending,
        failed or cancelled."""
        record = await asyncio.to_thread(self.store.optimization.get, session_id)
        next_status(record.status, SessionEvent.START)  # 409 before anything else happens
        previous = self._tasks.get(record.session_id)
        if previous is not None:
            # Cancelled but still finishing its prompt: it runs under the same identity, so
            # its end would release the new run's lease. Let it end first.
            previous[1].set()
            await asyncio.shield(previous[0])
        taken = await self.runner.take(record.session_id, SessionEvent.START)
        self._spawn(taken)
        return taken

    def _spawn(self, taken: SessionRecord) -> None:
        stop = threading.Event()
        task = asyncio.create_task(self.runner.run(taken.session_id, stop=stop, taken=taken))
        self._tasks[taken.session_id] = (task, stop)

        def forget(done: asyncio.Task[SessionRecord]) -> None:
            if self._tasks.get(taken.session_id, (None,))[0] is done:  # not a newer run's
                del self._tasks[taken.session_id]

        task.add_done_callback(forget)

    async def cancel(self, session_id: str) -> SessionRecord:
        """Cancel a pending or running session; a running trial stops after its prompt."""
        record = await asyncio.to_thread(self.store.optimization.get, session_id)
        next_status(record.status, SessionEvent.CANCEL)
        record = await asyncio.to_thread(
            self.store.optimization.transition,
            record.session_id,
            ("pending", "running"),
            "cancelled",
        )
        running = self._tasks.get(record.session_id)
        if running is not None:
            running[1].set()
        return record

    async def wait(self, session_id: str, timeout: float | None = None) -> SessionRecord:
        """Wait for this process's run of the session to end (tests and the CLI use it)."""
        running = self._tasks.get(str(session_id))
        if running is not None:
            await asyncio.wait_for(asyncio.shield(running[0]), timeout)
        return await asyncio.to_thread(self.store.optimization.get, session_id)

    async def status(self, session_id: str) -> dict[str, Any]:
        record = await asyncio.to_thread(self.store.optimization.get, session_id)
        return record.to_dict()

    async def sessions(self, status: str | None = None) -> list[dict[str, Any]]:
        records = await asyncio.to_thread(self.store.optimization.list, status)
        return [r.to_dict() for r in records]

    async def details(self, session_id: str) -> dict[str, Any]:
        """The session with its trials, its best result and its convergence history."""
        record = await asyncio.to_thread(self.store.optimization.get, session_id)
        study = await asyncio.to_thread(load_study, self.settings, record)
        if study is None:
            return {**record.to_dict(), "trials": [], "best": None, "convergence": []}
        objective = record.objective
        trials, best, history = await asyncio.to_thread(
            lambda: (
                trial_rows(study, objective),
                best_result(study, objective),
                convergence(study, objective),
            )
        )
        return {**record.to_dict(), "trials": trials, "best": best, "convergence": history}

    async def best_parameters(self, session_id: str) -> dict[str, Any]:
        """The best parameters with their metrics and score; 409 before a trial completed."""
        record = await asyncio.to_thread(self.store.optimization.get, session_id)
        if not record.best:
            raise SessionStateError(
                f"session {record.session_id} has no completed trial yet ({record.status})"
            )
        return {
            "session_id": record.session_id,
            "model_name": record.model_name,
            "objective": record.objective,
            "status": record.status,
            "best_parameters": record.best.get("parameters"),
            "overall_score": record.best.get("overall_score"),
            "metrics": record.best.get("metrics"),
            "trial": record.best.get("trial"),
        }

    async def apply(
        self, session_id: str, *, name: str | None = None, nodes: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """Create ``<model>-tuned`` (or ``name``) from the best parameters on the nodes."""
        best = await self.best_parameters(session_id)
        if not self.network.monitor.views:
            await self.network.monitor.check_all()
        result = await apply_parameters(
            self.network.monitor,
            best["model_name"],
            best["best_parameters"],
            name=name,
            nodes=nodes,
        )
        return {"session_id": best["session_id"], **result}

    # -- resuming ----------------------------------------------------------------------------

    def _orphaned(self, record: SessionRecord) -> bool:
        if record.session_id in self._tasks:
            return False
        if record.runner is None or runner_is_dead(record.runner):
            return True
        stale = timedelta(seconds=self.settings.optimization_lease_s)
        return record.heartbeat_at is None or utc_now() - record.heartbeat_at > stale

    async def adopt_orphans(self) -> list[str]:
        """Run every ``running`` session whose runner is gone; the ids adopted."""
        adopted = []
        for record in await asyncio.to_thread(self.store.optimization.list, "running"):
            if not self._orphaned(record):
                continue
            try:
                taken = await self.runner.take(record.session_id, SessionEvent.ADOPT)
            except SessionStateError:
                continue  # another control plane was faster
            log.info("resuming optimization session %s (its runner is gone)", record.session_id)
            self._spawn(taken)
            adopted.append(record.session_id)
        return adopted

    def start_supervisor(self) -> None:
        if self._supervisor is None:
            interval = max(0.2, self.settings.optimization_lease_s / 3)
            self._supervisor = asyncio.create_task(
                lifecycle.supervise(self.adopt_orphans, interval, log, "optimization")
            )

    async def aclose(self) -> None:
        """Stop the supervisor and this process's runs; their sessions stay ``running`` with
        the lease given back, so the next control plane resumes them at once."""
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        running = list(self._tasks.values())
        for _, stop in running:
            stop.set()
        if running:
            await asyncio.gather(*(task for task, _ in running), return_exceptions=True)
