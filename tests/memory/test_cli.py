"""``neurons memory`` as a subprocess against a real control plane (its real embedding
model) and the session's real neuron: add, search, rm and synthesize, with and without
``--json``, a key's namespace from NEURONS_API_KEY, and errors as one line with exit 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from neurons.api.app import NodeSpec, create_control_plane
from neurons.api.server import ServerThread
from neurons.cli.memory import parse_meta
from neurons.config import Settings
from neurons.errors import InvalidRequestError
from neurons.neuron.process import NeuronProcess
from tests.conftest import free_port, wait_for

MASTER = "master-key-for-the-memory-cli-tests-0123456789"


@pytest.fixture(scope="module")
def plane(neuron: NeuronProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("memory-cli") / "home"
    settings = Settings(
        home=home,
        ollama_base_url="",
        import_default_models=False,
        health_interval_s=0.5,
        master_key=MASTER,
    )
    app = create_control_plane(settings, [NodeSpec("n1", neuron.url, "embedded")])
    with ServerThread(app, port=free_port()) as server:
        yield server.url


def run_cli(
    host: str, home: Path, *args: str, key: str = MASTER, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "NEURONS_HOST": host,
        "NEURONS_HOME": str(home),
        "COLUMNS": "200",
        "NEURONS_API_KEY": key,
    }
    return subprocess.run(
        [sys.executable, "-m", "neurons", "memory", *args],
        env=env,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )


def as_json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    assert data["success"] is True
    return data


def test_add_search_rm(plane: str, tmp_path: Path) -> None:
    made = as_json(
        run_cli(
            plane,
            tmp_path,
            "add",
            "The dentist appointment is on Monday at 9.",
            "--meta",
            "source=calendar",
            "--meta",
            "week=12",
            "--json",
        )
    )
    entry = made["entry"]
    assert entry["namespace"] == "default" and entry["metadata"] == {
        "source": "calendar",
        "week": 12,
    }
    plain = run_cli(plane, tmp_path, "add", "-", stdin="Buy oat milk and bread.\n")
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.startswith("remembered ") and "in default" in plain.stdout

    found = as_json(
        run_cli(plane, tmp_path, "search", "when do I see the dentist", "-k", "1", "--json")
    )
    assert [h["id"] for h in found["hits"]] == [entry["id"]]
    table = run_cli(plane, tmp_path, "search", "groceries to buy")
    assert table.returncode == 0, table.stderr
    assert "Buy oat milk and bread." in table.stdout and "SCORE" in table.stdout

    removed = run_cli(plane, tmp_path, "rm", str(entry["id"]))
    assert removed.returncode == 0 and removed.stdout.strip() == f"deleted {entry['id']}"
    again = run_cli(plane, tmp_path, "rm", str(entry["id"]))
    assert again.returncode == 1
    assert f"no memory entry {entry['id']}" in again.stderr and "Traceback" not in again.stderr


def test_synthesize(plane: str, tmp_path: Path) -> None:
    wait_for(lambda: httpx.get(plane + "/api/health").json()["status"] == "ok", timeout=60)
    ns = ["--namespace", "trip"]
    for note in ("The train to Porto leaves at 8:15.", "Pack the blue umbrella for Porto."):
        assert run_cli(plane, tmp_path, "add", note, *ns).returncode == 0
    data = as_json(
        run_cli(
            plane,
            tmp_path,
            "synthesize",
            "What about Porto?",
            "-k",
            "2",
            "--max-tokens",
            "16",
            "--model",
            "smollm2:135m",
            "--json",
            *ns,
        )
    )
    assert data["model"] == "smollm2:135m" and data["summary"]
    assert [h["citation"] for h in data["hits"]] == [1, 2]
    assert all(f"[{h['citation']}] {h['text']}" in data["prompt"] for h in data["hits"])
    text = run_cli(
        plane, tmp_path, "synthesize", "What about Porto?", "-k", "1", "--max-tokens", "8", *ns
    )
    assert text.returncode == 0, text.stderr
    assert "sources:" in text.stdout and "[1] " in text.stdout


def test_a_keys_namespace_and_refusals(plane: str, tmp_path: Path) -> None:
    made = httpx.post(
        plane + "/api/ai/keys",
        json={"name": "dora", "scope": "inference"},
        headers={"Authorization": f"Bearer {MASTER}"},
        timeout=30,
    )
    assert made.status_code == 201, made.text
    dora = made.json()["secret"]
    added = as_json(run_cli(plane, tmp_path, "add", "Dora's note.", "--json", key=dora))
    assert added["entry"]["namespace"] == "dora"
    other = run_cli(plane, tmp_path, "search", "note", "--namespace", "default", key=dora)
    assert other.returncode == 1 and "only an admin key" in other.stderr
    bad = run_cli(plane, tmp_path, "search", "x", "-k", "0")
    assert bad.returncode == 2  # typer refuses it before any request
    nobody = run_cli("http://127.0.0.1:9", tmp_path, "search", "x")
    assert nobody.returncode == 1 and "could not connect" in nobody.stderr


def test_parse_meta() -> None:
    assert parse_meta(["a=1", "b=x y", "c=", "d=[1, 2]"]) == {
        "a": 1,
        "b": "x y",
        "c": "",
        "d": [1, 2],
    }
    with pytest.raises(InvalidRequestError, match="key=value"):
        parse_meta(["novalue"])
