"""The status machine and supervisor loop every kind of background work shares."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from neurons.errors import JobStateError
from neurons.lifecycle import TRANSITIONS, Event, Status, next_status, supervise


def refuse(status: Status, event: Event) -> JobStateError:
    return JobStateError(f"no {event} from {status}")


def test_a_refused_move_raises_the_error_the_caller_builds() -> None:
    assert next_status("pending", "start", refuse) is Status.RUNNING
    with pytest.raises(JobStateError, match="no complete from pending"):
        next_status("pending", "complete", refuse)
    assert (Status.COMPLETED, Event.START) not in TRANSITIONS  # completed work is final


def test_the_supervisor_outlives_a_failed_pass(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    async def adopt() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("database is locked")

    async def main() -> None:
        task = asyncio.create_task(supervise(adopt, 0.01, logging.getLogger("t"), "test"))
        while len(calls) < 3:
            await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    with caplog.at_level(logging.ERROR, logger="t"):
        asyncio.run(main())
    assert len(calls) >= 3
    assert [r.getMessage() for r in caplog.records] == ["test supervisor pass failed"]
