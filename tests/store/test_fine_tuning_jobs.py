"""The fine-tuning job repository on a real SQLite file: creation, status moves and lease
renewals through the jobs runtime's lease table (progress, logs, metrics, the worker's pid),
phase filters, and ids from requests."""

from __future__ import annotations

import doctest
from typing import Any

import pytest

from neurons.errors import InvalidRequestError, JobNotFoundError, JobStateError
from neurons.finetune.jobs import JobConfig
from neurons.finetune.kind import job_leases
from neurons.finetune.presets import PRESETS
from neurons.store import Store, finetune
from neurons.store.finetune import MAX_LOG_LINES, appended, log_appended, progress_columns


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


def test_moves_take_and_give_back_the_lease(store: Store) -> None:
    leases = job_leases(store)
    job = store.fine_tuning.create(_config())
    leases.transition(job.job_id, ("pending",), "running", runner="a")
    running = store.fine_tuning.get(job.job_id)
    assert (running.status, running.runner, running.attempts) == ("running", "a", 1)
    assert running.started_at is not None
    with pytest.raises(JobStateError):  # compare-and-set: no longer pending
        leases.transition(job.job_id, ("pending",), "running", runner="b")
    with pytest.raises(JobStateError, match="another process"):
        leases.transition(job.job_id, ("running",), "running", runner="b", expected_runner="")
    assert leases.renew(job.job_id, "a", progress_columns(worker_pid=4242, eta_s=9.0))
    assert leases.release(job.job_id, "a")
    released = store.fine_tuning.get(job.job_id)  # a worker's pid means nothing without a runner
    assert (released.status, released.runner, released.worker_pid) == ("running", None, None)
    leases.transition(job.job_id, ("running",), "running", runner="b", expected_runner="")
    adopted = store.fine_tuning.get(job.job_id)
    assert (adopted.runner, adopted.attempts) == ("b", 2)
    done = {"progress": repr(1.0), "logs": log_appended("Job completed")}
    leases.transition(job.job_id, ("running",), "completed", expected_runner="b", values=done)
    record = store.fine_tuning.get(job.job_id)
    assert record.runner is None and record.finished_at is not None and record.progress == 1.0
    assert record.logs == ["Job completed"]


def test_progress_needs_the_lease_and_merges(store: Store) -> None:
    leases = job_leases(store)
    job = store.fine_tuning.create(_config())
    leases.transition(job.job_id, ("pending",), "running", runner="a")
    assert not leases.renew(job.job_id, "intruder", progress_columns(progress=0.5))
    assert leases.renew(
        job.job_id,
        "a",
        progress_columns(phase="training", progress=0.4),
        appended(["x"], {"loss": 2.0}),
    )
    assert leases.renew(
        job.job_id, "a", progress_columns(eta_s=12.5, worker_pid=4242), appended([], {"step": 3})
    )
    record = store.fine_tuning.get(job.job_id)
    assert (record.current_phase, record.progress, record.eta_s) == ("training", 0.4, 12.5)
    assert record.metrics == {"loss": 2.0, "step": 3} and record.worker_pid == 4242
    assert record.logs == ["x"]
    shape = record.to_dict()
    assert shape["status"] == "training" and shape["state"] == "running"
    assert [r.job_id for r in store.fine_tuning.list("training")] == [job.job_id]
    assert store.fine_tuning.list("exporting") == []
    leases.transition(job.job_id, ("running",), "cancelled")
    cancelled = store.fine_tuning.get(job.job_id)
    assert (cancelled.worker_pid, cancelled.eta_s) == (None, None)


def test_logs_keep_only_the_newest(store: Store) -> None:
    leases = job_leases(store)
    job = store.fine_tuning.create(_config())
    leases.transition(job.job_id, ("pending",), "running", runner="a")
    lines = [f"line {i}" for i in range(MAX_LOG_LINES + 30)]
    leases.renew(job.job_id, "a", computed=appended(lines))
    assert store.fine_tuning.get(job.job_id).logs == lines[-MAX_LOG_LINES:]
    failed = {"logs": log_appended('Failed: "quoted", \\ and ünïcode')}
    leases.transition(job.job_id, ("running",), "failed", error="x", values=failed)
    logs = store.fine_tuning.get(job.job_id).logs
    assert logs == [*lines[-MAX_LOG_LINES + 1 :], 'Failed: "quoted", \\ and ünïcode']


def test_docstring_examples() -> None:
    result = doctest.testmod(finetune)
    assert result.attempted > 0 and result.failed == 0


def test_unknown_status_filter_is_refused(store: Store) -> None:
    with pytest.raises(InvalidRequestError, match="unknown job status"):
        store.fine_tuning.list("sleeping")
