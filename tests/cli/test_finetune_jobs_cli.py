"""``neurons finetune run|status|ls|start|cancel`` through Typer's CliRunner with a temp state
dir. A job whose data is all invalid fails in its validating phase, before any node or model is
needed, so these run without a neuron; real training is covered in tests/api."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from neurons.cli.main import app


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NEURONS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NEURONS_OLLAMA_BASE_URL", "")
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path / "home"


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(app, ["finetune", *map(str, args)])


def refused(*args: str | Path) -> str:
    """A refusal as every job command reports it: exit 1, ``error: ...`` on stderr, and under
    ``--json`` the management envelope on stdout; the message."""
    result = invoke(*args)
    assert result.exit_code == 1 and result.stderr.startswith("error: "), result.output
    envelope = json.loads(invoke(*args, "--json").stdout)
    assert envelope["success"] is False and envelope["error_code"], envelope
    assert envelope["error"] == result.stderr.strip().removeprefix("error: ")
    return str(envelope["error"])


def test_run_with_bad_data_fails_with_the_reason_and_is_listed(tmp_path: Path, home: Path) -> None:
    data = tmp_path / "broken.jsonl"
    data.write_text('{"instruction": "q"}\n')
    result = invoke("run", data, "--base", "smollm2:135m", "--name", "beep", "--json")
    assert result.exit_code == 1, result.output
    payload = json.loads(result.stdout)
    assert payload["success"] is False
    job = payload["job"]
    assert job["state"] == "failed" and "no valid training examples" in job["error"]
    assert job["training_data_path"].startswith("uploads/")
    # The data was copied into the fine-tuning data directory, not read in place.
    assert (home / "fine_tuning" / "data" / job["training_data_path"]).read_bytes() == (
        data.read_bytes()
    )

    listed = invoke("ls")
    assert listed.exit_code == 0 and "beep:latest" in listed.stdout and "failed" in listed.stdout
    status = invoke("status", job["job_id"])
    assert status.exit_code == 0 and "no valid training examples" in status.stdout
    assert "cannot cancel a job that is failed" in refused("cancel", job["job_id"])
    assert "Failed: no valid training examples" in status.stdout  # the failing move's log line


def test_bad_arguments_are_refused_before_a_job_exists(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "p", "completion": "c"}\n')
    assert "neither a preset" in refused(
        "run", data, "--base", "smollm2:135m", "--name", "x", "-p", "turbo"
    )
    assert json.loads(invoke("ls", "--json").stdout)["count"] == 0
    assert "no fine-tuning job '7'" in refused("status", "7")
    assert "no fine-tuning job '7'" in refused("start", "7")
    assert "no fine-tuning job '7'" in refused("cancel", "7")
    assert "unknown job status" in refused("ls", "--status", "sleeping")
