"""``neurons learn run --set KEY=VALUE`` and ``--config FILE`` through Typer's CliRunner with a
temp state dir: every one of seed 003's seventeen keys reaches the stored run, the layers
stack (typed flags, ``--set``, the file over ``NEURONS_LEARNING_DEFAULTS``, the defaults),
tiny runs act on the keys, and a bad key or value exits 2 naming it with nothing stored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner, Result

from neurons.cli.main import app
from neurons.config import Settings
from neurons.store import open_store

TINY = ["--nodes", "3", "--rounds", "1"]
# Each seed key, a value other than its default (as typed), and the stored field and value.
KEYS: list[tuple[str, str, str, Any]] = [
    ("distributed_learning.node_config.learning_rate", "0.01", "node_learning_rate", 0.01),
    ("distributed_learning.node_config.knowledge_threshold", "0.5", "knowledge_threshold", 0.5),
    ("distributed_learning.node_config.teach_interval", "3", "local_steps", 3),
    ("distributed_learning.node_config.max_students", "2", "max_students", 2),
    ("node_config.distillation_temperature", "4", "distillation_temperature", 4),
    ("node.collaboration_weight", "0.6", "collaboration_weight", 0.6),
    ("model.type", "transformer", "model_type", "transformer"),
    ("model.hidden_size", "16", "hidden_size", 16),
    ("model.num_layers", "1", "num_layers", 1),
    ("model.num_heads", "2", "num_heads", 2),
    ("model.dropout", "0.2", "dropout", 0.2),
    ("learning_system.auto_scale", "true", "auto_scale", True),
    ("learning_system.min_nodes", "3", "min_nodes", 3),
    ("system.max_nodes", "6", "max_nodes", 6),
    ("learning_system.learning_rate", "0.01", "learning_rate", 0.01),
    ("learning_system.batch_size", "16", "batch_size", 16),
    ("learning_system.evaluation_interval", "50", "evaluation_interval", 50),
]
SEED_FILE = """
distributed_learning:
  lease_s: 30
  node_config:
    learning_rate: 0.01
    knowledge_threshold: 0.5
    teach_interval: 3
    max_students: 2
    distillation_temperature: 4
    collaboration_weight: 0.6
  system:
    max_nodes: 6
model:
  type: transformer
  hidden_size: 16
  num_layers: 1
  num_heads: 2
  dropout: 0.2
learning_system:
  auto_scale: true
  min_nodes: 3
  learning_rate: 0.01
  batch_size: 16
  evaluation_interval: 50
system:
  port: 9999
"""


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NEURONS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NEURONS_TORCH_THREADS", "1")
    monkeypatch.delenv("NEURONS_LEARNING_DEFAULTS", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path / "home"


def learn(*args: str) -> Result:
    return CliRunner().invoke(app, ["learn", *args])


def trained(*args: str) -> dict[str, Any]:
    result = learn("run", *args, "--json")
    assert result.exit_code == 0, result.output
    run: dict[str, Any] = json.loads(result.output)["run"]
    assert run["status"] == "completed"
    return run


def stored(run_id: str) -> dict[str, Any]:
    """The run's config as the store holds it."""
    store = open_store(Settings().resolved_database_url)
    try:
        return dict(store.learning.get(run_id).config)
    finally:
        store.close()


def events(run_id: str, kind: str) -> list[dict[str, Any]]:
    store = open_store(Settings().resolved_database_url)
    try:
        return [e.payload for e in store.learning.events(run_id, kind=kind, limit=5000)]
    finally:
        store.close()


def test_every_seed_key_set_with_set_reaches_the_stored_run() -> None:
    assignments = [arg for key, text, _, _ in KEYS for arg in ("--set", f"{key}={text}")]
    run = trained("--mode", "distill", *TINY, *assignments)
    config = stored(run["run_id"])
    assert {field: config[field] for _, _, field, _ in KEYS} == {f: v for _, _, f, v in KEYS}
    assert config["mode"] == "distill" and run["config"] == config


def test_a_config_files_learning_keys_are_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "neurons.yaml"
    path.write_text(SEED_FILE)
    run = trained("--mode", "distill", *TINY, "--config", str(path))
    config = stored(run["run_id"])
    assert {field: config[field] for _, _, field, _ in KEYS} == {f: v for _, _, f, v in KEYS}
    # --set over the file, a typed flag over both
    run = trained(
        "--mode", "distill", *TINY, "--config", str(path),
        "--set", "node.max_students=1", "--local-steps", "2",
    )  # fmt: skip
    config = stored(run["run_id"])
    assert (config["max_students"], config["local_steps"], config["num_heads"]) == (1, 2, 2)


def test_the_file_goes_over_the_environment_key_by_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    defaults = {"model.hidden_size": 24, "max_students": 4, "rounds": 1}
    monkeypatch.setenv("NEURONS_LEARNING_DEFAULTS", json.dumps(defaults))
    config = stored(trained("--mode", "distill", "--nodes", "2", "--local-steps", "2")["run_id"])
    assert (config["hidden_size"], config["max_students"], config["rounds"]) == (24, 4, 1)
    path = tmp_path / "neurons.yaml"
    path.write_text("distributed_learning:\n  node_config:\n    max_students: 1\n")
    args = ["--mode", "distill", "--nodes", "2", "--local-steps", "2", "--config", str(path)]
    config = stored(trained(*args)["run_id"])
    assert (config["hidden_size"], config["max_students"]) == (24, 1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "colour=blue"], "colour: unknown learning run key"),
        (
            ["--set", "node_config.max_student=1"],
            "node_config.max_student: unknown learning run key; "
            "did you mean 'node_config.max_students'?",
        ),
        (["--set", "learning_system.auto_scale=maybe"], "learning_system.auto_scale: must be"),
        (
            ["--set", "learning_system.min_nodes=5", "--set", "learning_system.max_nodes=3"],
            "learning_system.min_nodes, learning_system.max_nodes: invalid learning run: "
            "need 1 <= min_nodes <= max_nodes",
        ),
        (
            ["--set", "model.type=transformer", "--set", "model.num_heads=7"],
            "model.type, model.num_heads: invalid learning run: hidden_size 256 must be a multiple",
        ),
        (["--rounds", "2", "--set", "rounds=3"], "--rounds and rounds both set rounds"),
        (["--model", "mlp", "--set", "model.type=mlp"], "--model and model.type both set"),
        (["--set", "rounds"], "rounds: expected KEY=VALUE"),
        (["--set", "learning_system.auto_scale=true"], "learning_system.auto_scale: invalid"),
    ],
)
def test_bad_keys_and_values_exit_2_naming_the_key(args: list[str], message: str) -> None:
    result = learn("run", "--nodes", "2", "--rounds", "1", *args)
    assert result.exit_code == 2, result.output
    assert f"error: {message}" in result.output
    assert json.loads(learn("ls", "--json").output)["total"] == 0
    answer = json.loads(learn("run", "--nodes", "2", "--rounds", "1", *args, "--json").output)
    assert answer["success"] is False and message in answer["error"]


def test_a_bad_config_file_exits_2_naming_the_file_key(tmp_path: Path) -> None:
    path = tmp_path / "neurons.yaml"
    path.write_text("model:\n  num_heads: 0\n")
    result = learn("run", "--config", str(path))
    assert result.exit_code == 2
    assert "model.num_heads: invalid learning run: num_heads must be 1-64" in result.output
    assert json.loads(learn("ls", "--json").output)["total"] == 0


def test_the_keys_change_what_the_run_does(home: Path) -> None:
    shape = ["--mode", "fedavg", "--nodes", "2", "--rounds", "1", "--local-steps", "2"]
    one = trained(*shape, "--set", "model.hidden_size=16")
    three = trained(*shape, "--set", "model.hidden_size=16", "--set", "model.num_layers=3")
    sizes = []
    for run in (one, three):
        with np.load(home / "learning" / "runs" / run["run_id"] / "weights.npz") as saved:
            sizes.append(len(saved.files))
    assert sizes[1] > sizes[0]
    distill = ["--mode", "distill", *TINY, "--local-steps", "4", "--set", "model.hidden_size=16"]
    anyone = ["--set", "node_config.knowledge_threshold=0"]
    assert events(trained(*distill, *anyone)["run_id"], "taught")
    untaught = trained(*distill, *anyone, "--set", "node_config.max_students=0")
    assert events(untaught["run_id"], "taught") == []
    assert events(untaught["run_id"], "learned")
