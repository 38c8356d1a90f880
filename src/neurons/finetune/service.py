"""Fine-tuning jobs: created, run in the background, resumed; what the REST API and the CLI
call.

:class:`FineTuningService` is the domain layer (jobs created from validated arguments, their
training data uploaded, jobs read) over the jobs runtime (:class:`~neurons.jobs.JobRuntime`
running :class:`~neurons.finetune.kind.FineTuningKind`, where the phases are), which does the
rest as for every kind of background work: ``start`` takes the job's lease and runs it as a
task of this process; a cancel from any process stops its worker at a checkpoint within
seconds; a supervisor (every third of ``NEURONS_FINE_TUNING_LEASE_S``) adopts jobs left
``running`` by a process that is gone, and trains on from their last checkpoint; shutting down
cleanly gives the lease back, so the next control plane resumes at once.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from neurons.config import Settings
from neurons.errors import InvalidRequestError
from neurons.finetune.jobs import JobConfig, confine, next_status
from neurons.finetune.kind import STOP_GRACE_S, FineTuningKind
from neurons.finetune.presets import Hyperparameters, parse_hyperparameters
from neurons.jobs import JobRuntime, Publish
from neurons.lifecycle import Event
from neurons.network.manager import NetworkManager
from neurons.store import JobRecord, Store

__all__ = ["UPLOAD_LIMIT", "FineTuningService"]

UPLOAD_LIMIT = 512 << 20
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class FineTuningService:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        network: NetworkManager,
        *,
        publish: Publish | None = None,
    ) -> None:
        self.store = store
        self.network = network
        self.kind = FineTuningKind(store, settings, network)
        self.runtime = JobRuntime(self.kind, lease_s=settings.fine_tuning_lease_s, publish=publish)
        self.data_dir = self.kind.data_dir

    # -- jobs --------------------------------------------------------------------------------

    async def create(
        self,
        *,
        base_model: str,
        target_model_name: str,
        training_data_path: str,
        data_type: str = "jsonl",
        hyperparameters: str | Mapping[str, Any] | Hyperparameters | None = None,
        target_capabilities: Sequence[str] | None = None,
        nodes: Sequence[str] | None = None,
        column_mapping: Mapping[str, str] | None = None,
    ) -> JobRecord:
        """A new ``pending`` job; every argument is checked before it is stored."""
        if isinstance(hyperparameters, Hyperparameters):
            hp = hyperparameters
        elif isinstance(hyperparameters, Mapping):
            hp = Hyperparameters.from_dict(hyperparameters)
        else:
            hp = parse_hyperparameters(hyperparameters)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path = confine(self.data_dir, training_data_path)
        config = JobConfig.create(
            base_model=base_model,
            target_model_name=target_model_name,
            training_data=path.relative_to(self.data_dir.resolve()).as_posix(),
            data_type=data_type,
            hyperparameters=hp,
            target_capabilities=target_capabilities,
            nodes=nodes,
            column_mapping=column_mapping,
        )
        return await asyncio.to_thread(self.store.fine_tuning.create, config.to_dict())

    async def upload(self, filename: str, content: bytes) -> str:
        """Store uploaded training data under ``data/uploads``; the path to create a job with.
        The client's file name is reduced to safe characters and prefixed to stay unique."""
        if len(content) > UPLOAD_LIMIT:
            raise InvalidRequestError(f"training data over {UPLOAD_LIMIT >> 20} MiB")
        stem = _SAFE_NAME.sub("_", Path(filename or "data").name).strip("._") or "data"
        folder = self.data_dir / "uploads"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{int(time.time() * 1000)}-{os.getpid()}-{stem[-100:]}"
        await asyncio.to_thread((folder / name).write_bytes, content)
        return f"uploads/{name}"

    async def start(self, job_id: str) -> JobRecord:
        """Run the job here in the background (a failed or cancelled one resumes from its last
        checkpoint); 409 unless it is pending, failed or cancelled."""
        record = await asyncio.to_thread(self.store.fine_tuning.get, job_id)
        next_status(record.status, Event.START)  # the job's own 409 message
        await self.runtime.start(record.job_id)
        return await asyncio.to_thread(self.store.fine_tuning.get, record.job_id)

    async def cancel(self, job_id: str) -> JobRecord:
        """Cancel a pending or running job, wherever it runs; its worker stops at a checkpoint,
        so starting the job again resumes it."""
        record = await asyncio.to_thread(self.store.fine_tuning.get, job_id)
        next_status(record.status, Event.CANCEL)
        await self.runtime.cancel(record.job_id)
        return await asyncio.to_thread(self.store.fine_tuning.get, record.job_id)

    async def wait(self, job_id: str, timeout: float | None = None) -> JobRecord:
        """Wait for this process's run of the job to end (tests and the CLI use it)."""
        await self.runtime.wait(job_id, timeout)
        return await asyncio.to_thread(self.store.fine_tuning.get, job_id)

    async def status(self, job_id: str) -> dict[str, Any]:
        record = await asyncio.to_thread(self.store.fine_tuning.get, job_id)
        return record.to_dict()

    async def jobs(self, status: str | None = None) -> list[dict[str, Any]]:
        records = await asyncio.to_thread(self.store.fine_tuning.list, status)
        return [r.to_dict() for r in records]

    # -- resuming ----------------------------------------------------------------------------

    async def adopt_orphans(self) -> list[str]:
        """Run every ``running`` job whose runner is gone; the ids adopted."""
        return await self.runtime.adopt_orphans()

    def start_supervisor(self) -> None:
        self.runtime.start_supervisor()

    async def aclose(self) -> None:
        """Stop the supervisor and this process's jobs: each worker writes a checkpoint, and
        its job stays ``running`` with the lease given back for the next control plane."""
        await self.runtime.aclose(deadline_s=STOP_GRACE_S + 10)
