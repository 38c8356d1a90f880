"""The jobs runtime on its smallest kind (the ticker), in this process and across processes.
The same checks run over the three real kinds (tests/jobs/test_kit_*.py)."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from neurons.errors import InvalidRequestError
from neurons.jobs import JobRuntime, Lease, StopReason, StopSignal
from neurons.store import Store
from tests.jobs import kit
from tests.jobs.ticker import LEASE_S, Ticker, new_job
from tests.pg import db_url

__all__ = ["db_url"]  # the fixture, run on both backends (tests/pg.py)


@pytest.fixture
def harness(store: Store, db_url: str, tmp_path: Path) -> kit.Harness:
    module = [sys.executable, "-m", "tests.jobs.ticker", db_url]
    return kit.Harness(
        new_job=lambda: new_job(store, 40),
        runtime=lambda: JobRuntime(Ticker(store), lease_s=LEASE_S, poll_s=0.1),
        run_argv=lambda job: [*module, "run", job],
        cancel_argv=lambda job: [*module, "cancel", job],
        lease=Ticker(store).leases.lease,
        env={},
        stop_s=2.0,
        end_s=30.0,
        log=tmp_path / "ticker.log",
    )


def test_cancel_from_another_process(harness: kit.Harness) -> None:
    kit.check_cancel_from_another_process(harness)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kill_9_is_adopted_once_and_resumed(harness: kit.Harness, seed: int) -> None:
    kit.check_kill_9(harness, seed)


def test_start_race(harness: kit.Harness) -> None:
    kit.check_start_race(harness)


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_job_completes_and_every_move_is_published(store: Store) -> None:
    seen: list[tuple[str, str, dict[str, Any]]] = []

    async def go() -> str:
        runtime = JobRuntime(
            Ticker(store),
            lease_s=LEASE_S,
            poll_s=0.1,
            publish=lambda kind, subject="", **payload: seen.append((kind, subject, payload)),
        )
        job = new_job(store, 3)
        await runtime.start(job)
        lease = await runtime.wait(job, timeout=10)
        await runtime.aclose()
        assert lease.status == "completed" and lease.runner is None
        return job

    job = _run(go())
    assert store.learning.get(job).current_round == 3
    moves = [(p["previous"], p["status"]) for _, _, p in seen]
    assert moves == [("pending", "running"), ("running", "completed")]
    assert {kind for kind, _, _ in seen} == {"job.transition"}
    assert {subject for _, subject, _ in seen} == {f"ticker/{job}"}


def test_a_failure_keeps_its_reason_and_a_restart_resumes(store: Store) -> None:
    async def go() -> None:
        job = new_job(store, 5)
        broken = JobRuntime(Ticker(store, fail_at=3), lease_s=LEASE_S, poll_s=0.1)
        await broken.start(job)
        lease = await broken.wait(job, timeout=10)
        assert lease.status == "failed" and lease.error == "tick 3 broke"
        assert store.learning.get(job).current_round == 2
        healthy = JobRuntime(Ticker(store), lease_s=LEASE_S, poll_s=0.1)
        await healthy.start(job)
        lease = await healthy.wait(job, timeout=10)
        assert lease.status == "completed" and lease.error is None
        await broken.aclose()
        await healthy.aclose()

    _run(go())


def test_a_failure_raised_on_purpose_is_logged_without_a_traceback(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    class Refusing(Ticker):
        async def execute(self, job_id: str, stop: StopSignal, runner: str) -> Mapping[str, Any]:
            raise InvalidRequestError("no valid examples")

    async def go() -> Lease:
        runtime = JobRuntime(Refusing(store), lease_s=LEASE_S, poll_s=0.1)
        job = new_job(store, 3)
        await runtime.start(job)
        lease = await runtime.wait(job, timeout=10)
        await runtime.aclose()
        return lease

    with caplog.at_level(logging.WARNING, logger="neurons.jobs.runtime"):
        lease = _run(go())
    assert lease.status == "failed" and lease.error == "no valid examples"
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert record.getMessage() == f"ticker {lease.job_id} failed: no valid examples"


def test_shutdown_gives_the_lease_back_and_the_next_process_resumes_at_once(
    store: Store,
) -> None:
    async def go() -> None:
        job = new_job(store, 30)
        first = JobRuntime(Ticker(store), lease_s=60, poll_s=0.1)
        await first.start(job)
        await asyncio.sleep(0.5)
        await first.aclose()
        lease = first.leases.lease(job)
        assert lease.status == "running" and lease.runner is None
        reached = store.learning.get(job).current_round
        assert 0 < reached < 30
        second = JobRuntime(Ticker(store), lease_s=60, poll_s=0.1)
        assert await second.adopt_orphans() == [job]  # no lease to wait out
        lease = await second.wait(job, timeout=20)
        assert lease.status == "completed"
        await second.aclose()

    _run(go())


def test_a_live_runner_is_not_adopted(store: Store) -> None:
    async def go() -> None:
        job = new_job(store, 100)
        first = JobRuntime(Ticker(store), lease_s=LEASE_S, poll_s=0.1)
        second = JobRuntime(Ticker(store), lease_s=LEASE_S, poll_s=0.1)
        await first.start(job)
        for _ in range(5):  # across more than one lease period
            assert await second.adopt_orphans() == []
            await asyncio.sleep(LEASE_S / 2)
        await second.cancel(job)  # from the other runtime: the first stops
        lease = await first.wait(job, timeout=5)
        assert lease.status == "cancelled"
        await first.aclose()
        await second.aclose()

    _run(go())


def test_the_stop_signal_keeps_its_first_reason() -> None:
    from neurons.jobs import StopSignal

    stop = StopSignal()
    stop.stop(StopReason.SHUTDOWN)
    stop.stop(StopReason.CANCEL)
    assert stop.is_set() and stop.reason == StopReason.SHUTDOWN
    assert asyncio.run(stop.wait_async(0.1))
