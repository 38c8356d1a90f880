"""Learning runs as background jobs: stored, observable, cancellable, resumed after a restart.

A run executes in a worker thread of the control plane (the work is torch on CPU and releases
the GIL). Every event it emits is appended to the store; every ``round`` event also updates the
run's row, so ``status`` is always the last finished round. Its status moves along the table
every kind of background work shares (:mod:`neurons.lifecycle`): cancelling stops it at the end of a
round, and starting a cancelled or failed run again resumes it from its last checkpoint. A
control plane that finds runs still ``running`` at start-up (its predecessor died) resumes them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from neurons.config import Settings
from neurons.errors import InvalidRequestError, LearningStateError
from neurons.learning.runs import RunConfig, RunStopped, execute
from neurons.lifecycle import Event, Status, next_status
from neurons.store import Store
from neurons.store.learning import LearningRunRecord

__all__ = ["LearningService"]

log = logging.getLogger(__name__)


class LearningService:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.root = settings.learning_path / "runs"
        self._stops: dict[str, threading.Event] = {}
        self._why: dict[str, str] = {}  # "cancel" or "shutdown", for a run told to stop
        self._tasks: dict[str, asyncio.Task[LearningRunRecord]] = {}

    async def create(self, config: RunConfig | Mapping[str, Any]) -> LearningRunRecord:
        checked = config if isinstance(config, RunConfig) else RunConfig.from_dict(dict(config))
        return await asyncio.to_thread(self.store.learning.create, checked.__dict__)

    async def start(self, run_id: str) -> LearningRunRecord:
        record = await asyncio.to_thread(self.store.learning.get, run_id)
        new = next_status(
            record.status,
            Event.START,
            lambda status, _: LearningStateError(f"cannot start run {run_id}: it is {status}"),
        )
        if not await asyncio.to_thread(self.store.learning.set_status, run_id, record.status, new):
            raise LearningStateError(f"run {run_id} changed status meanwhile; try again")
        self._spawn(record.run_id)
        return await asyncio.to_thread(self.store.learning.get, run_id)

    async def cancel(self, run_id: str) -> LearningRunRecord:
        record = await asyncio.to_thread(self.store.learning.get, run_id)
        new = next_status(
            record.status,
            Event.CANCEL,
            lambda status, _: LearningStateError(f"cannot cancel run {run_id}: it is {status}"),
        )
        stop = self._stops.get(record.run_id)
        if stop is not None:
            self._why[record.run_id] = "cancel"
            stop.set()  # the run ends itself at its next round boundary
            task = self._tasks.get(record.run_id)
            if task is not None:
                return await asyncio.shield(task)
        await asyncio.to_thread(self.store.learning.set_status, run_id, record.status, new)
        return await asyncio.to_thread(self.store.learning.get, run_id)

    async def wait(self, run_id: str, timeout: float | None = None) -> LearningRunRecord:
        task = self._tasks.get(run_id)
        if task is not None:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        return await asyncio.to_thread(self.store.learning.get, run_id)

    async def status(self, run_id: str) -> dict[str, Any]:
        record = await asyncio.to_thread(self.store.learning.get, run_id)
        state = record.to_dict()
        state["history"] = await asyncio.to_thread(self._history, run_id)
        return state

    async def runs(self, status: str | None = None) -> list[dict[str, Any]]:
        if status is not None and status not in {s.value for s in Status}:
            choices = ", ".join(s.value for s in Status)
            raise InvalidRequestError(f"unknown status {status!r}; choose one of {choices}")
        records = await asyncio.to_thread(self.store.learning.list, status)
        return [r.to_dict() for r in records]

    async def events(
        self, run_id: str, *, after: int = 0, kind: str | None = None, limit: int = 500
    ) -> list[dict[str, Any]]:
        await asyncio.to_thread(self.store.learning.get, run_id)  # 404 for unknown runs
        found = await asyncio.to_thread(
            self.store.learning.events, run_id, after=after, kind=kind, limit=limit
        )
        return [event.to_dict() for event in found]

    async def resume_interrupted(self) -> list[str]:
        """Runs a dead control plane left ``running``: continue them from their checkpoints."""
        resumed = []
        for record in await asyncio.to_thread(self.store.learning.list, Status.RUNNING):
            if record.run_id not in self._tasks:
                self._spawn(record.run_id)
                resumed.append(record.run_id)
        return resumed

    async def aclose(self) -> None:
        """Stop every run at its next round boundary; each stays ``running`` in the store, so
        the next control plane resumes it from its checkpoint."""
        for run_id, stop in self._stops.items():
            self._why.setdefault(run_id, "shutdown")
            stop.set()
        tasks = list(self._tasks.values())
        if tasks:
            await asyncio.wait(tasks, timeout=60)

    def run_dir(self, run_id: str) -> Path:
        return self.root / str(int(run_id))

    # -- running ---------------------------------------------------------------------------

    def _spawn(self, run_id: str) -> None:
        stop = threading.Event()
        self._stops[run_id] = stop
        task = asyncio.get_running_loop().create_task(self._run(run_id, stop))
        self._tasks[run_id] = task

        def forget(_: asyncio.Task[LearningRunRecord]) -> None:
            self._tasks.pop(run_id, None)
            self._stops.pop(run_id, None)

        task.add_done_callback(forget)

    async def _run(self, run_id: str, stop: threading.Event) -> LearningRunRecord:
        repo = self.store.learning
        record = await asyncio.to_thread(repo.get, run_id)
        config = RunConfig.from_dict(record.config)
        try:
            result = await asyncio.to_thread(
                execute,
                config,
                lambda kind, payload: self._record(run_id, kind, payload),
                checkpoint=self.run_dir(run_id),
                stop=stop,
            )
        except RunStopped:
            if self._why.pop(run_id, "cancel") == "cancel":
                await asyncio.to_thread(repo.set_status, run_id, Status.RUNNING, Status.CANCELLED)
            # at shutdown the run stays running: the next control plane resumes it
        except Exception as exc:  # the run failed; keep the reason, not the control plane
            log.exception("learning run %s failed", run_id)
            await asyncio.to_thread(
                repo.set_status, run_id, Status.RUNNING, Status.FAILED, error=str(exc)
            )
        else:
            await asyncio.to_thread(repo.record_round, run_id, config.rounds, result)
            await asyncio.to_thread(repo.set_status, run_id, Status.RUNNING, Status.COMPLETED)
        return await asyncio.to_thread(repo.get, run_id)

    def _record(self, run_id: str, kind: str, payload: dict[str, Any]) -> None:
        self.store.learning.add_event(run_id, kind, payload)
        if kind == "round":
            self.store.learning.record_round(run_id, int(payload["round"]), payload)

    def _history(self, run_id: str) -> list[dict[str, Any]]:
        rounds = self.store.learning.events(run_id, kind="round", limit=5000)
        return [{"round": e.round, **_headline(e.payload)} for e in rounds]


def _headline(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The scalar metrics of a round (per-node tables stay in the event)."""
    return {k: v for k, v in payload.items() if isinstance(v, (int, float)) and k != "round"}
