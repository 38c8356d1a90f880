"""``neurons node`` and ``neurons network`` in a temp state dir, against the real neuron."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from neurons.cli.network import network_app, node_app, parse_labels
from neurons.errors import InvalidRequestError, NodeNotFoundError
from neurons.neuron.process import NeuronProcess
from neurons.store import open_store

SMOL = "smollm2:135m"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NEURONS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def invoke(app: typer.Typer, *args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def ok(app: typer.Typer, *args: str) -> str:
    result = invoke(app, *args)
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.stdout


def as_json(app: typer.Typer, *args: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ok(app, *args, "--json"))
    assert data.pop("success") is True
    return data


def fails(app: typer.Typer, *args: str) -> str:
    """Library errors reach the root ``main()`` (exit 1 there); the runner sees them raised."""
    result = invoke(app, *args)
    assert result.exit_code != 0, (args, result.output)
    return str(result.exception or result.output)


def add_n1(neuron: NeuronProcess) -> dict[str, Any]:
    args = ("add", neuron.url, "--name", "n1", "--label", "zone=a", "--priority", "2")
    node: dict[str, Any] = as_json(node_app, *args)["node"]
    return node


def test_node_lifecycle(home: Path, neuron: NeuronProcess) -> None:
    node = add_n1(neuron)
    assert (node["name"], node["url"], node["kind"]) == ("n1", neuron.url, "embedded")
    assert (node["state"], node["labels"], node["priority"]) == ("online", {"zone": "a"}, 2)
    assert SMOL in node["models"]

    (listed,) = as_json(node_app, "ls")["nodes"]
    assert (listed["name"], listed["labels"], listed["priority"]) == ("n1", {"zone": "a"}, 2)
    assert listed["status"] == "online" and listed["last_seen_at"]

    (probed,) = as_json(node_app, "status", "n1")["nodes"]
    assert probed["state"] == "online" and SMOL in probed["models"]
    assert probed["version"] and probed["slots"] >= 1
    assert [n["name"] for n in as_json(node_app, "status")["nodes"]] == ["n1"]

    assert ok(node_app, "drain", "n1").strip() == "n1: draining"
    assert as_json(node_app, "ls")["nodes"][0]["status"] == "draining"
    (drained,) = as_json(node_app, "status", "n1")["nodes"]
    assert drained["state"] == "draining"  # a good probe does not undo a drain
    assert ok(node_app, "resume", "n1").strip() == "n1: online"
    assert as_json(node_app, "ls")["nodes"][0]["status"] == "online"

    assert ok(node_app, "rm", "n1").strip() == "removed n1"
    assert as_json(node_app, "ls")["nodes"] == []


def test_default_name_and_detected_kind(home: Path, neuron: NeuronProcess) -> None:
    node = as_json(node_app, "add", neuron.url)["node"]
    port = neuron.url.rsplit(":", 1)[1]
    assert (node["name"], node["kind"]) == (f"127.0.0.1-{port}", "embedded")


def test_node_errors(home: Path, neuron: NeuronProcess) -> None:
    add_n1(neuron)
    result = invoke(node_app, "status", "nope")
    assert isinstance(result.exception, NodeNotFoundError)
    assert "no node with id or name 'nope'" in str(result.exception)
    assert "already exists" in fails(node_app, "add", neuron.url, "--name", "n1")
    assert "key=value" in fails(node_app, "add", neuron.url, "--label", "novalue")
    assert "http://host:port" in fails(node_app, "add", "localhost:11434")
    assert "kind" in fails(node_app, "add", neuron.url, "--name", "n2", "--kind", "vllm")
    assert "'ghost'" in fails(node_app, "rm", "ghost")
    assert "'ghost'" in fails(node_app, "drain", "ghost")
    assert [n["name"] for n in as_json(node_app, "ls")["nodes"]] == ["n1"]


@pytest.mark.parametrize(
    ("pairs", "labels"),
    [
        (None, {}),
        (["zone=a", " gpu = h100 "], {"zone": "a", "gpu": "h100"}),
        (["empty="], {"empty": ""}),
        (["url=http://x?a=b"], {"url": "http://x?a=b"}),
    ],
)
def test_parse_labels(pairs: list[str] | None, labels: dict[str, str]) -> None:
    assert parse_labels(pairs) == labels


@pytest.mark.parametrize("pair", ["novalue", "=v", " =v"])
def test_parse_labels_refuses(pair: str) -> None:
    with pytest.raises(InvalidRequestError, match="key=value"):
        parse_labels([pair])


def test_place_status_sync_unplace(home: Path, neuron: NeuronProcess) -> None:
    add_n1(neuron)
    placed = json.loads(ok(network_app, "place", SMOL, "--replicas", "1"))
    assert placed == {"model": SMOL, "labels": {}, "replicas": 1}

    status = as_json(network_app, "status")
    assert (status["healthy"], status["total"]) == (1, 1)
    assert status["models"][SMOL] == ["n1"]
    assert status["placements"] == [placed]
    assert [n["state"] for n in status["nodes"]] == ["online"]

    report = as_json(network_app, "sync")["report"]
    assert report["transfers"] == [] and report["problems"] == []
    assert report["bytes_copied"] == 0
    assert {"model": SMOL, "node": "n1", "reason": "present"} in report["skipped"]
    # One model's placement, declared and applied in one go.
    one = as_json(network_app, "sync", "gemma3:270m", "--label", "zone=a")["report"]
    assert one["transfers"] == [] and one["problems"] == []

    assert "removed" in ok(network_app, "unplace", SMOL)
    models = [p["model"] for p in as_json(network_app, "status")["placements"]]
    assert models == ["gemma3:270m"]
    assert "need a MODEL" in fails(network_app, "sync", "--replicas", "2")
    assert "at least 1" in fails(network_app, "place", SMOL, "--replicas", "0")
    assert "key=value" in fails(network_app, "place", SMOL, "--label", "novalue")


def test_tables_render(home: Path, neuron: NeuronProcess) -> None:
    add_n1(neuron)
    ok(network_app, "place", SMOL, "--label", "zone=a")
    for app, args in (
        (node_app, ["ls"]),
        (node_app, ["status"]),
        (network_app, ["status"]),
        (network_app, ["sync"]),
    ):
        out = ok(app, *args)
        assert "n1" in out or "sync finished" in out, args
    added = ok(node_app, "add", neuron.url, "--name", "n2")
    assert "node added" in added and "n2" in added


def test_sync_reports_problems_with_exit_1(home: Path) -> None:
    store = open_store(f"sqlite:///{home / 'neurons.db'}")
    store.placements.set(SMOL, replicas=1)
    store.close()
    result = invoke(network_app, "sync")
    assert result.exit_code == 1
    assert "problem:" in result.output
