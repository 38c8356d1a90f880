"""The fine-tuning API under ``/api/ai/ollama/fine-tuning`` in-process, in front of the real
neuron: jobs created from form data (paths confined to the data directory, uploads), refused
input, cancel, a job that fails with its reason, and — marked slow — real LoRA training of
SmolLM2-135M that is carried over a control-plane restart from its checkpoint and deployed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ollama
import pytest
from fastapi.testclient import TestClient

from neurons.api.app import NodeSpec, create_control_plane
from neurons.config import Settings
from neurons.learning.llm_teach import HELD_OUT_PROMPTS
from neurons.neuron.process import NeuronProcess
from tests.api.envelope import error, ok

SMOL = "smollm2:135m"
BASE = "/api/ai/ollama/fine-tuning"
GOOD_LINE = json.dumps({"instruction": "Say hi.", "output": "Beep boop! Hi."}) + "\n"


def settings_for(home: Path, **overrides: Any) -> Settings:
    return Settings(
        home=home, health_interval_s=0.5, ollama_base_url="", fine_tuning_lease_s=2.0, **overrides
    )


@contextmanager
def control_plane(neuron: NeuronProcess, settings: Settings) -> Iterator[TestClient]:
    app = create_control_plane(settings, [NodeSpec("n1", neuron.url, "embedded")])
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def home(tmp_path: Path) -> Path:
    data = tmp_path / "fine_tuning" / "data"
    data.mkdir(parents=True)
    (data / "good.jsonl").write_text(GOOD_LINE * 3)
    (tmp_path / "outside.jsonl").write_text(GOOD_LINE)
    os.symlink(tmp_path / "outside.jsonl", data / "escape.jsonl")
    return tmp_path


@pytest.fixture
def client(neuron: NeuronProcess, home: Path) -> Iterator[TestClient]:
    with control_plane(neuron, settings_for(home)) as test_client:
        yield test_client


def form(**fields: str) -> dict[str, str]:
    values = {
        "base_model": SMOL,
        "target_model_name": "smollm2-beep",
        "training_data_path": "good.jsonl",
        "data_type": "jsonl",
        "hyperparameters": "efficient",
        "target_capabilities": json.dumps(["text_generation", "instruction_following"]),
    }
    values.update(fields)
    return values


def job(client: TestClient, job_id: str) -> dict[str, Any]:
    found: dict[str, Any] = ok(client.get(f"{BASE}/status/{job_id}"))["job"]
    return found


def wait_for(
    client: TestClient,
    job_id: str,
    done: Callable[[dict[str, Any]], bool],
    timeout: float = 600.0,
    *,
    allow_failed: bool = False,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        current = job(client, job_id)
        if done(current):
            return current
        assert allow_failed or current["state"] != "failed", current["error"]
        assert time.monotonic() < deadline, f"job never got there: {current}"
        time.sleep(0.3)


def test_create_answers_the_seed_shape_and_lists(client: TestClient) -> None:
    created = ok(client.post(f"{BASE}/create", data=form()))
    assert created == {
        "job_id": created["job_id"],
        "status": "pending",
        "training_data_path": "good.jsonl",
        "message": "Fine-tuning job created successfully",
    }
    current = job(client, created["job_id"])
    assert current["hyperparameters"]["learning_rate"] == 2e-5
    assert current["target_capabilities"] == ["text_generation", "instruction_following"]
    assert current["progress"] == 0 and current["current_phase"] is None
    listed = ok(client.get(f"{BASE}/jobs", params={"status": "pending"}))
    assert [j["job_id"] for j in listed["jobs"]] == [created["job_id"]]
    assert ok(client.get(f"{BASE}/jobs", params={"status": "completed"}))["count"] == 0
    cancelled = ok(client.post(f"{BASE}/cancel/{created['job_id']}"))["job"]
    assert cancelled["status"] == "cancelled"
    error(client.post(f"{BASE}/cancel/{created['job_id']}"), 409, "invalid_job_state")


@pytest.mark.parametrize(
    ("fields", "status", "code", "message"),
    [
        ({"training_data_path": "../outside.jsonl"}, 400, "invalid_request", "must be inside"),
        ({"training_data_path": "escape.jsonl"}, 400, "invalid_request", "must be inside"),
        ({"training_data_path": "/etc/passwd"}, 400, "invalid_request", "must be inside"),
        ({"training_data_path": "nope.jsonl"}, 400, "invalid_request", "does not exist"),
        ({"training_data_path": ""}, 400, "invalid_request", "required"),
        ({"data_type": "parquet"}, 400, "invalid_request", "data_type"),
        ({"hyperparameters": "turbo"}, 400, "invalid_request", "preset"),
        ({"hyperparameters": '{"learning_rate": -1}'}, 400, "invalid_request", "learning_rate"),
        ({"target_capabilities": "text"}, 400, "invalid_request", "not valid JSON"),
        ({"target_model_name": "bad name!"}, 400, "invalid_model_name", ""),
        ({"target_model_name": SMOL}, 400, "invalid_request", "differ"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_stored(
    client: TestClient, fields: dict[str, str], status: int, code: str, message: str
) -> None:
    text = error(client.post(f"{BASE}/create", data=form(**fields)), status, code)
    assert message in text
    assert ok(client.get(f"{BASE}/jobs"))["count"] == 0


@pytest.mark.parametrize("bad", ["99", "..%2F..%2Fetc%2Fpasswd", "1%3B%20DROP", "x"])
def test_unknown_jobs_are_404(client: TestClient, bad: str) -> None:
    error(client.get(f"{BASE}/status/{bad}"), 404, "job_not_found")
    error(client.post(f"{BASE}/start/{bad}"), 404, "job_not_found")


def test_upload_is_stored_under_the_data_directory(client: TestClient, home: Path) -> None:
    uploaded = ok(
        client.post(f"{BASE}/upload", files={"file": ("../../evil name.jsonl", GOOD_LINE.encode())})
    )
    path = uploaded["training_data_path"]
    assert path.startswith("uploads/") and ".." not in path and " " not in path
    assert (home / "fine_tuning" / "data" / path).read_text() == GOOD_LINE
    created = ok(
        client.post(
            f"{BASE}/create",
            data=form(training_data_path=""),
            files={"training_file": ("mine.jsonl", GOOD_LINE.encode())},
        )
    )
    assert created["training_data_path"].startswith("uploads/")


def test_a_job_without_valid_examples_fails_with_the_reason(client: TestClient, home: Path) -> None:
    (home / "fine_tuning" / "data" / "broken.jsonl").write_text('{"instruction": "x"}\nnot json\n')
    job_id = ok(client.post(f"{BASE}/create", data=form(training_data_path="broken.jsonl")))[
        "job_id"
    ]
    ok(client.post(f"{BASE}/start/{job_id}"))
    failed = wait_for(client, job_id, lambda j: j["state"] == "failed", 60, allow_failed=True)
    assert "no valid training examples" in failed["error"]
    assert failed["current_phase"] == "validating"
    assert any("line 2" in line for line in failed["logs"])
    assert failed["metrics"]["data"]["invalid"] == 2
    error(client.post(f"{BASE}/cancel/{job_id}"), 409, "invalid_job_state")


# -- real training (slow) -------------------------------------------------------------------------

PROBES = list(HELD_OUT_PROMPTS)  # the prompts LLM teaching holds out, too
# Far above the seed's presets (made for full fine-tuning): LoRA on 44 examples needs it.
LEARN = {
    "preset": "efficient",
    "learning_rate": 1e-3,
    "epochs": 6,
    "batch_size": 4,
    "warmup_steps": 4,
    "lora_r": 16,
    "lora_alpha": 32,
    "max_seq_length": 128,
    "checkpoint_steps": 5,
    "seed": 1,
}


def beeps(client: ollama.Client, model: str) -> int:
    """How many probe answers start with the taught marker (greedy, short answers)."""
    count = 0
    for prompt in PROBES:
        answer = client.chat(
            model=model,
            messages=[{"role": "user", "content": prompt}],
            options={"temperature": 0, "num_predict": 12},
        )
        count += (answer.message.content or "").strip().lower().startswith("beep boop")
    return count


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_fine_tuning_learns_survives_a_restart_and_deploys(
    neuron: NeuronProcess, home: Path
) -> None:
    """SmolLM2-135M learns to open every answer with "Beep boop!" (the packaged dataset);
    control plane A stops mid-training (its worker checkpoints), control plane B resumes the
    job from that checkpoint, exports the adapter, deploys it to the neuron, and the new model
    shows the behaviour on prompts it never saw, clearly more often than the base model."""
    dataset = Path(__file__).parents[2] / "src/neurons/finetune/datasets/beep_boop.jsonl"
    data = home / "fine_tuning" / "data" / "beep_boop.jsonl"
    data.write_bytes(dataset.read_bytes())
    settings = settings_for(home)
    with control_plane(neuron, settings) as a:
        job_id = ok(
            a.post(
                f"{BASE}/create",
                data=form(training_data_path="beep_boop.jsonl", hyperparameters=json.dumps(LEARN)),
            )
        )["job_id"]
        ok(a.post(f"{BASE}/start/{job_id}"))
        midway = wait_for(
            a, job_id, lambda j: (j["metrics"].get("checkpoint_step") or 0) >= 5, timeout=600
        )
        assert midway["status"] == "training"
    # A shut down: the worker wrote its checkpoint and the job kept its status.
    stopped = None
    with control_plane(neuron, settings) as b:
        stopped = job(b, job_id)
        done = wait_for(b, job_id, lambda j: j["state"] == "completed", timeout=900)
    assert stopped is not None and stopped["state"] == "running"
    logs = done["logs"]
    assert any(line.startswith("Resumed from the checkpoint at step") for line in logs), logs
    assert any(line.startswith("Epoch 6/6 completed. Loss: ") for line in logs), logs
    metrics = done["metrics"]
    assert metrics["eval_loss_after"] < metrics["eval_loss_before"]
    assert metrics["deployed_to"] == ["n1"]
    assert done["progress"] == 1.0 and done["current_phase"] == "deploying"

    client = ollama.Client(host=neuron.url)
    shown = client.show("smollm2-beep")
    assert "ADAPTER" in (shown.modelfile or "")
    tuned, base = beeps(client, "smollm2-beep"), beeps(client, SMOL)
    assert tuned >= 7 and base <= 1, (tuned, base)
