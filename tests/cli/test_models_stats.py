"""``neurons models stats``: the per-model table drawn from ``/api/ai/metrics/models``, then
the command against a real control plane that routed real generate requests to the session's
neuron."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from neurons.cli.metrics_view import model_stats_table
from neurons.neuron.process import NeuronProcess
from tests.cli.test_top import SMOL, Plane, routed_plane, run_cli, text
from tests.conftest import free_port

DIGEST = "sha256:" + "ab12" * 16


def node_entry(node: str, **values: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "node": node,
        "digest": DIGEST,
        "inference_count": 3,
        "error_count": 0,
        "average_latency": 0.2,
        "tokens_per_s": 90.0,
        "prompt_tokens": 30,
        "completion_tokens": 24,
        "last_used_at": 1_750_000_000.0,
    }
    entry.update(values)
    return entry


def model_entry(name: str, nodes: list[dict[str, Any]], **values: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "model": name,
        "inference_count": sum(n["inference_count"] for n in nodes),
        "error_count": sum(n["error_count"] for n in nodes),
        "average_latency": 0.234,
        "tokens_per_s": 88.2,
        "prompt_tokens": sum(n["prompt_tokens"] for n in nodes),
        "completion_tokens": sum(n["completion_tokens"] for n in nodes),
        "digests": sorted({n["digest"] for n in nodes if n["digest"]}),
        "nodes": nodes,
    }
    entry.update(values)
    return entry


def row(table: str, *cells: str) -> str:
    """The one line of ``table`` whose cells include all of ``cells``."""
    found = [
        line
        for line in table.splitlines()
        if all(c in [part.strip() for part in line.split("│")] for c in cells)
    ]
    assert len(found) == 1, (cells, table)
    return found[0]


# -- the table -------------------------------------------------------------------------------


def test_one_node_is_one_row() -> None:
    shown = text(model_stats_table([model_entry(SMOL, [node_entry("n1")])]))
    assert "1 model(s) since the control plane started" in shown
    line = row(shown, SMOL, "n1")
    cells = [part.strip() for part in line.split("│")][1:-1]
    assert cells == [SMOL, "n1", "ab12ab12ab12", "3", "0", "0.0%", "200.0 ms", "90.0", "30", "24"]
    assert "(all)" not in shown


def test_several_nodes_get_a_total_row_first() -> None:
    nodes = [
        node_entry("n1"),
        node_entry("n2", digest="sha256:ffff" + "0" * 60, error_count=1, inference_count=2,
                   average_latency=0.3, tokens_per_s=None, prompt_tokens=20, completion_tokens=16),
    ]  # fmt: skip
    shown = text(model_stats_table([model_entry(SMOL, nodes)]))
    total = row(shown, SMOL, "(all)")
    assert "2 versions" in total  # the nodes hold different digests of the model
    assert "5" in total and "20.0%" in total and "234.0 ms" in total and "88.2" in total
    n2 = [part.strip() for part in row(shown, SMOL, "n2").split("│")][1:-1]
    assert n2 == [SMOL, "n2", "ffff00000000", "2", "1", "50.0%", "300.0 ms", "-", "20", "16"]
    lines = shown.splitlines()
    assert lines.index(total) < lines.index(row(shown, SMOL, "n1"))


def test_no_inferences_yet_and_no_models() -> None:
    idle = model_entry("idle:1b", [], inference_count=0, average_latency=0.0, tokens_per_s=None)
    shown = text(model_stats_table([idle]))
    cells = [part.strip() for part in row(shown, "idle:1b").split("│")][1:-1]
    assert cells == ["idle:1b", "(all)", "-", "0", "0", "-", "-", "-", "0", "0"]
    assert "0 model(s)" in text(model_stats_table([]))


# -- the command against a real control plane -------------------------------------------------


@pytest.fixture(scope="module")
def plane(neuron: NeuronProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    with routed_plane(neuron, tmp_path_factory.mktemp("stats") / "home", 4) as routed:
        yield routed


def test_stats_json_counts_every_routed_request(plane: Plane) -> None:
    result = run_cli(plane.url, plane.home, "models", "stats", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["success"] is True
    (model,) = data["models"]
    assert model["model"] == SMOL
    assert model["inference_count"] == plane.sent and model["error_count"] == 0
    (node,) = model["nodes"]
    assert node["node"] == "n1" and node["inference_count"] == plane.sent
    assert node["completion_tokens"] > 0 and node["average_latency"] > 0
    assert node["digest"] and model["digests"] == [node["digest"]]


def test_stats_table_and_model_filter(plane: Plane) -> None:
    shown = run_cli(plane.url, plane.home, "models", "stats")
    assert shown.returncode == 0, shown.stderr
    cells = [part.strip() for part in row(shown.stdout, SMOL, "n1").split("│")][1:-1]
    assert cells[3] == str(plane.sent) and cells[4] == "0" and cells[5] == "0.0%"
    only = run_cli(plane.url, plane.home, "models", "stats", "--model", SMOL, "--json")
    assert [m["model"] for m in json.loads(only.stdout)["models"]] == [SMOL]
    other = run_cli(plane.url, plane.home, "models", "stats", "--model", "nope:1b", "--json")
    assert other.returncode == 0, other.stderr
    assert json.loads(other.stdout)["models"] == []


def test_stats_against_nothing_exits_1(tmp_path: Path) -> None:
    result = run_cli(f"http://127.0.0.1:{free_port()}", tmp_path, "models", "stats")
    assert result.returncode == 1
    assert result.stderr.startswith("Error: could not connect to a neurons server at ")
