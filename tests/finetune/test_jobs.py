"""The job status table, phases and progress, path confinement, and JobConfig."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from neurons.errors import InvalidModelNameError, InvalidRequestError, JobStateError
from neurons.finetune.jobs import (
    PHASE_WEIGHTS,
    PHASES,
    JobConfig,
    confine,
    next_status,
    overall_progress,
)
from neurons.finetune.presets import PRESETS
from neurons.lifecycle import TRANSITIONS, Event, Status


@pytest.mark.parametrize(
    ("status", "event", "expected"),
    [
        ("pending", "start", "running"),
        ("pending", "cancel", "cancelled"),
        ("running", "complete", "completed"),
        ("running", "fail", "failed"),
        ("running", "cancel", "cancelled"),
        ("running", "adopt", "running"),
        ("failed", "start", "running"),
        ("cancelled", "start", "running"),
        ("completed", "start", None),
        ("completed", "cancel", None),
        ("pending", "complete", None),
        ("failed", "cancel", None),
    ],
)
def test_transition_table(status: str, event: str, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(JobStateError):
            next_status(status, event)
    else:
        assert next_status(status, event) == expected


def test_every_status_is_reachable_and_finished_ones_are_marked() -> None:
    reached = {Status.PENDING} | set(TRANSITIONS.values())
    assert reached == set(Status)
    assert {s for s in Status if s.finished} == {"completed", "failed", "cancelled"}
    assert {e for (_, e) in TRANSITIONS} == set(Event)


def test_phases_are_the_seeds_and_progress_is_monotonic() -> None:
    assert PHASES == ("validating", "preparing", "training", "evaluating", "exporting", "deploying")
    assert sum(PHASE_WEIGHTS.values()) == pytest.approx(1.0)
    points = [overall_progress(p, f) for p in PHASES for f in (0.0, 0.5, 1.0)]
    assert points == sorted(points) and points[0] == 0.0 and points[-1] == 1.0
    assert overall_progress("training", 2.0) == overall_progress("training", 1.0)
    with pytest.raises(ValueError):
        overall_progress("dreaming")


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "ok.jsonl").write_text("{}\n")
    (root / "sub" / "deep.jsonl").write_text("{}\n")
    (tmp_path / "secret.txt").write_text("no")
    os.symlink(tmp_path / "secret.txt", root / "link-out.txt")
    os.symlink(root / "ok.jsonl", root / "link-in.jsonl")
    return root


@pytest.mark.parametrize(
    "good", ["ok.jsonl", "sub/deep.jsonl", "./sub/../ok.jsonl", "link-in.jsonl"]
)
def test_confine_accepts_files_inside(data_root: Path, good: str) -> None:
    assert confine(data_root, good).is_relative_to(data_root.resolve())


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("../secret.txt", "must be inside"),
        ("link-out.txt", "must be inside"),
        ("/etc/passwd", "must be inside"),
        ("sub/../../secret.txt", "must be inside"),
        ("missing.jsonl", "does not exist"),
        ("sub", "does not exist"),
        ("", "empty"),
        ("a\x00b", "NUL"),
    ],
)
def test_confine_refuses_everything_else(data_root: Path, bad: str, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        confine(data_root, bad)


def test_confine_accepts_an_absolute_path_inside(data_root: Path) -> None:
    assert confine(data_root, str(data_root / "ok.jsonl")) == (data_root / "ok.jsonl").resolve()


def test_job_config_validates_and_round_trips() -> None:
    config = JobConfig.create(
        base_model="smollm2:135m",
        target_model_name="pirate",
        training_data="ok.jsonl",
        data_type="csv",
        hyperparameters=PRESETS["efficient"],
        target_capabilities=["text_generation", " "],
        nodes=["n1"],
        column_mapping={"prompt": "question"},
    )
    assert config.target_model_name == "pirate:latest"
    assert config.target_capabilities == ("text_generation",)
    assert JobConfig.from_dict(config.to_dict()) == config
    with pytest.raises(InvalidRequestError, match="data_type"):
        JobConfig.create(
            base_model="a",
            target_model_name="b",
            training_data="x",
            data_type="parquet",
            hyperparameters=PRESETS["balanced"],
        )
    with pytest.raises(InvalidRequestError, match="differ"):
        JobConfig.create(
            base_model="a:latest",
            target_model_name="a",
            training_data="x",
            data_type="jsonl",
            hyperparameters=PRESETS["balanced"],
        )
    with pytest.raises(InvalidModelNameError):
        JobConfig.create(
            base_model="a",
            target_model_name="bad name!",
            training_data="x",
            data_type="jsonl",
            hyperparameters=PRESETS["balanced"],
        )
