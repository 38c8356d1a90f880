"""The fine-tuning job repository on a real SQLite file: creation, compare-and-set status
moves with the lease, progress and logs, phase filters, and ids from requests."""

from __future__ import annotations

from typing import Any

import pytest

from neurons.errors import InvalidRequestError, JobNotFoundError, JobStateError
from neurons.finetune.jobs import JobConfig
from neurons.finetune.presets import PRESETS
from neurons.store import Store
from neurons.store.finetune import MAX_LOG_LINES


def _config(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "base_model": "smollm2:135m",
        "target_model_name": "smollm2-pirate",
        "training_data": "pirate.jsonl",
        "data_type": "jsonl",
        "hyperparameters": PRESETS["efficient"],
    }
    values.update(overrides)
    return JobConfig.create(**values).to_dict()


def test_create_get_list_and_the_seed_shape(store: Store) -> None:
    first = store.fine_tuning.create(_config())
    second = store.fine_tuning.create(_config(target_model_name="other"))
    assert (first.job_id, first.status, first.progress, first.attempts) == ("1", "pending", 0, 0)
    assert store.fine_tuning.get("1").config == first.config
    assert [r.job_id for r in store.fine_tuning.list()] == [second.job_id, "1"]
    shape = first.to_dict()
    assert shape["status"] == "pending" and shape["current_phase"] is None
    assert shape["base_model"] == "smollm2:135m"
    assert shape["target_model_name"] == "smollm2-pirate:latest"
    assert shape["hyperparameters"]["learning_rate"] == 2e-5
    assert shape["logs"] == [] and shape["start_time"] is None


@pytest.mark.parametrize("bad", ["0", "99", "../etc/passwd", "1 OR 1=1", "", "9" * 40])
def test_unknown_or_malformed_ids_are_not_found(store: Store, bad: str) -> None:
    store.fine_tuning.create(_config())
    with pytest.raises(JobNotFoundError):
        store.fine_tuning.get(bad)


def test_transitions_take_and_give_back_the_lease(store: Store) -> None:
    job = store.fine_tuning.create(_config())
    running = store.fine_tuning.transition(
        job.job_id, ("pending",), "running", runner="a", log="Job started"
    )
    assert (running.status, running.runner, running.attempts) == ("running", "a", 1)
    assert running.started_at is not None and running.logs == ["Job started"]
    with pytest.raises(JobStateError):  # compare-and-set: no longer pending
        store.fine_tuning.transition(job.job_id, ("pending",), "running", runner="b")
    with pytest.raises(JobStateError, match="another process"):
        store.fine_tuning.transition(
            job.job_id, ("running",), "running", runner="b", expected_runner=""
        )
    assert store.fine_tuning.release(job.job_id, "a")
    adopted = store.fine_tuning.transition(
        job.job_id, ("running",), "running", runner="b", expected_runner=""
    )
    assert (adopted.runner, adopted.attempts) == ("b", 2)
    done = store.fine_tuning.transition(
        job.job_id, ("running",), "completed", expected_runner="b", progress=1.0
    )
    assert done.runner is None and done.finished_at is not None and done.progress == 1.0


def test_progress_needs_the_lease_and_merges(store: Store) -> None:
    job = store.fine_tuning.create(_config())
    store.fine_tuning.transition(job.job_id, ("pending",), "running", runner="a")
    assert not store.fine_tuning.record_progress(job.job_id, "intruder", progress=0.5)
    assert store.fine_tuning.record_progress(
        job.job_id, "a", phase="training", progress=0.4, logs=["x"], metrics={"loss": 2.0}
    )
    assert store.fine_tuning.record_progress(
        job.job_id, "a", metrics={"step": 3}, eta_s=12.5, worker_pid=4242
    )
    record = store.fine_tuning.get(job.job_id)
    assert (record.current_phase, record.progress, record.eta_s) == ("training", 0.4, 12.5)
    assert record.metrics == {"loss": 2.0, "step": 3} and record.worker_pid == 4242
    shape = record.to_dict()
    assert shape["status"] == "training" and shape["state"] == "running"
    assert [r.job_id for r in store.fine_tuning.list("training")] == [job.job_id]
    assert store.fine_tuning.list("exporting") == []


def test_logs_keep_only_the_newest(store: Store) -> None:
    job = store.fine_tuning.create(_config())
    store.fine_tuning.transition(job.job_id, ("pending",), "running", runner="a")
    lines = [f"line {i}" for i in range(MAX_LOG_LINES + 30)]
    store.fine_tuning.record_progress(job.job_id, "a", logs=lines)
    assert store.fine_tuning.get(job.job_id).logs == lines[-MAX_LOG_LINES:]


def test_unknown_status_filter_is_refused(store: Store) -> None:
    with pytest.raises(InvalidRequestError, match="unknown job status"):
        store.fine_tuning.list("sleeping")
