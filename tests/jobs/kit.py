"""The jobs runtime's conformance kit, in the style of optuna's storage tests: the same checks
over every kind of background work (a kind's test module builds a :class:`Harness` and calls
each ``check_*``).

Every check runs the job the way a user does: in the foreground of another process (the
kind's CLI), cancelled from yet another process, or killed with SIGKILL, while this process
plays the control plane with :class:`~neurons.jobs.JobRuntime` instances of its own.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from neurons.jobs import JobRuntime, Lease

__all__ = [
    "Harness",
    "check_cancel_from_another_process",
    "check_kill_9",
    "check_start_race",
    "kill_9_when",
]

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Harness:
    """One kind, as the kit sees it.

    ``new_job()`` makes a pending job that runs for several seconds at least;
    ``runtime()`` a runtime for it in this process (a control plane's, with a short lease);
    ``run_argv(id)`` runs the job in the foreground of a process of its own, and
    ``cancel_argv(id)`` cancels it from another one; ``lease(id)`` reads its row;
    ``stop_s`` bounds how long the job takes to reach a safe point; ``env`` is the
    processes' environment (their state directory).
    """

    new_job: Callable[[], str]
    runtime: Callable[[], JobRuntime]
    run_argv: Callable[[str], list[str]]
    cancel_argv: Callable[[str], list[str]]
    lease: Callable[[str], Lease]
    env: dict[str, str]
    stop_s: float = 10.0
    end_s: float = 120.0
    log: Path | None = None


def _until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _foreground(h: Harness, job_id: str) -> subprocess.Popen[bytes]:
    out = open(h.log, "ab") if h.log is not None else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(
        h.run_argv(job_id), cwd=ROOT, env={**os.environ, **h.env}, stdout=out, stderr=out
    )
    pid = str(process.pid)

    def running_there() -> bool:
        lease = h.lease(job_id)
        if process.poll() is not None:
            raise AssertionError(f"the foreground run exited {process.returncode} early")
        return lease.status == "running" and (lease.runner or "").split(":")[1:2] == [pid]

    _until(running_there, h.end_s, "the foreground process to run the job")
    return process


def kill_9_when(h: Harness, job_id: str, reached: Callable[[], bool], what: str) -> None:
    """Run the job in the foreground of its own process and SIGKILL that process once
    ``reached()`` holds (say, a checkpoint written): a crash with work behind it."""
    process = subprocess.Popen(
        h.run_argv(job_id),
        cwd=ROOT,
        env={**os.environ, **h.env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + h.end_s
        while not reached():
            assert process.poll() is None and time.monotonic() < deadline, f"no {what}"
            time.sleep(0.05)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()


def check_cancel_from_another_process(h: Harness) -> None:
    """A cancel from a third process stops the run in the foreground process within
    ``stop_s``; the job ends ``cancelled`` and that process exits."""
    job_id = h.new_job()
    process = _foreground(h, job_id)
    try:
        subprocess.run(
            h.cancel_argv(job_id),
            cwd=ROOT,
            env={**os.environ, **h.env},
            check=True,
            capture_output=True,
            timeout=h.end_s,
        )
        asked = time.monotonic()
        process.wait(timeout=h.stop_s + 10)
        took = time.monotonic() - asked
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert took <= h.stop_s + 10, took
    lease = h.lease(job_id)
    assert lease.status == "cancelled" and lease.runner is None, lease


def check_kill_9(h: Harness, seed: int = 0) -> None:
    """SIGKILL the foreground process at a random moment of its run. Two control planes
    racing to adopt the orphan adopt it once between them, and it ends resumed
    (``completed``) or ``failed`` with its reason."""
    job_id = h.new_job()
    process = _foreground(h, job_id)
    time.sleep(random.Random(seed).uniform(0.0, 1.5))
    os.kill(process.pid, signal.SIGKILL)
    process.wait()  # reaped: its pid is gone, as after a crash

    async def race() -> Lease:
        first, second = h.runtime(), h.runtime()
        try:
            adopted = await asyncio.gather(first.adopt_orphans(), second.adopt_orphans())
            assert sorted(adopted[0] + adopted[1]) == [job_id], adopted
            owner = first if adopted[0] else second
            return await owner.wait(job_id, timeout=h.end_s)
        finally:
            await first.aclose()
            await second.aclose()

    lease = asyncio.run(race())
    assert lease.status in ("completed", "failed"), lease
    if lease.status == "failed":
        assert lease.error, lease


def check_start_race(h: Harness) -> None:
    """Two control planes starting one pending job: one runs it, the other gets a 409."""

    async def race() -> None:
        job_id = h.new_job()
        first, second = h.runtime(), h.runtime()
        try:
            results = await asyncio.gather(
                first.start(job_id), second.start(job_id), return_exceptions=True
            )
            errors = [r for r in results if isinstance(r, BaseException)]
            assert len(errors) == 1, results
            assert getattr(errors[0], "http_status", None) == 409, errors
            owner = first if first.runs_here(job_id) else second
            await owner.cancel(job_id)
            lease = await owner.wait(job_id, timeout=h.end_s)
            assert lease.status == "cancelled", lease
        finally:
            await first.aclose()
            await second.aclose()

    asyncio.run(race())
