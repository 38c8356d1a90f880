"""Fine-tuning jobs as a kind of background work on the jobs runtime (:mod:`neurons.jobs`).

:class:`FineTuningKind` drives one job through its phases; the runtime does the rest (the
lease, a cancel from any process, adoption of orphans, the status moves):

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

**Stopping.** When the run's :class:`~neurons.jobs.StopSignal` is set, the worker gets
SIGTERM, writes a checkpoint at its next optimizer step and exits; then :class:`JobStopped`.
A worker that has not taken a step yet has nothing to save and is killed after
:data:`UNSTARTED_GRACE_S`, so a cancel lands within seconds even while the base loads.

**One trainer per job.** The worker dies with the process that started it
(``PR_SET_PDEATHSIG``, checkpointing on the way). A run that finds the job's previous worker
(``worker_pid``) still training, as after a ``kill -9`` of its control plane, stops it and
waits for it to exit before it starts its own. A job run more than :data:`MAX_ATTEMPTS`
times, or whose frozen data vanished, fails with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from neurons.client import NodeClient
from neurons.config import Settings
from neurons.errors import InvalidRequestError, JobNotFoundError, JobStateError, NeuronsError
from neurons.finetune.data import validate_file
from neurons.finetune.deploy import deploy_adapter, fetch_base_model
from neurons.finetune.jobs import JobConfig, confine, overall_progress
from neurons.finetune.progress import EventTail, ProgressTracker, Update
from neurons.finetune.worker import EVENTS, EXIT_OK, EXIT_STOPPED, SPEC, WorkerSpec
from neurons.jobs import JobKind, JobStopped, LeaseTable, StopSignal
from neurons.jobs.runners import pid_exists
from neurons.network.manager import NetworkManager
from neurons.store import JobRecord, Store
from neurons.store.finetune import appended, jobs_table, log_appended, progress_columns

__all__ = ["MAX_ATTEMPTS", "FineTuningKind", "job_leases"]

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5  # runs of one job before an interrupted job is failed instead of resumed
STOP_GRACE_S = 60.0  # how long a stopping worker may take to write its checkpoint
UNSTARTED_GRACE_S = 2.0  # the same for a worker still loading: it has nothing to save
POLL_S = 0.5


def job_leases(store: Store) -> LeaseTable:
    """The lifecycle columns of ``fine_tuning_jobs``; a worker's pid and an ETA only mean
    something while a runner holds the job."""
    return LeaseTable(
        store.engine,
        jobs_table,
        what="fine-tuning job",
        not_found=JobNotFoundError,
        refused=JobStateError,
        cleared_on_release=("worker_pid", "eta_s"),
    )


class _JobFailure(NeuronsError):
    """Ends the job ``failed`` with this message as its reason (the runtime writes it; it
    never leaves this module)."""


@dataclass
class _Run:
    """One run of a job: where its progress goes while ``runner`` holds it."""

    leases: LeaseTable
    job_id: str
    runner: str
    stop: StopSignal

    async def write(self, update: Update, *, worker_pid: int | None = None) -> None:
        """Write ``update`` with a renewal of the lease. A refused renewal means the job was
        cancelled or taken over: the signal is set with that reason (before the runtime's
        watcher notices), so the next safe point stops."""
        values = progress_columns(
            phase=update.phase, progress=update.progress, eta_s=update.eta_s, worker_pid=worker_pid
        )
        computed = appended(update.logs, update.metrics)
        await asyncio.to_thread(
            self.leases.renew, self.job_id, self.runner, values, computed, stop=self.stop
        )

    async def log(self, line: str) -> None:
        await self.write(Update(logs=[line]))

    async def phase(self, phase: str) -> None:
        """Enter ``phase``: a safe point."""
        progress = overall_progress(phase)
        await self.write(Update(phase=phase, progress=progress, logs=[f"Phase: {phase}"]))
        self.check()

    def check(self) -> None:
        if self.stop.is_set():
            raise JobStopped(self.stop.reason)


class FineTuningKind(JobKind):
    """Fine-tuning jobs: rows of ``fine_tuning_jobs``, files under ``FINE_TUNING_PATH``."""

    name: ClassVar[str] = "fine-tuning"

    def __init__(self, store: Store, settings: Settings, network: NetworkManager) -> None:
        self.store = store
        self.network = network
        root = settings.resolved_fine_tuning_path
        self.data_dir = root / "data"
        self.jobs_dir = root / "jobs"
        self.cache_dir = root / "cache"
        self.leases = job_leases(store)
        self.torch_threads = settings.torch_threads

    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / str(int(job_id))

    async def execute(self, job_id: str, stop: StopSignal, runner: str) -> Mapping[str, Any]:
        record = await asyncio.to_thread(self.store.fine_tuning.get, job_id)
        try:
            await self._drive(record, _Run(self.leases, job_id, runner, stop))
        except (JobStopped, NeuronsError):
            raise
        except Exception as exc:  # a bug: the job fails, its reason naming the error's type
            log.exception("fine-tuning job %s crashed", job_id)
            raise _JobFailure(f"{type(exc).__name__}: {exc}") from exc
        return {"progress": repr(1.0), "logs": log_appended("Job completed")}

    def failed_values(self, error: str) -> Mapping[str, Any]:
        return {"logs": log_appended(f"Failed: {error}")}

    async def _drive(self, record: JobRecord, run: _Run) -> None:
        if record.attempts > MAX_ATTEMPTS:
            raise _JobFailure(f"interrupted {record.attempts - 1} times; giving up")
        attempt = record.attempts
        await run.log("Job started" if attempt == 1 else f"Job resumed (attempt {attempt})")
        config = JobConfig.from_dict(record.config)
        folder = self.job_dir(record.job_id)
        folder.mkdir(parents=True, exist_ok=True)
        await _previous_worker_stopped(record.worker_pid, folder, run)
        adapter = folder / "adapter.gguf"
        trained = folder / "trained.json"
        if not trained.is_file():
            examples = folder / "examples.jsonl"
            if not examples.is_file():
                await run.phase("validating")
                await self._validate(run, config, examples)
            elif (folder / "checkpoint").exists():
                await run.log("Resuming from the last checkpoint")
            await run.phase("preparing")
            base = await fetch_base_model(
                self.network.monitor, config.base_model, self.cache_dir / "base"
            )
            where = "fetched from " if base.downloaded else "cached; from "
            await run.log(f"Base model {config.base_model} ({base.digest[:19]}) {where}{base.node}")
            spec = WorkerSpec(
                base_gguf=str(base.path),
                base_digest=base.digest,
                cache_dir=str(self.cache_dir / "hf"),
                examples=str(examples),
                hyperparameters=config.hyperparameters.to_dict(),
                adapter_out=str(adapter),
                torch_threads=self.torch_threads,
            )
            (folder / SPEC).write_text(spec.to_json(), encoding="utf-8")
            run.check()
            result = await _train(run, folder, record.metrics.get("loss_curve"))
            trained.write_text(json.dumps(result, sort_keys=True), encoding="utf-8")
        run.check()
        if not adapter.is_file():
            raise _JobFailure(f"the adapter {adapter.name} is missing from {folder}")
        await run.phase("deploying")
        await self._deploy(run, config, adapter)

    async def _validate(self, run: _Run, config: JobConfig, examples: Path) -> None:
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
        await run.write(Update(logs=lines, metrics={"data": report.to_dict()}))
        if not report.examples:
            raise _JobFailure(f"no valid training examples: {report.summary()}")
        partial = examples.with_suffix(".partial")
        with partial.open("w", encoding="utf-8") as handle:
            for example in report.examples:
                handle.write(json.dumps(example.to_dict(), ensure_ascii=False) + "\n")
        partial.replace(examples)

    async def _deploy(self, run: _Run, config: JobConfig, adapter: Path) -> None:
        target = config.target_model_name
        deployed = await deploy_adapter(
            self.network.monitor,
            base=config.base_model,
            target=target,
            adapter=adapter,
            nodes=config.nodes,
        )
        ok = [n for n, o in deployed["nodes"].items() if o["status"] == "success"]
        for name, outcome in deployed["nodes"].items():
            text = "created" if outcome["status"] == "success" else outcome.get("error")
            await run.log(f"Deploy {target} on {name}: {text}")
        if not ok:
            raise _JobFailure(f"{target} could not be created on any node")
        answered = await self._smoke(deployed, target)
        await run.write(
            Update(
                progress=overall_progress("deploying", 1.0),
                metrics={"deployed_to": ok, "adapter_bytes": deployed["adapter_bytes"]},
                logs=[f"{target} answered on {answered}"],
            )
        )

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


async def _train(run: _Run, folder: Path, curve: Any = None) -> dict[str, Any]:
    """Run the worker to its end: its ``done`` event. Once the signal is set the worker is
    stopped (a checkpoint kept) and :class:`JobStopped` raised."""
    tail = EventTail(folder / EVENTS)
    tracker = ProgressTracker(phase="preparing", curve=curve if isinstance(curve, list) else None)
    with (folder / "worker.log").open("ab") as log_file:
        # Started from the event loop's thread, which lives as long as this process: the
        # parent-death signal follows that thread. A session of its own: a Ctrl-C in the
        # terminal reaches the control plane, which decides how the worker stops.
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "neurons.finetune.worker",
            str(folder),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,
        )
    log.info("fine-tuning job %s: worker pid %d", run.job_id, process.pid)
    await run.write(Update(), worker_pid=process.pid)
    exited = asyncio.create_task(process.wait())
    stopping_since: float | None = None
    try:
        while not exited.done():
            await asyncio.wait({exited}, timeout=POLL_S)
            update = Update()
            for event in tail.read():
                update.merge(tracker.feed(event))
            if update:
                await run.write(update)
            if exited.done() or not run.stop.is_set():
                continue
            if stopping_since is None:
                stopping_since = time.monotonic()
                process.send_signal(signal.SIGTERM)  # checkpoint, then exit 75
            grace = STOP_GRACE_S if tracker.stepped else UNSTARTED_GRACE_S
            if time.monotonic() - stopping_since > grace:
                process.kill()
    finally:
        if not exited.done():  # this task was cancelled: never leave a trainer behind
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await exited
    if process.returncode == EXIT_OK and tracker.done is not None:
        return tracker.done  # finished as it was asked to stop: the training is kept
    run.check()
    if process.returncode == EXIT_STOPPED:  # a signal from outside, not from this run
        raise _JobFailure("the training worker was stopped; start the job again to resume")
    reason = tracker.error or _tail(folder / "worker.log") or f"exit code {process.returncode}"
    raise _JobFailure(f"training failed: {reason}")


async def _previous_worker_stopped(pid: int | None, folder: Path, run: _Run) -> None:
    """Return once the job's previous worker, if it still trains, has exited (it gets
    SIGTERM and keeps its checkpoint; killed after :data:`STOP_GRACE_S`): its control plane
    died without stopping it, and two trainers must never write one job's checkpoint."""
    if pid is None or not _trains(pid, folder):
        return
    await run.log(f"Waiting for the previous worker (pid {pid}) to stop")
    deadline = time.monotonic() + STOP_GRACE_S
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGTERM)  # its parent-death signal may have been missed
    while _trains(pid, folder):
        run.check()  # a cancel meanwhile: the old worker is stopping all the same
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(POLL_S)


def _trains(pid: int, folder: Path) -> bool:
    """Whether ``pid`` is a live training worker of the job in ``folder``, here. Its command
    line tells: a pid recorded on another host, or reused since by another process, is not."""
    if not pid_exists(pid):
        return False
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc to read (not Linux): the pid is all there is to go by
    return b"neurons.finetune.worker" in args and os.fsencode(folder) in args


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return " | ".join(kept[-lines:])
