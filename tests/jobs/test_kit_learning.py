"""The jobs runtime's conformance kit over learning runs: a real ``digits`` run trained by
``neurons learn start`` in a process of its own, cancelled by ``neurons learn cancel`` from
another, killed with SIGKILL and adopted once by two racing control planes, and started by
two control planes at once."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from neurons.config import Settings
from neurons.jobs import JobRuntime
from neurons.learning.jobs import LearningKind
from neurons.learning.runs import RunConfig
from neurons.store import Store, open_store
from tests.jobs import kit
from tests.learning import one_torch_thread  # noqa: F401  (autouse: the adopted runs train here)

LEASE_S = 2.0
# Two nodes of five steps: each round takes a few hundredths of a second, so a run of 250
# rounds trains for several seconds, and a cancel or a kill lands between round boundaries.
RUN = {"mode": "fedavg", "dataset": "digits", "nodes": 2, "local_steps": 5, "rounds": 250}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", learning_lease_s=LEASE_S)


@pytest.fixture
def learning_store(settings: Settings) -> Iterator[Store]:
    opened = open_store(settings.resolved_database_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def harness(learning_store: Store, settings: Settings, tmp_path: Path) -> kit.Harness:
    def kind() -> LearningKind:
        return LearningKind(learning_store, settings.learning_path / "runs")

    def new_job() -> str:
        return learning_store.learning.create(RunConfig(**RUN).__dict__).run_id

    cli = [sys.executable, "-m", "neurons", "learn"]
    return kit.Harness(
        new_job=new_job,
        runtime=lambda: JobRuntime(kind(), lease_s=LEASE_S, poll_s=0.1),
        run_argv=lambda job: [*cli, "start", job, "--json"],
        cancel_argv=lambda job: [*cli, "cancel", job],
        lease=kind().leases.lease,
        env={
            "NEURONS_HOME": str(settings.home),
            "NEURONS_LEARNING_LEASE_S": str(LEASE_S),
            "OMP_NUM_THREADS": "1",  # two shared cores: a second torch thread only waits
        },
        stop_s=5.0,
        end_s=120.0,
        log=tmp_path / "learn.log",
    )


def test_cancel_from_another_process(harness: kit.Harness) -> None:
    kit.check_cancel_from_another_process(harness)


@pytest.mark.parametrize("seed", [0, 1])
def test_kill_9_is_adopted_once_and_resumed(
    harness: kit.Harness, learning_store: Store, seed: int
) -> None:
    kit.check_kill_9(harness, seed)
    (run,) = learning_store.learning.list()
    if run.status == "completed":  # resumed from the dead process's checkpoint
        assert run.current_round == RUN["rounds"]
        assert run.attempts == 2


def test_start_race(harness: kit.Harness) -> None:
    kit.check_start_race(harness)


def test_kill_9_after_some_rounds_resumes_from_the_checkpoint(
    harness: kit.Harness, learning_store: Store
) -> None:
    """The kit's kill may land before the first round; here the trainer dies with rounds
    behind it, and the control plane that adopts the run goes on from its checkpoint."""
    job_id = harness.new_job()
    kit.kill_9_when(
        harness, job_id, lambda: learning_store.learning.get(job_id).current_round >= 5, "rounds"
    )
    reached = learning_store.learning.get(job_id).current_round

    async def adopt() -> None:
        runtime = harness.runtime()
        try:
            assert await runtime.adopt_orphans() == [job_id]
            await runtime.wait(job_id, timeout=harness.end_s)
        finally:
            await runtime.aclose()

    asyncio.run(adopt())
    run = learning_store.learning.get(job_id)
    assert (run.status, run.current_round, run.attempts) == ("completed", RUN["rounds"], 2)
    (resumed,) = learning_store.learning.events(job_id, kind="resumed")
    since = resumed.payload["round"]
    # A round is recorded just before its checkpoint: a kill between the two trains it again.
    assert since in (reached - 1, reached)
    rounds = [e.round for e in learning_store.learning.events(job_id, kind="round", limit=5000)]
    assert rounds == [*range(1, reached + 1), *range(since + 1, RUN["rounds"] + 1)]
