"""Fine-tuning jobs in the control plane: created, run in the background, resumed.

:class:`FineTuningService` is what the REST API and the CLI call. ``start`` takes the job's
lease and drives it from a task of this process through the phases:

1. **validating**: the training data (confined to ``FINE_TUNING_PATH/data``) is validated;
   the valid examples, duplicates dropped, are frozen into the job's directory, so a resumed
   job trains on exactly what it started with.
2. **preparing**: the base model's GGUF is fetched from a neuron holding it (cached by digest).
3. **training** / **evaluating** / **exporting**: a worker subprocess
   (``python -m neurons.finetune.worker``) loads the base into transformers, trains a LoRA
   adapter with checkpoints, measures the held-out loss and writes the adapter as GGUF. Its
   events stream into the job's phase, progress, logs, metrics and ETA.
4. **deploying**: the adapter goes to the target neurons (``/api/blobs`` + ``/api/create``
   with ``from`` + ``adapters``), and the new model answers one prompt on each.

Restarts: the worker dies with its control plane (``PR_SET_PDEATHSIG``) after checkpointing
on SIGTERM; shutting down cleanly gives the lease back. A supervisor (every third of
``NEURONS_FINE_TUNING_LEASE_S``) adopts ``running`` jobs whose control plane is gone and runs
them again from their last checkpoint. A job interrupted :data:`MAX_ATTEMPTS` times, or whose
frozen data vanished, ends ``failed`` with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from neurons import lifecycle
from neurons.client import NodeClient
from neurons.config import Settings
from neurons.errors import InvalidRequestError, JobStateError, NeuronsError
from neurons.finetune.data import validate_file
from neurons.finetune.deploy import deploy_adapter, fetch_base_model
from neurons.finetune.jobs import (
    JOB_TRANSITIONS,
    JobConfig,
    JobEvent,
    confine,
    next_status,
    overall_progress,
)
from neurons.finetune.presets import Hyperparameters, parse_hyperparameters
from neurons.finetune.progress import EventTail, ProgressTracker, Update
from neurons.finetune.worker import EXIT_OK, EXIT_STOPPED, WorkerSpec
from neurons.jobs.runners import pid_exists, runner_identity, runner_is_dead
from neurons.network.manager import NetworkManager
from neurons.store import JobRecord, Store
from neurons.store.engine import utc_now

__all__ = ["MAX_ATTEMPTS", "FineTuningService"]

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5  # runs of one job before an interrupted job is failed instead of resumed
STOP_GRACE_S = 60.0  # how long a stopping worker may take to write its checkpoint
POLL_S = 0.5
UPLOAD_LIMIT = 512 << 20
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class _Run:
    task: asyncio.Task[JobRecord]
    stop: asyncio.Event
    shutdown: bool = False  # stopping because this control plane is going away


class FineTuningService:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        network: NetworkManager,
        *,
        identity: str | None = None,
        python: str = sys.executable,
    ) -> None:
        self.store = store
        self.settings = settings
        self.network = network
        self.identity = identity or runner_identity()
        self.python = python
        root = settings.resolved_fine_tuning_path
        self.data_dir = root / "data"
        self.jobs_dir = root / "jobs"
        self.cache_dir = root / "cache"
        self._runs: dict[str, _Run] = {}
        self._supervisor: asyncio.Task[None] | None = None

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
        """Take the lease and run the job in the background; 409 unless it is pending, failed
        or cancelled."""
        record = await asyncio.to_thread(self.store.fine_tuning.get, job_id)
        next_status(record.status, JobEvent.START)  # 409 before anything else happens
        previous = self._runs.get(record.job_id)
        if previous is not None:  # cancelled, its worker still writing a checkpoint
            previous.stop.set()
            await asyncio.shield(previous.task)
        allowed = [str(s) for (s, e) in JOB_TRANSITIONS if e == JobEvent.START]
        taken = await asyncio.to_thread(
            self.store.fine_tuning.transition,
            record.job_id,
            allowed,
            "running",
            runner=self.identity,
            log="Job started" if record.status == "pending" else "Job restarted",
        )
        self._spawn(taken)
        return taken

    def _spawn(self, taken: JobRecord) -> None:
        stop = asyncio.Event()
        run = _Run(asyncio.create_task(self._run(taken, stop)), stop)
        self._runs[taken.job_id] = run

        def forget(done: asyncio.Task[JobRecord]) -> None:
            current = self._runs.get(taken.job_id)
            if current is not None and current.task is done:
                del self._runs[taken.job_id]

        run.task.add_done_callback(forget)

    async def cancel(self, job_id: str) -> JobRecord:
        """Cancel a pending or running job; its worker is stopped (it keeps a checkpoint, so
        starting the job again resumes it)."""
        record = await asyncio.to_thread(self.store.fine_tuning.get, job_id)
        next_status(record.status, JobEvent.CANCEL)
        record = await asyncio.to_thread(
            self.store.fine_tuning.transition,
            record.job_id,
            ("pending", "running"),
            "cancelled",
            log="Job cancelled",
        )
        run = self._runs.get(record.job_id)
        if run is not None:
            run.stop.set()
            await asyncio.shield(run.task)
        return await asyncio.to_thread(self.store.fine_tuning.get, job_id)

    async def wait(self, job_id: str, timeout: float | None = None) -> JobRecord:
        """Wait for this process's run of the job to end (tests and the CLI use it)."""
        run = self._runs.get(str(job_id))
        if run is not None:
            await asyncio.wait_for(asyncio.shield(run.task), timeout)
        return await asyncio.to_thread(self.store.fine_tuning.get, job_id)

    async def status(self, job_id: str) -> dict[str, Any]:
        record = await asyncio.to_thread(self.store.fine_tuning.get, job_id)
        return record.to_dict()

    async def jobs(self, status: str | None = None) -> list[dict[str, Any]]:
        records = await asyncio.to_thread(self.store.fine_tuning.list, status)
        return [r.to_dict() for r in records]

    # -- running -----------------------------------------------------------------------------

    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / str(int(job_id))

    async def _progress(self, job_id: str, update: Update, *, pid: int | None = None) -> bool:
        return await asyncio.to_thread(
            self.store.fine_tuning.record_progress,
            job_id,
            self.identity,
            phase=update.phase,
            progress=update.progress,
            logs=update.logs,
            metrics=update.metrics,
            eta_s=update.eta_s,
            worker_pid=pid,
        )

    async def _end(self, job_id: str, new: str, *, error: str | None, line: str) -> JobRecord:
        try:
            return await asyncio.to_thread(
                self.store.fine_tuning.transition,
                job_id,
                ("running",),
                new,
                error=error,
                expected_runner=self.identity,
                log=line,
                progress=1.0 if new == "completed" else None,
            )
        except JobStateError:  # cancelled (or adopted) meanwhile: that status stands
            return await asyncio.to_thread(self.store.fine_tuning.get, job_id)

    async def _run(self, taken: JobRecord, stop: asyncio.Event) -> JobRecord:
        job_id = taken.job_id
        try:
            if taken.attempts > MAX_ATTEMPTS:
                raise _JobFailure(f"interrupted {taken.attempts - 1} times; giving up")
            outcome = await self._drive(taken, stop)
        except _LeaseLost:
            outcome = "stopped"
        except _JobFailure as exc:
            log.warning("fine-tuning job %s failed: %s", job_id, exc)
            return await self._end(job_id, "failed", error=str(exc), line=f"Failed: {exc}")
        except NeuronsError as exc:
            log.warning("fine-tuning job %s failed: %s", job_id, exc)
            return await self._end(job_id, "failed", error=str(exc), line=f"Failed: {exc}")
        except Exception as exc:  # a bug must not leave the job running forever
            log.exception("fine-tuning job %s crashed", job_id)
            text = f"{type(exc).__name__}: {exc}"
            return await self._end(job_id, "failed", error=text, line=f"Failed: {text}")
        if outcome == "stopped":
            run = self._runs.get(job_id)
            if run is not None and run.shutdown:
                await asyncio.to_thread(self.store.fine_tuning.release, job_id, self.identity)
            return await asyncio.to_thread(self.store.fine_tuning.get, job_id)
        return await self._end(job_id, "completed", error=None, line="Job completed")

    async def _drive(self, taken: JobRecord, stop: asyncio.Event) -> str:
        """The phases; returns "completed" or "stopped" (cancel, lease lost or shutdown)."""
        job_id = taken.job_id
        config = JobConfig.from_dict(taken.config)
        folder = self.job_dir(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        adapter = folder / "adapter.gguf"
        done_marker = folder / "trained.json"

        if not done_marker.is_file():
            examples = folder / "examples.jsonl"
            if not examples.is_file():
                await self._phase(job_id, "validating")
                await self._validate(job_id, config, examples)
            elif (folder / "checkpoint").exists():
                await self._log(job_id, "Resuming from the last checkpoint")
            if stop.is_set():
                return "stopped"
            await self._phase(job_id, "preparing")
            base = await fetch_base_model(
                self.network.monitor, config.base_model, self.cache_dir / "base"
            )
            await self._log(
                job_id,
                f"Base model {config.base_model} ({base.digest[:19]}) "
                + ("fetched from " if base.downloaded else "cached; from ")
                + base.node,
            )
            spec = WorkerSpec(
                base_gguf=str(base.path),
                base_digest=base.digest,
                cache_dir=str(self.cache_dir / "hf"),
                examples=str(examples),
                hyperparameters=config.hyperparameters.to_dict(),
                adapter_out=str(adapter),
            )
            (folder / "spec.json").write_text(spec.to_json(), encoding="utf-8")
            if stop.is_set():
                return "stopped"
            result = await self._train(job_id, folder, stop)
            if result is None:
                return "stopped"
            done_marker.write_text(json.dumps(result, sort_keys=True), encoding="utf-8")
        if stop.is_set():
            return "stopped"
        if not adapter.is_file():
            raise _JobFailure(f"the adapter {adapter.name} is missing from {folder}")
        await self._phase(job_id, "deploying")
        deployed = await deploy_adapter(
            self.network.monitor,
            base=config.base_model,
            target=config.target_model_name,
            adapter=adapter,
            nodes=config.nodes,
        )
        ok = [n for n, o in deployed["nodes"].items() if o["status"] == "success"]
        for name, outcome in deployed["nodes"].items():
            text = "created" if outcome["status"] == "success" else outcome.get("error")
            await self._log(job_id, f"Deploy {config.target_model_name} on {name}: {text}")
        if not ok:
            raise _JobFailure(f"{config.target_model_name} could not be created on any node")
        answered = await self._smoke(deployed, config.target_model_name)
        await self._progress(
            job_id,
            Update(
                progress=overall_progress("deploying", 1.0),
                metrics={"deployed_to": ok, "adapter_bytes": deployed["adapter_bytes"]},
                logs=[f"{config.target_model_name} answered on {answered}"],
            ),
        )
        return "completed"

    async def _smoke(self, deployed: Mapping[str, Any], model: str) -> str:
        """The new model answers a prompt on one node it was created on (a broken adapter
        fails here, not in a user's first request)."""
        monitor = self.network.monitor
        for name, outcome in deployed["nodes"].items():
            if outcome["status"] != "success":
                continue
            view = monitor.find(name)
            if view is None:
                continue
            client = NodeClient(view.url, name=view.name, client=monitor.http)
            try:
                await client.generate(model, "Hello", options={"num_predict": 4})
            except NeuronsError as exc:
                raise _JobFailure(f"{model} was created on {name} but does not run: {exc}") from exc
            return str(name)
        raise _JobFailure(f"{model} was created but no node answered")

    async def _phase(self, job_id: str, phase: str) -> None:
        held = await self._progress(
            job_id,
            Update(phase=phase, progress=overall_progress(phase), logs=[f"Phase: {phase}"]),
        )
        if not held:
            raise _LeaseLost()

    async def _log(self, job_id: str, line: str) -> None:
        await self._progress(job_id, Update(logs=[line]))

    async def _validate(self, job_id: str, config: JobConfig, examples: Path) -> None:
        try:
            path = confine(self.data_dir, config.training_data)
        except InvalidRequestError as exc:
            raise _JobFailure(str(exc)) from exc
        report = await asyncio.to_thread(
            validate_file,
            path,
            config.data_type,
            column_mapping=config.column_mapping or None,
            max_tokens=config.hyperparameters.max_seq_length,
        )
        lines = [report.summary()]
        lines += [f"line {p.line}: {p.message}" for p in report.problems[:20]]
        await self._progress(job_id, Update(logs=lines, metrics={"data": report.to_dict()}))
        if not report.examples:
            raise _JobFailure(f"no valid training examples: {report.summary()}")
        partial = examples.with_suffix(".partial")
        with partial.open("w", encoding="utf-8") as handle:
            for example in report.examples:
                handle.write(json.dumps(example.to_dict(), ensure_ascii=False) + "\n")
        partial.replace(examples)

    async def _train(self, job_id: str, folder: Path, stop: asyncio.Event) -> dict[str, Any] | None:
        """Run the worker to its end; its ``done`` event, or None when it was stopped."""
        events = folder / "events.jsonl"
        tail = EventTail(events)
        tracker = ProgressTracker(phase="preparing")
        env = dict(os.environ)
        with (folder / "worker.log").open("ab") as log_file:
            process = await asyncio.create_subprocess_exec(
                self.python,
                "-m",
                "neurons.finetune.worker",
                str(folder),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                env=env,
            )
        log.info("fine-tuning job %s: worker pid %d", job_id, process.pid)
        held = await self._progress(job_id, Update(), pid=process.pid)
        exited = asyncio.create_task(process.wait())
        stopping_since: float | None = None
        heartbeat_s = max(POLL_S, self.settings.fine_tuning_lease_s / 3)
        written = time.monotonic()
        try:
            while True:
                await asyncio.wait({exited}, timeout=POLL_S)
                update = Update()
                for event in tail.read():
                    update.merge(tracker.feed(event))
                # New events are written at once; a quiet worker renews the lease only.
                if update or time.monotonic() - written >= heartbeat_s:
                    held = await self._progress(job_id, update) and held
                    written = time.monotonic()
                if exited.done():
                    break
                if (stop.is_set() or not held) and stopping_since is None:
                    stopping_since = time.monotonic()
                    process.send_signal(signal.SIGTERM)  # checkpoint, then exit 75
                elif (
                    stopping_since is not None and time.monotonic() - stopping_since > STOP_GRACE_S
                ):
                    process.kill()
        finally:
            if not exited.done():  # this task was cancelled: never leave a trainer behind
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await exited
        code = process.returncode
        if code == EXIT_OK and tracker.done is not None:
            return tracker.done
        if code == EXIT_STOPPED or stopping_since is not None:
            if not held:
                stop.set()
            return None
        reason = tracker.error or _tail(folder / "worker.log") or f"exit code {code}"
        raise _JobFailure(f"training failed: {reason}")

    # -- resuming ----------------------------------------------------------------------------

    def _orphaned(self, record: JobRecord) -> bool:
        if record.job_id in self._runs:
            return False
        if record.runner is None or runner_is_dead(record.runner):
            return True
        stale = timedelta(seconds=self.settings.fine_tuning_lease_s)
        return record.heartbeat_at is None or utc_now() - record.heartbeat_at > stale

    async def adopt_orphans(self) -> list[str]:
        """Resume every ``running`` job whose control plane is gone; the ids adopted."""
        adopted = []
        for record in await asyncio.to_thread(self.store.fine_tuning.list, "running"):
            if not self._orphaned(record):
                continue
            here = record.runner is None or record.runner.startswith(socket.gethostname() + ":")
            if here and record.worker_pid is not None and pid_exists(record.worker_pid):
                continue  # its worker is still checkpointing; adopt on a later pass
            try:
                taken = await asyncio.to_thread(
                    self.store.fine_tuning.transition,
                    record.job_id,
                    ("running",),
                    "running",
                    runner=self.identity,
                    expected_runner=record.runner or "",
                    log="Resumed by a new control plane",
                )
            except JobStateError:
                continue  # another control plane was faster
            log.info("resuming fine-tuning job %s (its control plane is gone)", record.job_id)
            self._spawn(taken)
            adopted.append(record.job_id)
        return adopted

    def start_supervisor(self) -> None:
        if self._supervisor is None:
            interval = max(0.2, self.settings.fine_tuning_lease_s / 3)
            self._supervisor = asyncio.create_task(
                lifecycle.supervise(self.adopt_orphans, interval, log, "fine-tuning")
            )

    async def aclose(self) -> None:
        """Stop the supervisor and this process's jobs: each worker writes a checkpoint, and
        its job stays ``running`` with the lease given back, so the next control plane
        resumes it at once."""
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        runs = list(self._runs.values())
        for run in runs:
            run.shutdown = True
            run.stop.set()
        if runs:
            await asyncio.gather(*(run.task for run in runs), return_exceptions=True)


class _JobFailure(Exception):
    """Ends the job ``failed`` with this message as its reason."""


class _LeaseLost(Exception):
    """The job was cancelled or adopted meanwhile."""


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return " | ".join(kept[-lines:])
