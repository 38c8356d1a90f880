"""One runtime for every kind of background work: leases, stop signals, adoption, cancels.

A kind (optimization sessions, fine-tuning jobs, learning runs) supplies a :class:`JobKind`:
its :class:`~neurons.jobs.leases.LeaseTable` and ``execute``. :class:`JobRuntime` does the
rest, the same way for all of them:

- ``start`` moves the row to ``running`` under this process's lease (compare-and-set: of two
  processes starting one job, one wins, the other gets the kind's 409) and runs ``execute`` as
  a task here;
- while it runs, a watcher reads the row every ``poll_s`` and renews the lease every third
  of ``lease_s``. When the row is no longer ours (a ``neurons ... cancel`` from another shell,
  the REST API of another control plane, an adoption) the run's :class:`StopSignal` is set
  with the reason, and the job stops at its next safe point;
- ``execute`` returning completes the job; raising :class:`JobStopped` after its signal ends
  it by the signal's reason (``cancel``: cancelled; ``shutdown``: still ``running`` with the
  lease given back, for the next process to resume; ``lease_lost``: nothing, it is not ours);
  any other exception fails it with the message as its reason;
- a supervisor adopts ``running`` rows whose runner is gone: released at a shutdown, a dead
  pid on this host, or a heartbeat older than ``lease_s``. Adoption is a compare-and-set on
  the runner seen, so no row is ever adopted twice;
- every move is published (``job.transition``) when a ``publish`` callable is given.

The smallest kind, as documentation::

    class Sleep(JobKind):
        name = "sleep"

        async def execute(self, job_id: str, stop: StopSignal, runner: str) -> None:
            for _ in range(10):
                if stop.is_set():
                    raise JobStopped(stop.reason)
                await asyncio.sleep(0.1)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar, Protocol, TypeVar

from neurons.errors import NeuronsError
from neurons.jobs.leases import Lease, LeaseTable, lost_reason
from neurons.jobs.runners import runner_identity, runner_is_dead
from neurons.jobs.signals import StopReason, StopSignal
from neurons.lifecycle import TRANSITIONS, Event
from neurons.store.engine import utc_now

__all__ = [
    "JobKind",
    "JobRuntime",
    "JobStopped",
    "Publish",
    "StopReason",
    "StopSignal",
    "follow",
]

log = logging.getLogger(__name__)
T = TypeVar("T")


class Publish(Protocol):
    def __call__(self, kind: str, subject: str = "", **payload: Any) -> None: ...


class JobStopped(Exception):
    """Raised by ``execute`` when it stopped because its :class:`StopSignal` was set (after
    checkpointing whatever lets the job resume)."""


class JobKind(ABC):
    """A kind of background work.

    Contract:

    - ``name`` names the kind in events, logs and errors;
    - ``leases`` is its table's :class:`LeaseTable` (the runtime's only way to the rows);
    - ``execute(job_id, stop, runner)`` runs the job to its end in this process. It may be
      called for a job that ran before (a restart after failure or cancel, or an adoption
      after its runner died): it resumes from what the job stored. It checks ``stop`` at safe
      points and then raises :class:`JobStopped`. It may write progress through
      ``leases.renew(job_id, runner, ..., stop=stop)``; a False answer means the job is no
      longer its own, and ``stop`` is then set saying why. What it returns is written with the
      completing move (say, a final progress);
    - ``failed_values(error)`` is written with a failing move (default: nothing more).
    """

    name: ClassVar[str]
    leases: LeaseTable

    @abstractmethod
    async def execute(
        self, job_id: str, stop: StopSignal, runner: str
    ) -> Mapping[str, Any] | None: ...

    def failed_values(self, error: str) -> Mapping[str, Any]:
        return {}


@dataclass
class _Run:
    task: asyncio.Task[None]
    stop: StopSignal


def _from(event: Event) -> tuple[str, ...]:
    return tuple(str(status) for (status, happened) in TRANSITIONS if happened == event)


class JobRuntime:
    """Runs one kind's jobs in this process (see the module docstring)."""

    def __init__(
        self,
        kind: JobKind,
        *,
        lease_s: float,
        poll_s: float = 0.5,
        publish: Publish | None = None,
    ) -> None:
        self.kind = kind
        self.leases = kind.leases
        self.lease_s = lease_s
        self.poll_s = min(poll_s, lease_s / 3)
        self.publish = publish
        self.identity = runner_identity()
        self._runs: dict[str, _Run] = {}
        self._supervisor: asyncio.Task[None] | None = None

    # -- moves -------------------------------------------------------------------------------

    async def start(self, job_id: str | int) -> Lease:
        """Run a pending, failed or cancelled job here; the kind's 409 otherwise."""
        key = str(self.leases.key(job_id))
        previous = self._runs.get(key)
        if previous is not None:
            # Cancelled but still reaching its safe point: let it end before the new run
            # takes the row, or its ending would write over the new run's.
            previous.stop.stop(StopReason.CANCEL)
            await asyncio.shield(previous.task)
        before = await asyncio.to_thread(self.leases.lease, key)
        await asyncio.to_thread(
            self.leases.transition, key, _from(Event.START), "running", runner=self.identity
        )
        self._announce(key, before.status, "running")
        self._spawn(key)
        return await asyncio.to_thread(self.leases.lease, key)

    async def cancel(self, job_id: str | int) -> Lease:
        """Cancel a pending or running job, wherever it runs: here its signal is set at once;
        a runner elsewhere sees the row change within ``poll_s``."""
        key = str(self.leases.key(job_id))
        before = await asyncio.to_thread(self.leases.lease, key)
        await asyncio.to_thread(self.leases.transition, key, _from(Event.CANCEL), "cancelled")
        self._announce(key, before.status, "cancelled")
        run = self._runs.get(key)
        if run is not None:
            run.stop.stop(StopReason.CANCEL)
        return await asyncio.to_thread(self.leases.lease, key)

    async def wait(self, job_id: str | int, timeout: float | None = None) -> Lease:
        """Wait for this process's run of the job to end, then its row."""
        key = str(self.leases.key(job_id))
        run = self._runs.get(key)
        if run is not None:
            await asyncio.wait_for(asyncio.shield(run.task), timeout)
        return await asyncio.to_thread(self.leases.lease, key)

    def runs_here(self, job_id: str | int) -> bool:
        return str(job_id) in self._runs

    # -- running -----------------------------------------------------------------------------

    def _spawn(self, key: str) -> None:
        stop = StopSignal()
        task = asyncio.create_task(self._run(key, stop), name=f"{self.kind.name}-{key}")
        run = _Run(task, stop)
        self._runs[key] = run

        def forget(_: asyncio.Task[None]) -> None:
            if self._runs.get(key) is run:  # not a newer run's
                del self._runs[key]

        task.add_done_callback(forget)

    async def _run(self, key: str, stop: StopSignal) -> None:
        watcher = asyncio.create_task(self._watch(key, stop))
        try:
            values = await self.kind.execute(key, stop, self.identity)
        except JobStopped:
            await self._stopped(key, stop.reason or StopReason.CANCEL)
        except NeuronsError as exc:  # raised on purpose (bad data, a node that refused): the
            # message is the whole story, and a traceback on a CLI's stderr would hide it
            log.warning("%s %s failed: %s", self.kind.name, key, exc)
            await self._end(key, "failed", error=str(exc) or type(exc).__name__)
        except Exception as exc:  # the job failed: keep the reason, not the process
            log.exception("%s %s failed", self.kind.name, key)
            await self._end(key, "failed", error=str(exc) or type(exc).__name__)
        else:
            await self._end(key, "completed", values=values)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _stopped(self, key: str, reason: str) -> None:
        if reason == StopReason.SHUTDOWN:
            await asyncio.to_thread(self.leases.release, key, self.identity)
        elif reason == StopReason.CANCEL:
            await self._end(key, "cancelled")
        # LEASE_LOST: the row is another process's now

    async def _end(
        self,
        key: str,
        status: str,
        *,
        error: str | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> None:
        extra = dict(values or {})
        if error is not None:
            extra.update(self.kind.failed_values(error))
        try:
            await asyncio.to_thread(
                self.leases.transition,
                key,
                ("running",),
                status,
                error=error,
                expected_runner=self.identity,
                values=extra,
            )
        except Exception as exc:  # cancelled or adopted meanwhile: that move stands
            log.debug("%s %s: not %s (%s)", self.kind.name, key, status, exc)
            return
        self._announce(key, "running", status, error)

    async def _watch(self, key: str, stop: StopSignal) -> None:
        """Notice a cancel or an adoption elsewhere; renew the lease meanwhile."""
        renew_every = self.lease_s / 3
        renewed = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(self.poll_s)
            try:
                if time.monotonic() - renewed >= renew_every:
                    renew = self.leases.renew
                    held = await asyncio.to_thread(renew, key, self.identity, stop=stop)
                    renewed = time.monotonic()
                else:
                    lease = await asyncio.to_thread(self.leases.lease, key)
                    held = lease.status == "running" and lease.runner == self.identity
                    if not held:
                        stop.stop(lost_reason(lease))
                if not held:
                    log.info("%s %s: %s elsewhere; stopping", self.kind.name, key, stop.reason)
            except Exception:  # a locked database must not kill the run: try again
                log.exception("%s %s: lease check failed", self.kind.name, key)

    def _announce(
        self, key: str, old: str, new: str, error: str | None = None, **more: Any
    ) -> None:
        if self.publish is None:
            return
        try:
            self.publish(
                "job.transition",
                f"{self.kind.name}/{key}",
                job_kind=self.kind.name,
                job_id=key,
                previous=old,
                status=new,
                error=error,
                **more,
            )
        except Exception:  # the bus must never break the job
            log.exception("publishing %s %s failed", self.kind.name, key)

    # -- adoption ----------------------------------------------------------------------------

    def _orphaned(self, lease: Lease) -> bool:
        if lease.job_id in self._runs:
            return False
        if lease.runner is None or runner_is_dead(lease.runner):
            return True
        stale = timedelta(seconds=self.lease_s)
        return lease.heartbeat_at is None or utc_now() - lease.heartbeat_at > stale

    async def adopt_orphans(self) -> list[str]:
        """Run here every ``running`` job whose runner is gone; the ids adopted."""
        adopted = []
        for lease in await asyncio.to_thread(self.leases.leases, "running"):
            if not self._orphaned(lease):
                continue
            try:
                await asyncio.to_thread(
                    self.leases.transition,
                    lease.job_id,
                    ("running",),
                    "running",
                    runner=self.identity,
                    expected_runner=lease.runner or "",
                )
            except Exception:
                continue  # another process was faster, or the job moved on
            log.info("resuming %s %s (its runner is gone)", self.kind.name, lease.job_id)
            self._announce(lease.job_id, "running", "running", adopted=True)
            self._spawn(lease.job_id)
            adopted.append(lease.job_id)
        return adopted

    def start_supervisor(self, interval_s: float | None = None) -> None:
        """Adopt orphans now and every ``interval_s`` (default: a third of the lease)."""
        if self._supervisor is None:
            every = interval_s if interval_s is not None else max(0.2, self.lease_s / 3)
            self._supervisor = asyncio.create_task(self._supervise(every))

    async def _supervise(self, every: float) -> None:
        while True:
            try:
                await self.adopt_orphans()
            except Exception:  # the supervisor must outlive a bad row or a locked database
                log.exception("%s supervisor pass failed", self.kind.name)
            await asyncio.sleep(every)

    async def aclose(self, deadline_s: float = 60.0) -> None:
        """Stop the supervisor and this process's runs: each checkpoints at its next safe
        point and stays ``running`` with its lease given back, so the next process resumes it
        at once. A run still going after ``deadline_s`` is cancelled as a task (its lease is
        given back all the same)."""
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        runs = dict(self._runs)
        for run in runs.values():
            run.stop.stop(StopReason.SHUTDOWN)
        if not runs:
            return
        _, late = await asyncio.wait([r.task for r in runs.values()], timeout=deadline_s)
        for task in late:
            task.cancel()
        for key, run in runs.items():
            if run.task in late:
                await asyncio.to_thread(self.leases.release, key, self.identity)


async def follow(
    read: Callable[[], Awaitable[T]], done: Callable[[T], bool], interval_s: float = 0.3
) -> AsyncIterator[T]:
    """Yield ``read()`` every ``interval_s`` until ``done`` holds for what it read (that last
    reading included): how every CLI follows a job in the foreground."""
    while True:
        state = await read()
        yield state
        if done(state):
            return
        await asyncio.sleep(interval_s)
