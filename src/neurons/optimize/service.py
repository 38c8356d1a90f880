"""Optimization sessions: created, run in the background, resumed; what the REST API and the
CLI call.

:class:`OptimizationService` is the domain layer (creating sessions, their trials, best
parameters, applying them) over the jobs runtime (:class:`~neurons.jobs.JobRuntime` running
:class:`~neurons.optimize.runner.OptimizationKind`), which does the rest as for every kind of
background work: ``start`` takes the session's lease and runs it as a task of this process; a
cancel from any process stops the run after its current prompt; a supervisor (every third of
``NEURONS_OPTIMIZATION_LEASE_S``) adopts sessions left ``running`` by a process that is gone
(its lease given back at shutdown, its process no longer on this host, or its heartbeat older
than the lease). So a session survives a restart of the control plane, and one started by
``neurons optimize run`` survives that CLI being killed while a control plane runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import optuna

from neurons.config import Settings
from neurons.errors import SessionStateError
from neurons.jobs import JobRuntime, Publish
from neurons.network.manager import NetworkManager
from neurons.optimize.apply import apply_parameters
from neurons.optimize.evalsets import EvalSet, parse_jsonl
from neurons.optimize.results import best_result, convergence, trial_rows, worker_rows
from neurons.optimize.runner import OptimizationKind
from neurons.optimize.scoring import Embedder, MiniLMEmbedder
from neurons.optimize.sessions import SessionConfig, SessionEvent, next_status
from neurons.optimize.space import SearchSpace
from neurons.optimize.strategies import optuna_storage
from neurons.optimize.worker import WorkerReport, WorkerTrial, run_worker
from neurons.store import SessionRecord, Store

__all__ = ["OptimizationService", "load_study"]


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
        publish: Publish | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.network = network
        chosen = embedder if embedder is not None else MiniLMEmbedder()  # loads on first use
        self.kind = OptimizationKind(store, settings, network, embedder=chosen)
        self.runtime = JobRuntime(self.kind, lease_s=settings.optimization_lease_s, publish=publish)

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
        """Run the session here in the background (resuming a failed or cancelled one); 409
        unless it is pending, failed or cancelled."""
        record = await asyncio.to_thread(self.store.optimization.get, session_id)
        next_status(record.status, SessionEvent.START)  # the session's own 409 message
        await self.runtime.start(record.session_id)
        return await asyncio.to_thread(self.store.optimization.get, record.session_id)

    async def cancel(self, session_id: str) -> SessionRecord:
        """Cancel a pending or running session, wherever it runs; a running trial stops
        after its prompt."""
        record = await asyncio.to_thread(self.store.optimization.get, session_id)
        next_status(record.status, SessionEvent.CANCEL)
        await self.runtime.cancel(record.session_id)
        return await asyncio.to_thread(self.store.optimization.get, record.session_id)

    async def wait(self, session_id: str, timeout: float | None = None) -> SessionRecord:
        """Wait for this process's run of the session to end (tests and the CLI use it)."""
        await self.runtime.wait(session_id, timeout)
        return await asyncio.to_thread(self.store.optimization.get, session_id)

    async def status(self, session_id: str) -> dict[str, Any]:
        record = await asyncio.to_thread(self.store.optimization.get, session_id)
        return record.to_dict()

    async def sessions(self, status: str | None = None) -> list[dict[str, Any]]:
        records = await asyncio.to_thread(self.store.optimization.list, status)
        return [r.to_dict() for r in records]

    async def details(self, session_id: str) -> dict[str, Any]:
        """The session with its trials, its best result, its convergence history and its
        trials by worker (``workers``: the session's runner ``main`` and any that joined)."""
        record = await asyncio.to_thread(self.store.optimization.get, session_id)
        study = await asyncio.to_thread(load_study, self.settings, record)
        if study is None:
            empty: dict[str, Any] = {"trials": [], "best": None, "convergence": [], "workers": []}
            return {**record.to_dict(), **empty}
        objective = record.objective
        trials, best, history, workers = await asyncio.to_thread(
            lambda: (
                trial_rows(study, objective),
                best_result(study, objective),
                convergence(study, objective),
                worker_rows(study),
            )
        )
        return {
            **record.to_dict(),
            "trials": trials,
            "best": best,
            "convergence": history,
            "workers": workers,
        }

    async def join(
        self,
        session_id: str,
        *,
        nodes: Sequence[str] | None = None,
        worker_id: str | None = None,
        progress: Callable[[WorkerTrial], None] | None = None,
    ) -> WorkerReport:
        """Run trials of a running session in this process, as one more worker beside its
        runner, on ``nodes`` (default: the session's node); until the session needs no more
        trials (:mod:`neurons.optimize.worker`)."""
        return await run_worker(
            self.kind, session_id, nodes=nodes, worker=worker_id, progress=progress
        )

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

    async def adopt_orphans(self) -> list[str]:
        """Run every ``running`` session whose runner is gone; the ids adopted."""
        return await self.runtime.adopt_orphans()

    def start_supervisor(self) -> None:
        self.runtime.start_supervisor()

    async def aclose(self) -> None:
        """Stop the supervisor and this process's runs; their sessions stay ``running`` with
        the lease given back, so the next control plane resumes them at once."""
        await self.runtime.aclose()
