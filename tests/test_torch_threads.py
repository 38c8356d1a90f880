"""``NEURONS_TORCH_THREADS`` reaches each use of torch: the setting and its old name, a
learning run's training thread (its ``threads`` event), the fine-tuning worker (its device
line, in a real subprocess) and the inference module's forward thread (its stats)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from neurons.config import Settings
from neurons.finetune.worker import EVENTS, EXIT_OK, SPEC, WorkerSpec, read_events
from neurons.inference.config import InferenceConfig
from neurons.inference.service import InferenceService
from neurons.learning.service import LearningService
from neurons.store import open_store
from neurons.torch_threads import MEASURED_DEFAULTS, USES, resolve_threads
from tests.finetune.test_trainer import hp, memorisable, tiny_model, tiny_tokenizer

THREAD_VARS = ("NEURONS_TORCH_THREADS", "NEURONS_TRAIN_THREADS", "OMP_NUM_THREADS")


@pytest.fixture(autouse=True)
def no_thread_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in THREAD_VARS:
        monkeypatch.delenv(name, raising=False)


def test_the_setting_its_old_name_and_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().torch_threads is None
    monkeypatch.setenv("NEURONS_TRAIN_THREADS", "3")
    assert Settings().torch_threads == 3  # the old name still counts
    monkeypatch.setenv("NEURONS_TORCH_THREADS", "2")
    assert Settings().torch_threads == 2  # the new one wins
    monkeypatch.setenv("NEURONS_TORCH_THREADS", "0")
    with pytest.raises(ValidationError, match="NEURONS_TORCH_THREADS"):
        Settings()
    assert Settings(torch_threads=4).torch_threads == 4


def test_unset_is_each_uses_measured_default() -> None:
    assert set(MEASURED_DEFAULTS) == set(USES)
    assert [resolve_threads(use, None) for use in USES] == [1, 1, 1]
    assert resolve_threads("inference", 2) == 2
    with pytest.raises(ValueError, match="at least 1"):
        resolve_threads("learning", 0)


@pytest.mark.parametrize(("setting", "expected"), [(None, 1), (2, 2)])
def test_a_learning_run_trains_on_the_setting(
    tmp_path: Path, setting: int | None, expected: int
) -> None:
    settings = Settings(home=tmp_path, ollama_base_url="", torch_threads=setting)
    store = open_store(settings.resolved_database_url)

    async def main() -> list[dict[str, object]]:
        service = LearningService(store, settings)
        try:
            config = {"mode": "centralized", "nodes": 2, "rounds": 1, "local_steps": 2}
            record = await service.create(config)
            await service.start(record.run_id)
            assert (await service.wait(record.run_id, 120)).status == "completed"
            return await service.events(record.run_id, kind="threads")
        finally:
            await service.aclose()

    try:
        events = asyncio.run(main())
    finally:
        store.close()
    assert [e["payload"] for e in events] == [{"torch_threads": expected}]


@pytest.mark.parametrize(("spec_threads", "env", "line"), [(2, {}, "(2 threads)")])
def test_the_fine_tuning_worker_trains_on_the_spec_threads(
    tmp_path: Path, spec_threads: int | None, env: dict[str, str], line: str
) -> None:
    base = tmp_path / "base"
    tokenizer = tiny_tokenizer()
    tiny_model(tokenizer).save_pretrained(base)
    tokenizer.save_pretrained(base)
    folder = tmp_path / "job"
    folder.mkdir()
    examples = folder / "examples.jsonl"
    examples.write_text("".join(json.dumps(e.to_dict()) + "\n" for e in memorisable(4)))
    spec = WorkerSpec(
        examples=str(examples),
        hyperparameters=hp(epochs=1, max_steps=1).to_dict(),
        base_hf_dir=str(base),
        torch_threads=spec_threads,
    )
    (folder / SPEC).write_text(spec.to_json())
    environment = {k: v for k, v in os.environ.items() if k not in THREAD_VARS} | env
    argv = [sys.executable, "-m", "neurons.finetune.worker", str(folder)]
    done = subprocess.run(argv, env=environment, capture_output=True, timeout=180)
    assert done.returncode == EXIT_OK, done.stderr.decode()
    logs = [e["message"] for e in read_events(folder / EVENTS) if e["type"] == "log"]
    assert any(line in message for message in logs), logs


def test_the_old_variable_reaches_a_worker_whose_spec_has_none(tmp_path: Path) -> None:
    test_the_fine_tuning_worker_trains_on_the_spec_threads(
        tmp_path, None, {"NEURONS_TRAIN_THREADS": "2"}, "(2 threads)"
    )


@pytest.mark.parametrize(("setting", "expected"), [(None, 1), (2, 2)])
def test_the_inference_module_forwards_on_the_setting(setting: int | None, expected: int) -> None:
    async def main() -> object:
        service = InferenceService(InferenceConfig(device="cpu", torch_threads=setting))
        await service.start()
        try:
            await service.embed(["threads, measured"])
            return service.stats()["torch_threads"]
        finally:
            await service.stop()

    assert asyncio.run(main()) == expected
