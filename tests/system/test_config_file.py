"""``neurons up --config neurons.yaml``: seed 003's sections mapped onto Settings, errors that
name the key, unknown keys refused by name, the seed's own example accepted with its
meaningless keys reported, and precedence flags > environment > file > defaults."""

from __future__ import annotations

import doctest
import subprocess
import sys
from pathlib import Path

import pytest

import neurons.system.config_file
from neurons.errors import ConfigError
from neurons.system.config_file import load_config

FULL = """
system:
  host: 127.0.0.1
  port: 9001
  log_level: WARNING
  home: state
  node_port: 9002
  drain_deadline_s: 12.5
persistence:
  auto_save_interval: 60
  max_versions: 7
  storage_path: snaps
model:
  default: mock:latest
  keep_alive: 10m
  max_loaded: 2
distributed_learning:
  lease_s: 20
database:
  type: sqlite
  path: /var/lib/neurons/n.db
"""

# Seed 003's README blocks, as a user would paste them.
SEED = """
persistence:
  auto_save_interval: 300  # seconds
  max_versions: 100
  storage_path: "storage"
  db_path: "storage/persistence.db"
  collector_config:
    include_metrics: true
    include_history: true
    max_history_items: 1000
components:
  bridge:
    version_compatibility: true
distributed_learning:
  node_config:
    learning_rate: 0.001
    knowledge_threshold: 0.8
model:
  type: "transformer"
  hidden_size: 256
  num_layers: 4
  num_heads: 8
  dropout: 0.1
learning_system:
  auto_scale: true
  min_nodes: 3
  max_nodes: 10
  learning_rate: 0.001
  batch_size: 32
  evaluation_interval: 100
"""


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NEURONS_PORT", "NEURONS_HOME", "NEURONS_SNAPSHOT_MAX_VERSIONS"):
        monkeypatch.delenv(name, raising=False)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "neurons.yaml"
    path.write_text(text)
    return path


def test_the_sections_map_onto_settings(tmp_path: Path) -> None:
    loaded = load_config(_write(tmp_path, FULL))
    settings = loaded.settings()
    assert (settings.host, settings.port, settings.node_port) == ("127.0.0.1", 9001, 9002)
    assert settings.log_level == "warning" and settings.drain_deadline_s == 12.5
    assert settings.home == tmp_path / "state"  # relative to the file's folder
    assert settings.snapshot_interval_s == 60 and settings.snapshot_max_versions == 7
    assert settings.resolved_snapshot_path == tmp_path / "snaps"
    assert (settings.default_model, settings.keep_alive, settings.max_loaded_models) == (
        "mock:latest",
        "10m",
        2,
    )
    assert settings.learning_lease_s == 20
    assert settings.resolved_database_url == "sqlite:////var/lib/neurons/n.db"
    assert loaded.sources["snapshot_max_versions"] == "persistence.max_versions"
    assert loaded.ignored == {}


def test_the_seed_example_loads_and_reports_what_it_ignores(tmp_path: Path) -> None:
    loaded = load_config(_write(tmp_path, SEED))
    settings = loaded.settings()
    assert settings.snapshot_interval_s == 300 and settings.snapshot_max_versions == 100
    assert settings.resolved_database_url == f"sqlite:///{tmp_path}/storage/persistence.db"
    assert set(loaded.ignored) == {"persistence.collector_config", "components"}
    assert settings.learning_defaults == {
        "node_learning_rate": 0.001,
        "knowledge_threshold": 0.8,
        "model_type": "transformer",
        "hidden_size": 256,
        "num_layers": 4,
        "num_heads": 8,
        "dropout": 0.1,
        "auto_scale": True,
        "min_nodes": 3,
        "max_nodes": 10,
        "learning_rate": 0.001,
        "batch_size": 32,
        "evaluation_interval": 100,
    }
    assert loaded.sources["learning_defaults"].startswith(
        "distributed_learning.node_config.learning_rate, "
    )
    report = loaded.report({})
    assert report[0] == f"config: {tmp_path / 'neurons.yaml'} (5 settings)"
    assert any(line.startswith("config: ignored components") for line in report)


def test_every_learning_key_of_either_spelling_becomes_a_learning_default(
    tmp_path: Path,
) -> None:
    text = """
distributed_learning:
  lease_s: 15
  node:
    learning_rate: 0.01
    teach_interval: 7
    max_students: 2
    distillation_temperature: 4.0
    collaboration_weight: 0.6
  system:
    min_nodes: 3
    max_nodes: 6
model:
  default: mock:latest
  type: mlp
  hidden_size: 64
  num_layers: 3
learning_system:
  evaluation_interval: 50
  batch_size: 16
"""
    settings = load_config(_write(tmp_path, text)).settings()
    assert settings.learning_lease_s == 15 and settings.default_model == "mock:latest"
    assert settings.learning_defaults == {
        "node_learning_rate": 0.01,
        "local_steps": 7,
        "max_students": 2,
        "distillation_temperature": 4.0,
        "collaboration_weight": 0.6,
        "min_nodes": 3,
        "max_nodes": 6,
        "model_type": "mlp",
        "hidden_size": 64,
        "num_layers": 3,
        "evaluation_interval": 50,
        "batch_size": 16,
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("persistence:\n  max_versions: 0\n", "persistence.max_versions: must be ≥ 1 (got 0)"),
        ("system:\n  port: 70000\n", "system.port: must be ≤ 65535 (got 70000)"),
        ("system:\n  port: eighty\n", "system.port: must be a whole number (got 'eighty')"),
        ("persistence:\n  auto_save_interval: -1\n", "persistence.auto_save_interval: must be ≥ 0"),
        ("system:\n  log_level: loud\n", "system.log_level: must be debug, info, warning"),
        ("model:\n  keep_alive: soon\n", "model.keep_alive: "),
        (
            "persistence:\n  max_version: 3\n",
            "persistence.max_version: unknown key; did you mean 'max_versions'?",
        ),
        ("persistance:\n  max_versions: 3\n", "persistance: unknown section; did you mean"),
        ("model:\n  default:\n", "model.default: has no value"),
        (
            "persistence:\n  db_path: a.db\ndatabase:\n  url: sqlite:///b.db\n",
            "persistence.db_path and database.url both set database_url; keep one",
        ),
        ("database:\n  type: mysql\n", "database.type: must be sqlite or postgresql"),
        ("database:\n  type: postgresql\n", "database.type: postgresql needs database.url"),
        (
            "database:\n  type: sqlite\n  url: postgresql+psycopg://u:secret@db/n\n",
            "database.url: names a postgresql+psycopg database, but database.type is sqlite",
        ),
        ("system: 3\n", "system: must be a mapping of keys"),
        ("- a\n- b\n", "must be a mapping of sections"),
        ("system:\n  port: [1\n", "(line 3, column 1)"),
        (
            "learning_system:\n  min_nodes: 5\n  max_nodes: 3\n",
            "learning_system.max_nodes: invalid learning run: need 1 <= min_nodes <= max_nodes",
        ),
        (
            "model:\n  type: transformer\n  hidden_size: 30\n  num_heads: 4\n",
            "hidden_size 30 must be a multiple of num_heads",
        ),
        ("learning_system:\n  auto_scale: maybe\n", "learning_system.auto_scale: must be true"),
        ("model:\n  dropout: 1.5\n", "model.dropout: invalid learning run: dropout must be"),
        (
            "distributed_learning:\n  node_config:\n    max_student: 3\n",
            "distributed_learning.node_config.max_student: unknown learning run key; did you",
        ),
        ("distributed_learning:\n  node_config: 3\n", "node_config: must be a mapping"),
        ("model:\n  typ: mlp\n", "model.typ: unknown key; did you mean 'type'?"),
        (
            "distributed_learning:\n  node:\n    max_students: 1\n"
            "  node_config:\n    max_students: 2\n",
            "node.max_students and distributed_learning.node_config.max_students both set",
        ),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, text))
    assert str(caught.value).startswith(f"{tmp_path / 'neurons.yaml'}: ")
    assert message in str(caught.value)


def test_every_bad_key_is_named_at_once(tmp_path: Path) -> None:
    text = "system:\n  port: 0\n  colour: blue\npersistence:\n  max_versions: 0\n"
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, text))
    assert "system.colour: unknown key" in str(caught.value)
    text = "system:\n  port: 0\npersistence:\n  max_versions: 0\n"
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, text))
    assert "system.port: must be ≥ 1" in str(caught.value)
    assert "persistence.max_versions: must be ≥ 1" in str(caught.value)


def test_flags_then_environment_then_file_then_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = load_config(_write(tmp_path, FULL))
    monkeypatch.setenv("NEURONS_PORT", "9100")
    monkeypatch.setenv("NEURONS_SNAPSHOT_MAX_VERSIONS", "50")
    settings = loaded.settings(snapshot_max_versions=3)
    assert settings.port == 9100  # the environment over the file
    assert settings.snapshot_max_versions == 3  # a flag over both
    assert settings.node_port == 9002  # the file over the default
    assert settings.max_queue == 512  # the default
    report = loaded.report({"snapshot_max_versions": 3})
    assert "config: system.port is overridden by the environment" in report
    assert "config: persistence.max_versions is overridden by a command-line flag" in report


def test_an_empty_file_sets_nothing(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, "# nothing yet\n")).values == {}
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "absent.yaml")


def test_neurons_up_refuses_a_bad_file_naming_the_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "persistence:\n  max_versions: 0\n")
    result = subprocess.run(
        [sys.executable, "-m", "neurons", "up", "--config", str(path), "--home", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "persistence.max_versions: must be ≥ 1 (got 0)" in result.stderr
    assert not (tmp_path / "neurons.db").exists()  # nothing started


def test_doctests() -> None:
    result = doctest.testmod(neurons.system.config_file, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_the_example_file_at_the_repository_root_loads() -> None:
    example = Path(__file__).parents[2] / "neurons.example.yaml"
    loaded = load_config(example)
    assert loaded.ignored == {}
    settings = loaded.settings()
    assert settings.drain_deadline_s == 30 and settings.default_model == "smollm2:135m"


def test_seed_001s_model_block_configures_the_embedding_module(tmp_path: Path) -> None:
    """Seed 001's ``model: {model_path, model_type, max_length, device}``, beside seed 003's
    keys in the same section; a relative model_path is taken from the file's folder."""
    (tmp_path / "neurons.yaml").write_text(
        "model:\n  default: smollm2:135m\n  model_path: ./models/minilm\n"
        "  model_type: transformer\n  max_length: 128\n  device: cpu\n"
    )
    loaded = load_config(tmp_path / "neurons.yaml")
    assert loaded.values == {
        "default_model": "smollm2:135m",
        "model_path": tmp_path / "models" / "minilm",
        "model_type": "transformer",
        "model_max_length": 128,
        "model_device": "cpu",
    }
    from neurons.config import Settings
    from neurons.system.inference import inference_config

    config = inference_config(Settings(**loaded.values))
    assert config.model_path == str(tmp_path / "models" / "minilm")
    assert (config.model_type, config.max_length, config.device) == ("transformer", 128, "cpu")


def test_database_type_postgresql_takes_its_url(tmp_path: Path) -> None:
    url = "postgresql+psycopg://neurons:secret@db.internal:5432/neurons"
    loaded = load_config(_write(tmp_path, f"database:\n  type: postgresql\n  url: {url}\n"))
    assert loaded.values["database_url"] == url
    assert loaded.database_type == "postgresql"
