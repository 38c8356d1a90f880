"""Learning runs as a kind of background work on the jobs runtime (:mod:`neurons.jobs`).

:class:`LearningKind` runs :func:`neurons.learning.runs.execute` in a worker thread (the work
is torch on CPU and releases the GIL) under the runtime's :class:`~neurons.jobs.StopSignal`.
Every event the run emits is appended to the store; a ``round`` event first renews the lease
with the round reached and its summary, so a run whose row was cancelled or taken over
elsewhere records nothing more and stops before its checkpoint. How it stops depends on why:

- shutdown: after the current round's checkpoint; the row stays ``running`` with its lease
  given back, and the next control plane resumes it from there;
- cancel, or the lease lost: at once, dropping the round in progress (its work would not be
  recorded anyway), so even a long round (a transformer's) stops within one training step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from neurons.errors import LearningRunNotFoundError, LearningStateError
from neurons.jobs import JobKind, LeaseTable, StopReason, StopSignal
from neurons.learning.runs import RunConfig, RunStopped, execute
from neurons.store import Store
from neurons.store.learning import round_values, runs_table

__all__ = ["LearningKind"]

_DROP_ROUND = (StopReason.CANCEL, StopReason.LEASE_LOST)


class LearningKind(JobKind):
    """Learning runs: rows of ``learning_runs``, checkpoints under ``root/<id>``."""

    name: ClassVar[str] = "learning"

    def __init__(self, store: Store, root: Path) -> None:
        self.store = store
        self.root = root
        self.leases = LeaseTable(
            store.engine,
            runs_table,
            what="learning run",
            not_found=LearningRunNotFoundError,
            refused=LearningStateError,
        )

    def run_dir(self, run_id: str) -> Path:
        return self.root / str(int(run_id))

    async def execute(self, job_id: str, stop: StopSignal, runner: str) -> Mapping[str, Any]:
        record = await asyncio.to_thread(self.store.learning.get, job_id)
        config = RunConfig.from_dict(record.config)

        def emit(kind: str, payload: dict[str, Any]) -> None:
            self._record(job_id, runner, stop, kind, payload)

        result = await asyncio.to_thread(
            execute,
            config,
            emit,
            checkpoint=self.run_dir(job_id),
            stop=stop,
            abandon=lambda: stop.is_set() and stop.reason in _DROP_ROUND,
        )
        return round_values(config.rounds, result)

    def _record(
        self, job_id: str, runner: str, stop: StopSignal, kind: str, payload: dict[str, Any]
    ) -> None:
        """Store one event of the run (in its worker thread)."""
        if stop.is_set() and stop.reason in _DROP_ROUND:
            raise RunStopped(f"learning run {job_id}: {stop.reason}")
        if kind == "round":
            values = round_values(int(payload["round"]), payload)
            if not self.leases.renew(job_id, runner, values, stop=stop):
                # Not ours any more (the renewal set the reason): write nothing.
                raise RunStopped(f"learning run {job_id}: {stop.reason}")
        self.store.learning.add_event(job_id, kind, payload)
