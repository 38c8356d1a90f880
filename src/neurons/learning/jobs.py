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

Rows of mode ``teach`` are LLM teaching jobs (:mod:`neurons.learning.teaching`): they run on
the event loop (the work is on the nodes and in a fine-tuning job), each phase's outcome
written with a renewal of the lease as a round's is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from neurons.errors import LearningRunNotFoundError, LearningStateError, NeuronsError
from neurons.jobs import JobKind, LeaseTable, StopReason, StopSignal
from neurons.learning.runs import RunConfig, RunStopped, execute
from neurons.learning.teaching import TEACH_MODE, TeachConfig, execute_teaching
from neurons.store import Store
from neurons.store.learning import LearningRunRecord, round_values, runs_table

if TYPE_CHECKING:
    from neurons.finetune.service import FineTuningService

__all__ = ["LearningKind"]

_DROP_ROUND = (StopReason.CANCEL, StopReason.LEASE_LOST)


class LearningKind(JobKind):
    """Learning runs: rows of ``learning_runs``, checkpoints under ``root/<id>``."""

    name: ClassVar[str] = "learning"

    def __init__(
        self,
        store: Store,
        root: Path,
        fine_tuning: FineTuningService | None = None,
        *,
        torch_threads: int | None = None,
    ) -> None:
        self.store = store
        self.root = root
        self.torch_threads = torch_threads
        self.fine_tuning = fine_tuning  # teaching jobs need it; learning runs do not
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
        if record.mode == TEACH_MODE:
            return await self._teach(record, stop, runner)
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
            threads=self.torch_threads,
        )
        return round_values(config.rounds, result)

    async def _teach(
        self, record: LearningRunRecord, stop: StopSignal, runner: str
    ) -> Mapping[str, Any]:
        if self.fine_tuning is None:
            raise NeuronsError(
                "teaching needs the nodes: start it from a control plane or `neurons learn teach`"
            )
        job_id = record.run_id

        def progress(phases: int, result: dict[str, Any]) -> bool:
            if not self.leases.renew(job_id, runner, round_values(phases, result), stop=stop):
                return False  # not ours any more: record nothing
            self.store.learning.add_event(job_id, "teach", {"round": phases, **_brief(result)})
            return True

        async def write(phases: int, result: dict[str, Any]) -> bool:
            return await asyncio.to_thread(progress, phases, result)

        report = await execute_teaching(
            TeachConfig.from_dict(record.config),
            record.result,
            self.fine_tuning,
            stop,
            write,
        )
        return round_values(record.total_rounds, report)

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


def _brief(result: dict[str, Any]) -> dict[str, Any]:
    """A teaching phase's event: its name and scalar outcomes (the answers stay in the row)."""
    brief: dict[str, Any] = {"phase": result.get("phase")}
    for name in ("before", "after"):
        if isinstance(result.get(name), dict):
            brief[name] = {k: v for k, v in result[name].items() if k != "answers"}
    if "fine_tuning_job" in result:
        brief["fine_tuning_job"] = result["fine_tuning_job"]
    return brief
