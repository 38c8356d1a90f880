"""The jobs runtime's conformance kit over fine-tuning jobs: LoRA on SmolLM2-135M (the GGUF
that ships with the package, served by the test session's embedded neuron), run by
``neurons finetune start`` in a process of its own, cancelled by ``neurons finetune cancel``
from another, killed with SIGKILL and adopted once by two racing control planes (which train,
export and deploy it to the neuron), and started by two control planes at once.

Each job's home gets the base model's caches (its GGUF by digest, and its conversion into
transformers, made once for the module) as a second job on the same base would find them, so
a job spends its time loading and training, not converting."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from neurons.config import Settings
from neurons.finetune.base import load_base
from neurons.finetune.jobs import JobConfig
from neurons.finetune.kind import FineTuningKind, job_leases
from neurons.finetune.presets import Hyperparameters
from neurons.finetune.trainer import CHECKPOINT
from neurons.finetune.worker import EVENTS, read_events
from neurons.jobs import JobRuntime
from neurons.jobs.runners import pid_exists
from neurons.network.manager import NetworkManager
from neurons.neuron.defaults import _smollm2_path
from neurons.neuron.process import NeuronProcess
from neurons.ollama.names import digest_to_filename, file_digest
from neurons.store import Store, open_store
from neurons.store.finetune import progress_columns
from tests.jobs import kit

LEASE_S = 2.0
SMOL = "smollm2:135m"
SMOLLM2 = _smollm2_path(Path())
DATASET = Path(kit.ROOT, "src/neurons/finetune/datasets/beep_boop.jsonl")
# Eight examples, two held out, two a step, two epochs: six optimizer steps of a few hundred
# milliseconds, checkpointed every second one. With loading, evaluating, exporting and
# deploying, a job takes tens of seconds on a busy machine.
HP = Hyperparameters.from_dict(
    {
        "preset": "efficient",
        "learning_rate": 1e-3,
        "epochs": 2,
        "batch_size": 2,
        "warmup_steps": 0,
        "lora_r": 4,
        "lora_alpha": 8,
        "max_seq_length": 64,
        "eval_fraction": 0.25,
        "checkpoint_steps": 2,
        "seed": 1,
    }
)
THREADS = {"NEURONS_TRAIN_THREADS": "1", "OMP_NUM_THREADS": "1"}  # two shared cores
_names = itertools.count(1)


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """SmolLM2 converted for training once for the module: (its digest, the cache entry)."""
    digest = file_digest(SMOLLM2)
    cache = tmp_path_factory.mktemp("hf-cache")
    load_base(SMOLLM2, cache, digest=digest)
    return digest, cache / digest.removeprefix("sha256:")


class ControlPlane(JobRuntime):
    """A control plane's runtime over its own network, closed with it."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.network = NetworkManager(store, settings)
        super().__init__(FineTuningKind(store, settings, self.network), lease_s=LEASE_S, poll_s=0.1)

    async def aclose(self, deadline_s: float = 60.0) -> None:
        await super().aclose(deadline_s)
        await self.network.aclose()


@pytest.fixture
def settings(tmp_path: Path, converted: tuple[str, Path]) -> Settings:
    settings = Settings(home=tmp_path / "home", ollama_base_url="", fine_tuning_lease_s=LEASE_S)
    root = settings.resolved_fine_tuning_path
    digest, entry = converted
    for folder in ("data", "cache/base", "cache/hf"):
        (root / folder).mkdir(parents=True)
    (root / "cache/base" / digest_to_filename(digest)).symlink_to(SMOLLM2)
    (root / "cache/hf" / entry.name).symlink_to(entry, target_is_directory=True)
    (root / "data/beep.jsonl").write_text("".join(DATASET.read_text().splitlines(True)[:8]))
    return settings


@pytest.fixture
def store(settings: Settings, neuron: NeuronProcess) -> Iterator[Store]:
    opened = open_store(settings.resolved_database_url)
    opened.nodes.upsert("n1", neuron.url, "embedded")
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def harness(
    store: Store, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> kit.Harness:
    for name, value in THREADS.items():  # for the workers of the runs adopted here
        monkeypatch.setenv(name, value)

    def new_job() -> str:
        config = JobConfig.create(
            base_model=SMOL,
            target_model_name=f"kit-beep-{next(_names)}",
            training_data="beep.jsonl",
            data_type="jsonl",
            hyperparameters=HP,
            nodes=["n1"],
        )
        return store.fine_tuning.create(config.to_dict()).job_id

    cli = [sys.executable, "-m", "neurons", "finetune"]
    return kit.Harness(
        new_job=new_job,
        runtime=lambda: ControlPlane(store, settings),
        run_argv=lambda job: [*cli, "start", job, "--json"],
        cancel_argv=lambda job: [*cli, "cancel", job],
        lease=job_leases(store).lease,
        env={
            "NEURONS_HOME": str(settings.home),
            "NEURONS_OLLAMA_BASE_URL": "",
            "NEURONS_FINE_TUNING_LEASE_S": str(LEASE_S),
            **THREADS,
        },
        stop_s=5.0,
        end_s=300.0,
        log=tmp_path / "finetune.log",
    )


def test_cancel_from_another_process(harness: kit.Harness) -> None:
    kit.check_cancel_from_another_process(harness)


@pytest.mark.slow
def test_kill_9_is_adopted_once_and_resumed(harness: kit.Harness, store: Store) -> None:
    kit.check_kill_9(harness)
    (job,) = store.fine_tuning.list()
    assert (job.status, job.progress, job.attempts) == ("completed", 1.0, 2), job.error
    assert job.metrics["deployed_to"] == ["n1"] and job.logs[-1] == "Job completed"


def test_start_race(harness: kit.Harness) -> None:
    kit.check_start_race(harness)


@pytest.mark.slow
def test_kill_9_while_training_resumes_from_the_checkpoint(
    harness: kit.Harness, store: Store, settings: Settings
) -> None:
    """The kit's kill lands before training; here the control plane dies mid-training. Its
    worker checkpoints on its parent's death, and the control plane that adopts the job trains
    on from there, its own worker started only once the old one is gone."""
    job_id = harness.new_job()

    def checkpointed() -> bool:
        return store.fine_tuning.get(job_id).metrics.get("checkpoint_step") is not None

    kit.kill_9_when(harness, job_id, checkpointed, "checkpoint")
    adopt_and_wait(harness, job_id)
    job = store.fine_tuning.get(job_id)
    assert (job.status, job.attempts) == ("completed", 2), job.error
    assert any(line.startswith("Resumed from the checkpoint at step") for line in job.logs)
    # Both workers append to one events file: the first one's last word (stopped at a
    # checkpoint) comes before anything of the second, which starts by preparing.
    kinds = kinds_of(settings, job_id)
    stopped = kinds.index(("stopped", None))
    assert kinds[stopped + 1] == ("phase", "preparing"), kinds
    assert ("phase", "preparing") not in kinds[1:stopped], kinds


def test_ctrl_c_stops_the_worker_at_a_checkpoint_and_exits_130(
    harness: kit.Harness, store: Store, settings: Settings
) -> None:
    job_id = harness.new_job()
    foreground = subprocess.Popen(
        [sys.executable, "-m", "neurons", "finetune", "start", job_id],
        cwd=kit.ROOT,
        env={**os.environ, **harness.env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + harness.end_s
        while store.fine_tuning.get(job_id).metrics.get("checkpoint_step") is None:
            assert foreground.poll() is None and time.monotonic() < deadline, "no checkpoint"
            time.sleep(0.05)
        worker = store.fine_tuning.get(job_id).worker_pid
        foreground.send_signal(signal.SIGINT)
        _, stderr = foreground.communicate(timeout=harness.stop_s + 10)
    finally:
        if foreground.poll() is None:
            foreground.kill()
            foreground.wait()
    assert foreground.returncode == 130, stderr
    assert f"neurons finetune start {job_id}" in stderr
    job = store.fine_tuning.get(job_id)
    assert (job.status, job.runner, job.worker_pid) == ("cancelled", None, None)
    assert worker is not None and not pid_exists(worker)
    assert ("stopped", None) in kinds_of(settings, job_id)  # at a step, its checkpoint written
    assert (events_of(settings, job_id).parent / CHECKPOINT).is_file()


# Stands in for a previous worker of the job that outlives its control plane: its command
# line is a worker's, it ignores SIGTERM, and it says when it exits.
OLD_WORKER = """
import json, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
time.sleep(float(sys.argv[3]))
with open(sys.argv[2] + "/events.jsonl", "a") as events:
    events.write(json.dumps({"type": "log", "message": "old worker exits"}) + "\\n")
"""


def test_an_adopter_waits_for_the_previous_worker(
    harness: kit.Harness, store: Store, settings: Settings
) -> None:
    """A job left running by a dead control plane whose worker still trains: the control
    plane that adopts it starts its own worker only once that one has exited."""
    job_id = harness.new_job()
    folder = events_of(settings, job_id).parent
    folder.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    old = subprocess.Popen(
        [sys.executable, "-c", OLD_WORKER, "neurons.finetune.worker", str(folder), "6"]
    )
    try:
        runner = f"{socket.gethostname()}:{dead.pid}:gone"  # as a kill -9 leaves it
        leases = job_leases(store)
        leases.transition(job_id, ("pending",), "running", runner=runner)
        leases.renew(job_id, runner, progress_columns(worker_pid=old.pid))

        async def adopt() -> None:
            runtime = harness.runtime()
            try:
                assert await runtime.adopt_orphans() == [job_id]
                deadline = time.monotonic() + harness.end_s
                while ("phase", "preparing") not in kinds_of(settings, job_id):
                    assert time.monotonic() < deadline, store.fine_tuning.get(job_id).logs
                    await asyncio.sleep(0.1)
                await runtime.cancel(job_id)
                await runtime.wait(job_id, timeout=harness.end_s)
            finally:
                await runtime.aclose()

        asyncio.run(adopt())
    finally:
        old.kill()
        old.wait()
    job = store.fine_tuning.get(job_id)
    assert f"Waiting for the previous worker (pid {old.pid}) to stop" in job.logs
    kinds = kinds_of(settings, job_id)
    assert kinds.index(("log", None)) < kinds.index(("phase", "preparing")), kinds
    assert job.status == "cancelled" and job.worker_pid is None


def adopt_and_wait(harness: kit.Harness, job_id: str) -> None:
    async def adopt() -> None:
        runtime = harness.runtime()
        try:
            assert await runtime.adopt_orphans() == [job_id]
            await runtime.wait(job_id, timeout=harness.end_s)
        finally:
            await runtime.aclose()

    asyncio.run(adopt())


def events_of(settings: Settings, job_id: str) -> Path:
    return settings.resolved_fine_tuning_path / "jobs" / job_id / EVENTS


def kinds_of(settings: Settings, job_id: str) -> list[tuple[str, str | None]]:
    return [(e["type"], e.get("phase")) for e in read_events(events_of(settings, job_id))]
