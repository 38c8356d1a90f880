"""``neurons learn report``: a real distillation run on digits written as PNG and as HTML, and
the report's data for the other modes from stored-event shapes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner, Result

from neurons.cli.main import app
from neurons.learning.report import Edge, build_report, render_html
from neurons.store.learning import LearningEvent

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NEURONS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path / "home"


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread: on two shared cores a second one only waits."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def learn(*args: str) -> Result:
    return CliRunner().invoke(app, ["learn", *args])


def test_report_of_a_distillation_run_as_png_and_html(tmp_path: Path, one_thread: None) -> None:
    args = ["--mode", "distill", "--nodes", "3", "--rounds", "3", "--local-steps", "10"]
    ran = learn("run", *args, "--json")
    assert ran.exit_code == 0, ran.output
    run = json.loads(ran.output)["run"]
    run_id = run["run_id"]

    png = tmp_path / "report.png"
    written = learn("report", run_id, "--out", str(png))
    assert written.exit_code == 0, written.output
    assert f"report written to {png}" in written.output
    data = png.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000

    page = tmp_path / "report.html"
    answer = json.loads(learn("report", run_id, "--out", str(page), "--json").output)
    report = answer["report"]
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!doctype html>") and "<script" not in text
    # one series per node, a point per round, as in the stored rounds' knowledge levels
    nodes = ["node-0", "node-1", "node-2"]
    assert list(report["series"]) == nodes
    assert re.findall(r'<g data-series="([^"]+)"', text) == nodes
    for node in nodes:
        assert [p[0] for p in report["series"][node]] == [1, 2, 3]
    # every lesson stored is an edge of its round, drawn and listed
    history = json.loads(learn("status", run_id, "--json").output)["run"]["history"]
    lessons = int(history[-1]["teaching_events"])  # the run's total
    assert lessons > 0, history  # seed 0: node-0 teaches both students in round 3
    assert sum(e["lessons"] for e in report["edges"]) == lessons
    for edge in report["edges"]:
        pair = f'data-pair="{edge["teacher"]}→{edge["student"]}" data-round="{edge["round"]}"'
        assert pair in text
    assert re.findall(r'<figure data-round="(\d+)"', text) == ["1", "2", "3"]
    assert text.count("marker-end=") == len(report["edges"])


def test_report_refuses_other_files_and_unknown_runs(tmp_path: Path) -> None:
    wrong = learn("report", "1", "--out", str(tmp_path / "report.svg"))
    assert wrong.exit_code == 2 and ".png or .html" in wrong.output
    missing = json.loads(learn("report", "99", "--json").output)
    assert missing["error_code"] == "learning_run_not_found"


def _event(
    number: int, kind: str, payload: dict[str, Any], node: str | None = None
) -> LearningEvent:
    return LearningEvent(number, payload.get("round"), kind, node, payload, datetime.now(UTC))


def _run(mode: str) -> dict[str, Any]:
    return {
        "run_id": "7",
        "mode": mode,
        "dataset": "digits",
        "status": "completed",
        "config": {"nodes": 2},
        "current_round": 2,
        "total_rounds": 2,
    }


def test_ensemble_edges_are_the_peers_each_node_learned_from() -> None:
    collab = {"event": "collaboration", "knowledge_before": 0.5, "knowledge_level": 0.6}
    events = [
        _event(1, "learned", {"node_id": "node-0", "event": "local"}, "node-0"),
        _event(2, "round", {"round": 1, "members": {"node-1": 0.4, "node-0": 0.5}}),
        _event(3, "learned", {**collab, "node_id": "node-0", "peers": ["node-1"]}, "node-0"),
        _event(4, "learned", {**collab, "node_id": "node-1", "peers": ["node-0"]}, "node-1"),
        _event(5, "round", {"round": 2, "members": {"node-0": 0.6, "node-1": 0.6}}),
    ]
    events[-1].payload["ensemble_accuracy"] = 0.7
    report = build_report(_run("ensemble"), events)
    assert report.series == {
        "node-0": [(1, 0.5), (2, 0.6)],
        "node-1": [(1, 0.4), (2, 0.6)],
        "ensemble": [(2, 0.7)],
    }
    assert report.edges == [
        Edge(2, "node-0", "node-1", 1, 0.1),
        Edge(2, "node-1", "node-0", 1, 0.1),
    ]


def test_federated_report_has_the_global_model_and_no_teacher() -> None:
    events = [
        _event(1, "update", {"node_id": "node-0", "num_examples": 9}, "node-0"),
        _event(2, "round", {"round": 1, "test_accuracy": 0.3, "val_accuracy": 0.25}),
        _event(3, "round", {"round": 2, "test_accuracy": 0.5, "val_accuracy": 0.45}),
    ]
    report = build_report(_run("fedavg"), events)
    assert report.series == {
        "global model · test": [(1, 0.3), (2, 0.5)],
        "global model · validation": [(1, 0.25), (2, 0.45)],
    }
    assert report.edges == []
    assert "Nobody taught anybody" in render_html(report)
