"""LLM teaching as a job (a learning run of mode ``teach``) through REST and the CLI, against a
real control plane and a real embedded neuron: what is refused, and with which message; marked
slow, a job cancelled while its fine-tuning job trains (both end cancelled, the phases before
kept), a job resumed by the next control plane where the last one left it, and whole teaching
jobs from REST and from ``neurons learn teach`` with a few
prompts and LoRA steps, each reporting agreement before and after."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from neurons.api.app import NodeSpec, create_control_plane
from neurons.cli.main import app as cli_app
from neurons.config import Settings
from neurons.errors import InvalidModelNameError, InvalidRequestError
from neurons.learning.llm_teach import (
    HELD_OUT_PROMPTS,
    same_opening,
    teacher_body,
    training_prompts,
)
from neurons.learning.teaching import TeachConfig
from neurons.neuron.process import NeuronProcess
from neurons.store import open_store
from tests.api.envelope import error, ok
from tests.conftest import start_neuron

SMOL = "smollm2:135m"
TEACHER = "teach-pirate:latest"
TEACH = "/api/ai/learning/teach"
PROMPTS = ["What is the capital of France?", "Say hello.", "What is rain?"]
# A handful of LoRA steps: enough to run every phase, not to learn much.
FEW_STEPS = {
    "learning_rate": 1e-3,
    "epochs": 1,
    "max_steps": 2,
    "batch_size": 2,
    "warmup_steps": 0,
    "max_seq_length": 64,
    "eval_fraction": 0.0,
    "checkpoint_steps": 1,
}
# A teaching job whose fine-tuning would run for minutes: the tests stop it before.
LONG_JOB: dict[str, Any] = {
    "teacher": TEACHER,
    "student": SMOL,
    "prompts": PROMPTS,
    "num_predict": 6,
    "hyperparameters": {**FEW_STEPS, "max_steps": 500, "epochs": 500},
}

# -- the config -------------------------------------------------------------------------------


def test_config_defaults_split_and_tuned_name() -> None:
    config = TeachConfig(teacher=TEACHER, student=SMOL)
    train, held = config.split()
    assert train == training_prompts() and held == list(HELD_OUT_PROMPTS)
    assert config.tuned == "smollm2-135m-from-teach-pirate-latest:latest"
    given = TeachConfig(teacher=TEACHER, student=SMOL, prompts=tuple(f"q{i}" for i in range(10)))
    assert given.split() == ([f"q{i}" for i in range(10) if i not in (4, 9)], ["q4", "q9"])
    two = TeachConfig(teacher=TEACHER, student=SMOL, prompts=("a", "b"))
    assert two.split() == (["a"], ["b"])
    stored = TeachConfig.from_dict(config.to_dict())
    assert stored == config and config.to_dict()["mode"] == "teach"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"student": TEACHER}, "same model"),
        ({"student": "library/smollm2:135m"}, None),
        ({"prompts": ["only one"]}, "at least 2"),
        ({"prompts": ["a", "b"], "held_out": ["b"]}, "also training prompts"),
        ({"prompts": "a b"}, "list of strings"),
        ({"num_predict": 0}, "num_predict"),
        ({"hyperparameters": {"epochs": 0}}, "epochs"),
        ({"tuned": TEACHER}, "tuned must differ"),
        ({"colour": "red"}, "unknown teaching fields: colour"),
    ],
)
def test_config_refuses_bad_input_naming_it(fields: dict[str, Any], message: str | None) -> None:
    data = {"teacher": TEACHER, "student": SMOL, **fields}
    if message is None:
        data["teacher"] = SMOL  # the same model, however its name is written
        message = "same model"
    with pytest.raises(InvalidRequestError, match=message):
        TeachConfig.from_dict(data)


def test_config_needs_both_models_with_valid_names() -> None:
    with pytest.raises(InvalidRequestError, match="student is required"):
        TeachConfig.from_dict({"teacher": TEACHER})
    with pytest.raises(InvalidModelNameError):
        TeachConfig.from_dict({"teacher": "no good/../name", "student": SMOL})


# -- REST against a real control plane ----------------------------------------------------------


@pytest.fixture
def teacher(neuron: NeuronProcess) -> str:
    """A pirate teacher built from SmolLM2 on the neuron (a manifest: no weights copied)."""
    with httpx.stream("POST", f"{neuron.url}/api/create", json=teacher_body(TEACHER, SMOL)) as r:
        assert r.status_code == 200
        r.read()
    return TEACHER


def settings_for(home: Path) -> Settings:
    return Settings(
        home=home,
        health_interval_s=0.5,
        ollama_base_url="",
        import_default_models=False,
        snapshot_interval_s=0,
        fine_tuning_lease_s=2.0,
        learning_lease_s=2.0,
    )


@pytest.fixture
def client(neuron: NeuronProcess, teacher: str, tmp_path: Path) -> Iterator[TestClient]:
    app = create_control_plane(settings_for(tmp_path), [NodeSpec("n1", neuron.url, "embedded")])
    with TestClient(app) as test_client:
        yield test_client


def until_run(client: TestClient, run_id: str, done: Any, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run: dict[str, Any] = ok(client.get(f"/api/ai/learning/runs/{run_id}"))["run"]
        if done(run):
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} never got there: {run}")


def test_rest_refuses_bad_input_in_the_seed_envelope(client: TestClient) -> None:
    missing = error(
        client.post(TEACH, json={"teacher": "nope:1b", "student": SMOL}), 404, "model_not_found"
    )
    assert "no healthy node holds the teacher model nope:1b" in missing
    same = error(
        client.post(TEACH, json={"teacher": SMOL, "student": SMOL}), 400, "invalid_request"
    )
    assert "same model" in same
    node = {"teacher": TEACHER, "student": SMOL, "student_node": "elsewhere"}
    assert "no node named 'elsewhere'" in error(
        client.post(TEACH, json=node), 404, "node_not_found"
    )
    few = {"teacher": TEACHER, "student": SMOL, "prompts": ["one"]}
    assert "at least 2" in error(client.post(TEACH, json=few), 400, "invalid_request")
    odd = {"teacher": TEACHER, "student": SMOL, "start": "yes"}
    assert "start must be" in error(client.post(TEACH, json=odd), 400, "invalid_request")
    assert ok(client.get("/api/ai/learning/runs"))["runs"] == []  # nothing stored


def test_a_stored_teaching_job_is_a_learning_run_of_mode_teach(client: TestClient) -> None:
    body = {"teacher": TEACHER, "student": SMOL, "prompts": PROMPTS, "start": False}
    run = ok(client.post(TEACH, json=body))["run"]
    assert (run["status"], run["mode"], run["total_rounds"]) == ("pending", "teach", 4)
    config = run["config"]
    assert (config["teacher_node"], config["student_node"]) == ("n1", "n1")
    assert config["tuned"] == "smollm2-135m-from-teach-pirate-latest:latest"
    assert config["prompts"] == PROMPTS and config["held_out"] == []
    listed = ok(client.get("/api/ai/learning/runs"))["runs"]
    assert [(r["run_id"], r["mode"]) for r in listed] == [(run["run_id"], "teach")]
    cancelled = ok(client.post(f"/api/ai/learning/runs/{run['run_id']}/cancel"))["run"]
    assert cancelled["status"] == "cancelled"


@pytest.mark.slow  # the fine-tuning job must reach its worker: a minute or more on 2 cores
@pytest.mark.timeout(600)
def test_a_teaching_job_cancelled_while_fine_tuning_cancels_its_job(client: TestClient) -> None:
    created = ok(client.post(TEACH, json=LONG_JOB))
    run = created["run"]
    assert (run["mode"], run["dataset"], run["total_rounds"]) == ("teach", "prompts", 4)
    assert run["config"]["teacher_node"] == run["config"]["student_node"] == "n1"
    run_id = created["run_id"]
    run = until_run(client, run_id, lambda r: "fine_tuning_job" in r["result"], 120)
    job_id = run["result"]["fine_tuning_job"]
    assert run["current_round"] == 2 and run["result"]["before"]["answers"]
    assert len(run["result"]["teacher_answers"]) == 1  # the third prompt is held out

    ok(client.post(f"/api/ai/learning/runs/{run_id}/cancel"))
    final = until_run(client, run_id, lambda r: r["status"] != "running", 30)
    assert final["status"] == "cancelled", final
    job = until_job_ends(client, job_id)
    assert job["status"] == "cancelled", job
    events = ok(client.get(f"/api/ai/learning/runs/{run_id}/events"))["events"]
    assert [e["payload"]["phase"] for e in events if e["kind"] == "teach"][:2] == [
        "answering",
        "before",
    ]


@pytest.mark.slow  # a shutdown while its fine-tuning job starts, and another plane after it
@pytest.mark.timeout(600)
def test_a_teaching_job_resumes_on_the_next_control_plane_where_it_was(
    neuron: NeuronProcess, teacher: str, tmp_path: Path
) -> None:
    """The first plane stops once the job has its fine-tuning job; the next plane on the same
    state resumes the teaching job at once (its lease given back), without asking the teacher
    again: the same answers, the same fine-tuning job, one ``answering`` phase."""
    nodes = [NodeSpec("n1", neuron.url, "embedded")]
    with TestClient(create_control_plane(settings_for(tmp_path), nodes)) as first:
        run_id = ok(first.post(TEACH, json=LONG_JOB))["run_id"]
        before = until_run(first, run_id, lambda r: "fine_tuning_job" in r["result"], 120)
    assert before["status"] == "running" and before["attempts"] == 1  # left for the next plane
    with TestClient(create_control_plane(settings_for(tmp_path), nodes)) as second:
        resumed = until_run(second, run_id, lambda r: r["attempts"] == 2, 60)
        assert resumed["status"] == "running"
        result = resumed["result"]
        assert result["fine_tuning_job"] == before["result"]["fine_tuning_job"]
        assert result["teacher_answers"] == before["result"]["teacher_answers"]
        assert result["before"] == before["result"]["before"]
        events = ok(second.get(f"/api/ai/learning/runs/{run_id}/events"))["events"]
        phases = [e["payload"]["phase"] for e in events if e["kind"] == "teach"]
        assert phases.count("answering") == 1, phases
        ok(second.post(f"/api/ai/learning/runs/{run_id}/cancel"))
        final = until_run(second, run_id, lambda r: r["status"] != "running", 30)
        assert final["status"] == "cancelled", final
        job = until_job_ends(second, str(result["fine_tuning_job"]), 60)
        assert job["status"] == "cancelled", job


def until_job_ends(client: TestClient, job_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = ok(client.get(f"/api/ai/ollama/fine-tuning/status/{job_id}"))["job"]
        # a running job shows its phase as its status
        if job["status"] in ("completed", "failed", "cancelled") or time.monotonic() > deadline:
            return job
        time.sleep(0.2)


# -- the CLI ----------------------------------------------------------------------------------


@pytest.fixture
def cli_home(
    neuron: NeuronProcess, teacher: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    home = tmp_path / "home"
    for name, value in {
        "NEURONS_HOME": str(home),
        "NEURONS_OLLAMA_BASE_URL": "",
        "NEURONS_IMPORT_DEFAULT_MODELS": "false",
        "NEURONS_FINE_TUNING_LEASE_S": "2",
        "COLUMNS": "200",
    }.items():
        monkeypatch.setenv(name, value)
    store = open_store(settings_for(home).resolved_database_url)
    try:
        store.nodes.upsert("n1", neuron.url, "embedded")
    finally:
        store.close()
    return home


def teach(*args: str) -> Result:
    return CliRunner().invoke(cli_app, ["learn", "teach", *args])


def test_cli_refuses_bad_input_with_a_clear_message(cli_home: Path, tmp_path: Path) -> None:
    missing = teach("--teacher", TEACHER, "--student", SMOL, "--prompts", str(tmp_path / "no"))
    assert missing.exit_code == 2 and "cannot read" in missing.output
    assert "no such file" in missing.output
    unknown = teach("--teacher", "nope:1b", "--student", SMOL)
    assert unknown.exit_code == 1
    assert "error: no healthy node holds the teacher model nope:1b" in unknown.output
    same = teach("--teacher", SMOL, "--student", SMOL, "--json")
    assert same.exit_code == 1
    answer = json.loads(same.output)
    assert answer["success"] is False and "same model" in answer["error"]
    node = teach("--teacher", TEACHER, "--student", SMOL, "--node", "elsewhere")
    assert node.exit_code == 1 and "no node named 'elsewhere'" in node.output
    listed = CliRunner().invoke(cli_app, ["learn", "ls", "--json"])
    assert json.loads(listed.output)["runs"] == []


# -- whole teaching jobs (slow) ---------------------------------------------------------------


def assert_report(result: dict[str, Any], held_out: int) -> None:
    assert result["phase"] == "done" and result["held_out_count"] == held_out
    for when in ("before", "after"):
        assert 0.0 <= result[when]["f1"] <= 1.0 and len(result[when]["answers"]) == held_out
    assert result["gain"] == pytest.approx(result["after"]["f1"] - result["before"]["f1"])


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_rest_teaching_job_reports_agreement_before_and_after(
    client: TestClient, neuron: NeuronProcess
) -> None:
    body = {"teacher": TEACHER, "student": SMOL, "prompts": PROMPTS, "num_predict": 8}
    body |= {"tuned": "taught-rest:latest", "hyperparameters": FEW_STEPS}
    run_id = ok(client.post(TEACH, json=body))["run_id"]
    final = until_run(client, run_id, lambda r: r["status"] != "running", 800)
    assert final["status"] == "completed", final
    assert final["current_round"] == 4
    assert_report(final["result"], held_out=1)
    tags = httpx.get(f"{neuron.url}/api/tags", timeout=10).json()["models"]
    assert "taught-rest:latest" in {m["name"] for m in tags}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_cli_teach_runs_the_job_here_and_prints_the_agreement(
    cli_home: Path, tmp_path: Path
) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# a comment\n" + "\n".join(PROMPTS) + "\n\n")
    args = ["--teacher", TEACHER, "--student", SMOL, "--prompts", str(prompts), "--node", "n1"]
    args += ["--tuned", "taught-cli:latest", "--num-predict", "8"]
    result = teach(*args, "--hyperparameters", json.dumps(FEW_STEPS))
    assert result.exit_code == 0, result.output
    assert "teaches smollm2:135m on n1 -> taught-cli:latest, completed, phase 4/4" in result.output
    assert "before" in result.output and "after" in result.output and "gain" in result.output
    listed = json.loads(CliRunner().invoke(cli_app, ["learn", "ls", "--json"]).output)["runs"]
    state = json.loads(
        CliRunner().invoke(cli_app, ["learn", "status", listed[0]["run_id"], "--json"]).output
    )["run"]
    assert_report(state["result"], held_out=1)


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_a_teaching_job_teaches_the_pirate_style_over_rest(
    neuron: NeuronProcess, teacher: str, tmp_path: Path
) -> None:
    """LLM nodes teach each other, as a job started over REST: the pirate teacher on one
    neuron answers the 48 packaged prompts; plain SmolLM2 on another neuron is fine-tuned on
    those answers; on the 10 held-out prompts neither saw, the student agrees with the
    teacher far more after than before, and the tuned model is on the student's node only."""
    from tests.learning.test_llm_teach import LEARN

    student_neuron = start_neuron(tmp_path / "student-home")
    nodes = [
        NodeSpec("teacher", neuron.url, "embedded"),
        NodeSpec("student", student_neuron.url, "embedded"),
    ]
    body: dict[str, Any] = {"teacher": TEACHER, "student": SMOL, "tuned": "taught-pirate:latest"}
    body |= {"teacher_node": "teacher", "student_node": "student", "hyperparameters": LEARN}
    try:
        with TestClient(create_control_plane(settings_for(tmp_path), nodes)) as client:
            run_id = ok(client.post(TEACH, json=body))["run_id"]
            final = until_run(client, run_id, lambda r: r["status"] != "running", 2300)
        on_teacher, on_student = tags(neuron.url), tags(student_neuron.url)
    finally:
        student_neuron.stop()
    result = final["result"]
    print(json.dumps({k: result[k] for k in ("before", "after", "gain")}, indent=1))
    assert final["status"] == "completed", final
    assert_report(result, held_out=10)
    assert result["train_count"] == 48
    assert "taught-pirate:latest" in on_student and "taught-pirate:latest" not in on_teacher
    assert TEACHER in on_teacher and TEACHER not in on_student
    # The teacher's style is what is taught: it shows on the held-out prompts.
    assert sum(same_opening(a, "Arr, matey!") for a in result["teacher_answers"]) >= 9
    assert result["before"]["opening"] <= 0.1 and result["after"]["opening"] >= 0.8, result
    assert result["gain"] >= 0.25, result


def tags(url: str) -> set[str]:
    return {m["name"] for m in httpx.get(f"{url}/api/tags", timeout=30).json()["models"]}
