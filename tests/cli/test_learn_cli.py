"""``neurons learn`` through Typer's CliRunner with a temp state dir: a real run on digits,
stored and listed; bad input answered with a clear error and nothing stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from neurons.cli.main import app


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NEURONS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path / "home"


def learn(*args: str) -> Result:
    return CliRunner().invoke(app, ["learn", *args])


def test_run_trains_stores_and_prints_the_final_table() -> None:
    args = ["--dataset", "digits", "--nodes", "3", "--rounds", "2", "--local-steps", "5"]
    result = learn("run", *args, "--mode", "fedprox", "--partition", "skewed")
    assert result.exit_code == 0, result.output
    assert "fedprox on digits (skewed, 3 nodes), completed, round 2/2" in result.output
    assert "test_accuracy" in result.output
    listed = learn("ls", "--json")
    runs = json.loads(listed.output)["runs"]
    assert [(r["mode"], r["status"], r["current_round"]) for r in runs] == [
        ("fedprox", "completed", 2)
    ]
    status = json.loads(learn("status", runs[0]["run_id"], "--json").output)["run"]
    assert [h["round"] for h in status["history"]] == [1, 2]


def test_distill_run_as_json_reports_students_and_their_scratch_twins() -> None:
    args = ["--mode", "distill", "--rounds", "3", "--local-steps", "30", "--nodes", "3"]
    result = learn("run", *args, "--json")
    assert result.exit_code == 0, result.output
    run = json.loads(result.output)["run"]
    assert run["status"] == "completed"
    assert set(run["result"]["students"]) == {"node-1", "node-2"}
    assert set(run["result"]["scratch"]) == {"node-1", "node-2"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mode", "telepathy"], "choose one of"),
        (["--partition", "diagonal"], "choose one of"),
        (["--dataset", "mnist"], "choose one of"),
        (["--model", "cnn"], "choose one of"),
    ],
)
def test_bad_choices_are_usage_errors(args: list[str], message: str) -> None:
    result = learn("run", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert json.loads(learn("ls", "--json").output)["total"] == 0


def test_bad_numbers_are_errors_and_store_nothing() -> None:
    result = learn("run", "--rounds", "0", "--json")
    assert result.exit_code == 1
    answer = json.loads(result.output)
    assert answer["success"] is False and "rounds" in answer["error"]
    assert json.loads(learn("ls", "--json").output)["total"] == 0


def test_unknown_run_is_an_error() -> None:
    result = learn("status", "99")
    assert result.exit_code == 1
    assert "not found" in result.output


def test_refusals_answer_with_the_job_commands_envelope() -> None:
    assert learn("run", "--nodes", "2", "--rounds", "1", "--local-steps", "2").exit_code == 0
    again = learn("start", "1", "--json")
    assert again.exit_code == 1
    answer = json.loads(again.output)
    assert set(answer) == {"success", "error", "error_code"}
    assert (answer["success"], answer["error_code"]) == (False, "invalid_learning_state")
    unknown = json.loads(learn("cancel", "99", "--json").output)
    assert unknown["error_code"] == "learning_run_not_found"
    plain = learn("cancel", "1")
    assert plain.exit_code == 1 and plain.output.startswith("error: ")
