"""The training worker as a real subprocess (``python -m neurons.finetune.worker``) on a tiny
llama saved in transformers format: events, exit codes, SIGTERM → checkpoint → resume, and
no orphan when its parent dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from neurons.errors import InvalidRequestError
from neurons.finetune.presets import Hyperparameters
from neurons.finetune.trainer import CHECKPOINT
from neurons.finetune.worker import (
    ADAPTER_DIR,
    EVENTS,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_STOPPED,
    SPEC,
    WorkerSpec,
    read_events,
)
from tests.finetune.test_trainer import hp, memorisable, tiny_model, tiny_tokenizer

WORKER = [sys.executable, "-m", "neurons.finetune.worker"]
# One thread: the tiny model gains nothing from more, and the machine may be busy.
ENV = {**os.environ, "NEURONS_TRAIN_THREADS": "1"}


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = tiny_tokenizer()
    tiny_model(tokenizer).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def job(tmp_path: Path, base_dir: Path, params: Hyperparameters) -> Path:
    """A job directory as the control plane leaves it: examples and spec."""
    folder = tmp_path / "job"
    folder.mkdir()
    examples = folder / "examples.jsonl"
    examples.write_text("".join(json.dumps(e.to_dict()) + "\n" for e in memorisable(10)))
    spec = WorkerSpec(
        examples=str(examples), hyperparameters=params.to_dict(), base_hf_dir=str(base_dir)
    )
    (folder / SPEC).write_text(spec.to_json())
    return folder


def of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


def wait_for_step(folder: Path, step: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if any(e.get("step", 0) >= step for e in of(read_events(folder / EVENTS), "step")):
            return
        assert process.poll() is None, "the worker ended before training"
        time.sleep(0.05)
    raise AssertionError(f"no step {step} event in time")


def long_run() -> Hyperparameters:
    # Far more steps than the test lets it run before the signal; the resumed run does the
    # rest, so keep each step tiny.
    return hp(epochs=100, max_steps=240, max_seq_length=32, eval_fraction=0.1)


def test_spec_round_trip_and_validation() -> None:
    spec = WorkerSpec(
        examples="/x.jsonl",
        hyperparameters=hp().to_dict(),
        base_gguf="/base.gguf",
        base_digest="sha256:" + "0" * 64,
        cache_dir="/cache",
        adapter_out="/out/adapter.gguf",
    )
    assert WorkerSpec.from_json(spec.to_json()) == spec
    assert spec.hp == replace(hp(), preset="balanced")  # from_dict records its preset
    with pytest.raises(InvalidRequestError, match="exactly one"):
        WorkerSpec(examples="/x", hyperparameters={})
    with pytest.raises(InvalidRequestError, match="needs base_gguf"):
        WorkerSpec(examples="/x", base_hf_dir="/m", adapter_out="/a.gguf")
    with pytest.raises(InvalidRequestError, match="unknown field"):
        WorkerSpec.from_json('{"examples": "/x", "base_hf_dir": "/m", "extra": 1}')
    with pytest.raises(InvalidRequestError, match="learning_rate"):
        WorkerSpec(examples="/x", base_hf_dir="/m", hyperparameters={"learning_rate": 5})


def test_worker_trains_and_reports(tmp_path: Path, base_dir: Path) -> None:
    folder = job(tmp_path, base_dir, hp(epochs=2))
    done = subprocess.run(WORKER + [str(folder)], env=ENV, capture_output=True, timeout=180)
    assert done.returncode == EXIT_OK, done.stderr.decode()
    events = read_events(folder / EVENTS)
    phases = [e["phase"] for e in of(events, "phase")]
    assert phases == ["preparing", "training", "evaluating", "exporting"]
    assert [e["when"] for e in of(events, "eval")] == ["before", "after"]
    assert [e["epoch"] for e in of(events, "epoch")] == [1, 2]
    assert of(events, "data") == [
        {"type": "data", "n_train": 8, "n_eval": 2, "dropped": 0, "total_steps": 8}
    ]
    final = events[-1]
    assert final["type"] == "done" and final["adapter"] == str(folder / ADAPTER_DIR)
    metrics = final["metrics"]
    assert metrics["steps"] == 8 and metrics["eval_loss_after"] < metrics["eval_loss_before"]
    assert metrics["tokens_per_second"] > 0
    assert (folder / ADAPTER_DIR / "adapter_config.json").is_file()
    assert (folder / ADAPTER_DIR / "adapter_model.safetensors").is_file()


def test_sigterm_checkpoints_and_a_rerun_resumes(tmp_path: Path, base_dir: Path) -> None:
    folder = job(tmp_path, base_dir, long_run())
    process = subprocess.Popen(WORKER + [str(folder)], env=ENV, stderr=subprocess.PIPE)
    try:
        wait_for_step(folder, 3, process)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == EXIT_STOPPED, stderr.decode()
    first = read_events(folder / EVENTS)
    stopped = first[-1]
    assert stopped["type"] == "stopped" and 3 <= stopped["step"] < 240
    assert of(first, "checkpoint")[-1]["step"] == stopped["step"]
    assert (folder / CHECKPOINT).is_file()

    done = subprocess.run(WORKER + [str(folder)], env=ENV, capture_output=True, timeout=180)
    assert done.returncode == EXIT_OK, done.stderr.decode()
    second = read_events(folder / EVENTS)[len(first) :]
    assert of(second, "resumed") == [{"type": "resumed", "step": stopped["step"]}]
    assert of(second, "step")[0]["step"] == stopped["step"] + 1
    assert not [e for e in second if e["type"] == "eval" and e["when"] == "before"]
    assert second[-1]["type"] == "done" and second[-1]["metrics"]["steps"] == 240


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_worker_dies_with_its_parent(tmp_path: Path, base_dir: Path) -> None:
    folder = job(tmp_path, base_dir, long_run())
    # A stand-in control plane: starts the worker, prints its pid, and dies hard once
    # training runs (os._exit: no cleanup, as with a crash or SIGKILL).
    parent = f"""
import json, os, subprocess, sys, time
worker = subprocess.Popen({WORKER + [str(folder)]!r})
print(worker.pid, flush=True)
events = {str(folder / EVENTS)!r}
while not (os.path.exists(events) and '"type": "step"' in open(events).read()):
    time.sleep(0.05)
os._exit(0)
"""
    control = subprocess.run(
        [sys.executable, "-c", parent], env=ENV, capture_output=True, timeout=120
    )
    pid = int(control.stdout.decode().strip())
    deadline = time.monotonic() + 60
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid), "the worker outlived its parent"
    events = read_events(folder / EVENTS)
    assert events[-1]["type"] == "stopped"
    assert (folder / CHECKPOINT).is_file()


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for a reaper (the container's init may not reap)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_an_error_is_reported_and_exits_1(tmp_path: Path, base_dir: Path) -> None:
    folder = job(tmp_path, base_dir, hp())
    (folder / "examples.jsonl").write_text('{"source": 1, "nonsense": true}\n')
    done = subprocess.run(WORKER + [str(folder)], env=ENV, capture_output=True, timeout=120)
    assert done.returncode == EXIT_ERROR
    error = read_events(folder / EVENTS)[-1]
    assert error["type"] == "error" and "examples.jsonl line 1" in error["message"]
    assert b"Traceback" in done.stderr
