"""``neurons models`` with a temp state dir: library commands in-process, node operations
against the session's real neuron registered in the store (as ``neurons up`` would)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from neurons.cli.main import app
from neurons.neuron.process import NeuronProcess
from neurons.store import open_store

HOST = {
    "cpu": {"physical_cores": 8, "logical_cpus": 16, "flags": ["avx2"]},
    "memory": {
        "total_bytes": 16_000_000_000,
        "available_bytes": 12_000_000_000,
        "bandwidth_bytes_per_s": 40_000_000_000,
    },
}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NEURONS_HOME", str(tmp_path / "home"))
    stats = tmp_path / "host-stats.json"
    stats.write_text(json.dumps(HOST))
    monkeypatch.setenv("NEURONS_HOST_STATS", str(stats))
    return tmp_path / "home"


@pytest.fixture
def with_node(home: Path, neuron: NeuronProcess) -> str:
    store = open_store(f"sqlite:///{home / 'neurons.db'}")
    store.nodes.upsert("cli-node", neuron.url, "embedded")
    store.close()
    return "cli-node"


def _json(args: list[str]) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["models", *args, "--json"])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    assert data["success"] is True
    return data


def test_library_search_recommend_compat_compare(home: Path) -> None:
    library = _json(["library", "--category", "embedding"])
    assert len(library["categories"]["embedding"]) >= 6
    found = _json(["search", "llama", "--size", "small"])
    assert found["count"] > 0 and all(r["size_class"] == "small" for r in found["results"])
    recs = _json(["recommend", "code_generation", "--limit", "3"])
    assert len(recs["recommendations"]) == 3
    assert recs["system_info"]["available_memory_gb"] == 12.0
    compat = _json(["compat", "llama3.1:8b"])
    assert compat["compatibility"]["hardware_compatibility"]["memory"] == "compatible"
    compared = _json(["compare", "llama3.1:8b", "gemma3:270m"])
    assert compared["models"] == ["llama3.1:8b", "gemma3:270m"]


def test_tables_render(home: Path) -> None:
    runner = CliRunner()
    for args in (
        ["search", "coder", "--page-size", "3"],
        ["recommend", "chat", "--limit", "2"],
        ["compat", "gemma3:270m"],
        ["compare", "qwen2.5:0.5b", "gemma3:1b"],
    ):
        result = runner.invoke(app, ["models", *args])
        assert result.exit_code == 0, (args, result.output)
        assert result.stdout.strip()


def test_errors_exit_non_zero(home: Path) -> None:
    runner = CliRunner()
    bad_task = runner.invoke(app, ["models", "recommend", "poetry"])
    assert bad_task.exit_code != 0
    assert "unknown task_type 'poetry'" in str(bad_task.exception or bad_task.output)
    unknown = runner.invoke(app, ["models", "compat", "nope:1b"])
    assert unknown.exit_code != 0
    no_nodes = runner.invoke(app, ["models", "rm", "smollm2:135m"])
    assert no_nodes.exit_code != 0


def test_operations_on_a_registered_node(with_node: str) -> None:
    listed = _json(["list"])
    names = {m["name"] for m in listed["models"]}
    assert {"smollm2:135m", "gemma3:270m"} <= names
    copied = _json(["cp", "smollm2:135m", "cli:copy"])
    assert copied["nodes"] == [with_node]
    assert "cli:copy" in {m["name"] for m in _json(["list"])["models"]}
    removed = _json(["rm", "cli:copy", "--node", with_node])
    assert removed["deleted_from"] == [with_node]
    table = CliRunner().invoke(app, ["models", "list"])
    assert table.exit_code == 0 and "smollm2:135m" in table.stdout


def test_create_from_a_modelfile(with_node: str, tmp_path: Path) -> None:
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text("FROM smollm2:135m\nSYSTEM You are terse.\n")
    made = _json(["create", "cli:made", "--file", str(modelfile)])
    assert made["results"] == {with_node: "success"}
    _json(["rm", "cli:made"])


def test_evaluate_records_a_measurement(with_node: str) -> None:
    result = _json(["evaluate", "smollm2:135m", "--limit", "2"])
    assert result["items"] == 2 and result["node"] == with_node
    details = _json(["search", "smollm2:135m"])["results"][0]
    assert details["performance_source"] == f"measured on {with_node}"


def test_pull_with_progress(with_node: str, neuron: NeuronProcess) -> None:
    from neurons.neuron.modelstore import ModelStore
    from tests.e2e.test_pull import Registry

    registry = Registry(ModelStore(neuron.home / "models"))
    registry.thread.start()
    try:
        name = f"{registry.host}/library/smollm2:135m"
        result = CliRunner().invoke(app, ["models", "pull", name, "--insecure"])
        assert result.exit_code == 0, result.output
        assert f"pulled {name} onto {with_node}" in result.stdout
        assert name in {m["name"] for m in _json(["list"])["models"]}
        _json(["rm", name])
    finally:
        registry.server.shutdown()
        registry.server.server_close()
