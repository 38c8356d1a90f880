"""The smallest job kind, for the runtime's own tests: it ticks ``total_rounds`` times,
``TICK_S`` apart, on a learning-run row (any table with the lease columns would do), writing
the tick reached as ``current_round``, and resumes from there.

Run as ``python -m tests.jobs.ticker DB_URL run JOB_ID`` it runs one job in the foreground of
its own process, as the CLIs do, so the tests can kill it; ``... cancel JOB_ID`` cancels it
from yet another process.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from typing import Any, ClassVar

from neurons.errors import LearningRunNotFoundError, LearningStateError
from neurons.jobs import JobKind, JobRuntime, JobStopped, LeaseTable, StopSignal
from neurons.store import Store, open_store
from neurons.store.learning import runs_table

TICK_S = 0.1
LEASE_S = 1.5


def new_job(store: Store, ticks: int) -> str:
    record = store.learning.create({"mode": "ticker", "dataset": "none", "rounds": ticks})
    return record.run_id


class Ticker(JobKind):
    name: ClassVar[str] = "ticker"

    def __init__(self, store: Store, fail_at: int | None = None) -> None:
        self.store = store
        self.fail_at = fail_at
        self.leases = LeaseTable(
            store.engine,
            runs_table,
            what="ticker job",
            not_found=LearningRunNotFoundError,
            refused=LearningStateError,
        )

    async def execute(self, job_id: str, stop: StopSignal, runner: str) -> Mapping[str, Any]:
        record = await asyncio.to_thread(self.store.learning.get, job_id)
        for tick in range(record.current_round + 1, record.total_rounds + 1):
            if stop.is_set():
                raise JobStopped(stop.reason)
            await asyncio.sleep(TICK_S)
            if tick == self.fail_at:
                raise RuntimeError(f"tick {tick} broke")
            values = {"current_round": tick}
            if not await asyncio.to_thread(self.leases.renew, job_id, runner, values, stop=stop):
                raise JobStopped(stop.reason)  # the refused renewal set the reason
        return {"current_round": record.total_rounds}


async def _main(url: str, command: str, job_id: str) -> int:
    store = open_store(url)
    runtime = JobRuntime(Ticker(store), lease_s=LEASE_S, poll_s=0.1)
    try:
        if command == "cancel":
            print((await runtime.cancel(job_id)).status, flush=True)
            return 0
        await runtime.start(job_id)
        lease = await runtime.wait(job_id)
        print(lease.status, flush=True)
        return 0 if lease.status == "completed" else 1
    finally:
        await runtime.aclose()
        store.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(_main(sys.argv[1], sys.argv[2], sys.argv[3])))
