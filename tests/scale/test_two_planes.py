"""Two control planes on one PostgreSQL, in front of two real neurons (issue 23).

Each plane is a real ``neurons serve`` process of its own (SIGKILL needs a process), with its
own home and the same database URL; they share the fine-tuning directory, as planes on
several machines would share it over NFS (a job's checkpoints live there). Shown here:

- a node added through one plane is routed by the other, and the other way round;
- a key's limits are counted across both planes (requests alternate between them);
- a fine-tuning job started on one plane, whose plane is killed with -9 mid-training, is
  adopted by the other within the lease and finished there exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from neurons.finetune.base import load_base
from neurons.neuron.defaults import _smollm2_path
from neurons.neuron.process import NeuronProcess
from neurons.ollama.names import digest_to_filename, file_digest
from neurons.store import Store, open_store
from tests.conftest import free_port, start_neuron
from tests.jobs.test_kit_fine_tuning import HP
from tests.pg import PostgresServer

pytestmark = pytest.mark.slow

SMOL = "smollm2:135m"
MASTER = "master-key-for-two-planes-0123456789"
LEASE_S = 3.0
HEALTH_S = 1.0
ROOT = Path(__file__).resolve().parents[2]
DATASET = ROOT / "src/neurons/finetune/datasets/beep_boop.jsonl"
# The kit's job (eight examples, two a step, checkpointed every second step) over three
# epochs: nine optimizer steps, so the kill lands mid-training with a checkpoint to resume.
HYPERPARAMETERS = {**HP.to_dict(), "epochs": 3}
ADMIN = {"Authorization": f"Bearer {MASTER}"}


@dataclass
class Plane:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    database_url: str

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(self.url + path, headers=kw.pop("headers", ADMIN), timeout=120, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.post(self.url + path, headers=kw.pop("headers", ADMIN), timeout=120, **kw)


@pytest.fixture(scope="module")
def second_neuron(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NeuronProcess]:
    process = start_neuron(tmp_path_factory.mktemp("neuron-two") / "home")
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def shared_fine_tuning(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fine-tuning directory both planes use: the training data, and the base model's
    caches (its GGUF by digest and its conversion), as a second job on the base finds them."""
    root = tmp_path_factory.mktemp("fine-tuning")
    gguf = _smollm2_path(Path())
    digest = file_digest(gguf)
    cache = root / "cache/hf"
    cache.mkdir(parents=True)
    load_base(gguf, cache, digest=digest)
    (root / "cache/base").mkdir(parents=True)
    (root / "cache/base" / digest_to_filename(digest)).symlink_to(gguf)
    (root / "data").mkdir()
    (root / "data/beep.jsonl").write_text("".join(DATASET.read_text().splitlines(True)[:8]))
    return root


@pytest.fixture(scope="module")
def planes(
    postgres_server: PostgresServer,
    shared_fine_tuning: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Plane, Plane]]:
    database = postgres_server.acquire()
    started: list[Plane] = []
    logs = tmp_path_factory.mktemp("planes")
    try:
        for name in ("a", "b"):
            port = free_port()
            env = {
                **os.environ,
                "NEURONS_HOME": str(logs / name / "home"),
                "NEURONS_DATABASE_URL": postgres_server.url(database),
                "NEURONS_OLLAMA_BASE_URL": "",
                "NEURONS_IMPORT_DEFAULT_MODELS": "false",
                "NEURONS_MASTER_KEY": MASTER,
                "NEURONS_HEALTH_INTERVAL_S": str(HEALTH_S),
                "NEURONS_FINE_TUNING_PATH": str(shared_fine_tuning),
                "NEURONS_FINE_TUNING_LEASE_S": str(LEASE_S),
                "NEURONS_SNAPSHOT_INTERVAL_S": "0",
                "NEURONS_TRAIN_THREADS": "1",
                "OMP_NUM_THREADS": "1",
            }
            with (logs / f"{name}.log").open("wb") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "neurons", "serve", "--port", str(port)],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            url = f"http://127.0.0.1:{port}"
            started.append(Plane(name, url, process, postgres_server.url(database)))
        for plane in started:
            _until(partial(_up, plane), 90, f"plane {plane.name} did not come up")
        yield started[0], started[1]
    finally:
        for plane in started:
            if plane.process.poll() is None:
                plane.process.terminate()
                try:
                    plane.process.wait(30)
                except subprocess.TimeoutExpired:
                    plane.process.kill()
                    plane.process.wait()
        _kill_orphan_workers(shared_fine_tuning)
        postgres_server.release(database)


def test_two_control_planes_on_one_postgresql(
    planes: tuple[Plane, Plane],
    neuron: NeuronProcess,
    second_neuron: NeuronProcess,
    postgres_server: PostgresServer,
) -> None:
    """One scenario, in order (the last step kills a plane)."""
    a, b = planes
    nodes_added_on_one_are_routed_by_the_other(a, b, neuron, second_neuron)
    a_keys_limits_are_counted_across_planes(a, b)
    store = open_store(b.database_url)
    try:
        a_job_of_a_killed_plane_is_finished_once_by_the_other(a, b, neuron, store)
    finally:
        store.close()


def nodes_added_on_one_are_routed_by_the_other(
    a: Plane, b: Plane, neuron: NeuronProcess, second_neuron: NeuronProcess
) -> None:
    for via, node, other in ((a, ("n1", neuron), b), (b, ("n2", second_neuron), a)):
        name, process = node
        added = via.post("/api/ai/network/nodes", json={"url": process.url, "name": name})
        assert added.status_code == 201, added.text

        def routed_by_other(other: Plane = other, name: str = name) -> bool:
            nodes = other.get("/api/ai/network/nodes").json()["nodes"]
            return any(n["name"] == name and n["state"] == "online" for n in nodes)

        _until(routed_by_other, 30, f"{other.name} never routed {name}")
        answer = other.post(
            "/api/generate",
            json={"model": SMOL, "prompt": "Hi", "stream": False, "options": {"num_predict": 4}},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["done"] is True


def a_keys_limits_are_counted_across_planes(a: Plane, b: Plane) -> None:
    created = a.post("/api/ai/keys", json={"name": "shared-rpm", "scope": "read", "rpm": 4})
    assert created.status_code == 201, created.text
    key = {"Authorization": f"Bearer {created.json()['secret']}"}
    # b learns of the key from the database; a 401 counts against nothing.
    _until(lambda: b.get("/api/tags", headers=key).status_code == 200, 30, "b never took it")
    statuses = [plane.get("/api/tags", headers=key).status_code for plane in (a, b, a, b, a)]
    assert statuses == [200, 200, 200, 429, 429]  # 4 a minute, whichever plane counts
    refused = b.get("/api/tags", headers=key)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0


def a_job_of_a_killed_plane_is_finished_once_by_the_other(
    a: Plane, b: Plane, neuron: NeuronProcess, store: Store
) -> None:
    created = a.post(
        "/api/ai/ollama/fine-tuning/create",
        data={
            "base_model": SMOL,
            "target_model_name": "two-planes-beep",
            "training_data_path": "beep.jsonl",
            "hyperparameters": json.dumps(HYPERPARAMETERS),
            "nodes": "n1",
        },
    )
    assert created.status_code == 200, created.text
    job_id = created.json()["job_id"]
    started = a.post(f"/api/ai/ollama/fine-tuning/start/{job_id}")
    assert started.status_code == 200, started.text

    def job(plane: Plane = b) -> dict[str, Any]:
        found: dict[str, dict[str, Any]] = plane.get(
            f"/api/ai/ollama/fine-tuning/status/{job_id}"
        ).json()
        return found["job"]

    _until(lambda: job().get("metrics", {}).get("checkpoint_step") is not None, 300, "no step")
    runner = store.fine_tuning.get(job_id).runner
    assert runner is not None and runner.split(":")[1] == str(a.process.pid)  # a runs it
    os.kill(a.process.pid, signal.SIGKILL)
    a.process.wait()

    _until(lambda: job()["status"] in ("completed", "failed", "cancelled"), 400, "not done")
    done = job()
    assert done["status"] == "completed", done.get("error")
    record = store.fine_tuning.get(job_id)
    assert record.attempts == 2 and record.runner is None  # a's, then b's after adopting it
    assert done["metrics"]["deployed_to"] == ["n1"]
    assert sum(line == "Job completed" for line in done["logs"]) == 1
    assert any(line.startswith("Resumed from the checkpoint at step") for line in done["logs"])
    tags = httpx.get(f"{neuron.url}/api/tags", timeout=30).json()["models"]
    assert [m["name"] for m in tags].count("two-planes-beep:latest") == 1


def _up(plane: Plane) -> bool:
    assert plane.process.poll() is None, f"plane {plane.name} exited"
    try:
        return httpx.get(plane.url + "/api/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _until(predicate: Callable[[], bool], timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(message)


def _kill_orphan_workers(root: Path) -> None:
    """A training worker of the killed plane stops on its own at its parent's death; one
    still alive at the end of the module is stopped here."""
    found = subprocess.run(
        ["pgrep", "-f", f"neurons.finetune.worker.*{root}"], capture_output=True, text=True
    )
    for pid in found.stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
