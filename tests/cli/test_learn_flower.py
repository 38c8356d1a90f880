"""``neurons learn run --deploy flower`` and ``neurons learn node`` as a user runs them: real
processes (the CLI, a SuperLink, SuperNodes), the run's rounds read back from the store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from neurons.cli.main import app
from neurons.errors import InvalidRequestError
from neurons.learning.deployment import check_address, pid_alive, stop_process_tree
from neurons.learning.runs import RunConfig
from tests.conftest import free_port
from tests.learning.test_deployment import flower_left

ROOT = Path(__file__).resolve().parents[2]
# lr 1e-3 and 5 local steps, as tests/learning/test_deployment.py's loopback run
RUN = ["--nodes", "3", "--rounds", "2", "--local-steps", "5", "--lr", "1e-3", "--json"]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("NEURONS_HOME", str(tmp_path / "home"))
    return {
        **os.environ,
        "NEURONS_HOME": str(tmp_path / "home"),
        "OMP_NUM_THREADS": "1",  # two shared cores: a second torch thread only waits
        "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }


def _cli(env: dict[str, str], *args: str, timeout: float = 600) -> dict[str, Any]:
    """``neurons learn ARGS`` in a process of its own; its JSON answer."""
    argv = [sys.executable, "-m", "neurons", "learn", *args]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def _history(run: dict[str, Any]) -> list[dict[str, float]]:
    return [
        {k: v for k, v in row.items() if k in ("round", "val_accuracy", "test_accuracy")}
        for row in run["history"]
    ]


def _same(remote: list[dict[str, float]], here: list[dict[str, float]]) -> None:
    assert [r["round"] for r in remote] == [r["round"] for r in here]
    # Same seeds, messages and client code: equal to the last bit (the tolerance only
    # guards against summation order in aggregation, should Flower change it).
    for a, b in zip(remote, here, strict=True):
        for key in ("val_accuracy", "test_accuracy"):
            assert abs(a[key] - b[key]) <= 1e-6, (key, remote, here)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"deploy": "ray"}, "deploy must be one of local, flower"),
        ({"superlink": "10.0.0.5:8000"}, "superlink needs deploy flower"),
        ({"deploy": "flower", "superlink": "10.0.0.5"}, "superlink must be HOST:PORT"),
        ({"deploy": "flower", "mode": "distill"}, "federated modes only, not distill"),
    ],
)
def test_run_config_checks_deploy_and_superlink(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        RunConfig.from_dict(fields)


def test_run_config_takes_a_superlink_address() -> None:
    config = RunConfig.from_dict({"deploy": "flower", "superlink": "[::1]:9092"})
    assert (config.deploy, config.superlink) == ("flower", "[::1]:9092")
    assert check_address("server.lan:9092") == "server.lan:9092"
    with pytest.raises(InvalidRequestError, match="HOST:PORT"):
        check_address("server.lan:70000")


def test_cli_refuses_bad_deploy_and_superlink(env: dict[str, str]) -> None:
    runner = CliRunner()
    bad = runner.invoke(app, ["learn", "run", "--deploy", "ray"])
    assert bad.exit_code == 2 and "local, flower" in bad.output
    refused = runner.invoke(app, ["learn", "run", "--superlink", "h:1", "--json"])
    assert refused.exit_code == 1
    assert "superlink needs deploy flower" in json.loads(refused.output)["error"]
    node = runner.invoke(app, ["learn", "node", "--superlink", "nohost", "--partition-id", "0"])
    assert node.exit_code == 1 and "superlink must be HOST:PORT" in node.output
    outside = runner.invoke(
        app, ["learn", "node", "--superlink", "h:1", "--partition-id", "2", "--num-partitions", "2"]
    )
    assert outside.exit_code == 1 and "partition-id 2 outside 0-1" in outside.output
    link = runner.invoke(app, ["learn", "superlink", "--port", "0"])
    assert link.exit_code == 1 and "port must be 1-65535" in link.output


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_run_deployed_on_loopback_matches_the_in_process_run(env: dict[str, str]) -> None:
    deployed = _cli(env, "run", "--deploy", "flower", *RUN)["run"]
    assert deployed["status"] == "completed", deployed
    assert deployed["config"]["deploy"] == "flower"
    here = _cli(env, "run", *RUN)["run"]
    assert here["config"]["deploy"] == "local"
    _same(_history(deployed), _history(here))
    assert deployed["result"] == here["result"]
    # `neurons learn status` reads both the same way
    status = _cli(env, "status", deployed["run_id"], "--json")["run"]
    assert _history(status) == _history(deployed)
    assert flower_left(os.getpid()) == []


@pytest.fixture
def superlink(tmp_path: Path, env: dict[str, str]) -> Iterator[str]:
    """``neurons learn superlink`` on loopback, as another machine would run it."""
    port = free_port()
    argv = [sys.executable, "-m", "neurons", "learn", "superlink", "--host", "127.0.0.1"]
    log = (tmp_path / "superlink.log").open("wb")
    proc = subprocess.Popen(
        [*argv, "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "superlink.log").read_text()
            with suppress(OSError), urllib.request.urlopen(f"http://127.0.0.1:{port}/health"):
                break
            assert time.monotonic() < deadline, "the SuperLink did not become healthy"
            time.sleep(0.3)
        line = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode(errors="replace")
        assert "flower-superlink" in line  # the command became the SuperLink
        yield f"127.0.0.1:{port}"
    finally:
        _stop(proc)
        log.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop ``proc`` and whatever it started (Flower starts its superexecs in new sessions)."""
    stop_process_tree(proc, wait_s=15)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_nodes_started_with_learn_node_train_a_run_through_their_superlink(
    superlink: str, env: dict[str, str], tmp_path: Path
) -> None:
    nodes = []
    try:
        for i in range(2):
            argv = [sys.executable, "-m", "neurons", "learn", "node", "--superlink", superlink]
            argv += ["--partition-id", str(i), "--num-partitions", "2", "--port", str(free_port())]
            log = (tmp_path / f"node-{i}.log").open("wb")
            nodes.append(
                subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            )
            log.close()
        args = ["--nodes", "2", "--rounds", "2", "--local-steps", "5", "--lr", "1e-3", "--json"]
        run = _cli(env, "run", "--deploy", "flower", "--superlink", superlink, *args)["run"]
        for i, proc in enumerate(nodes):  # each `neurons learn node` became its SuperNode
            assert proc.poll() is None, (tmp_path / f"node-{i}.log").read_text()
            line = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode(errors="replace")
            assert "flower-supernode" in line
    finally:
        for proc in nodes:
            _stop(proc)
    assert run["status"] == "completed", run
    assert run["config"]["superlink"] == superlink
    here = _cli(env, "run", *args)["run"]
    _same(_history(run), _history(here))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_cancel_stops_a_run_through_flower_and_its_processes(
    env: dict[str, str], tmp_path: Path
) -> None:
    argv = [sys.executable, "-m", "neurons", "learn", "run", "--deploy", "flower", "--json"]
    argv += ["--nodes", "2", "--rounds", "1000", "--local-steps", "2"]
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        trainer = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 300
        while True:  # until a round reached the store
            assert trainer.poll() is None, log.read_text()
            listed = CliRunner().invoke(app, ["learn", "ls", "--json"])
            runs = json.loads(listed.output)["runs"] if listed.exit_code == 0 else []
            if runs and runs[0]["current_round"] >= 1:
                break
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        seen = flower_left(trainer.pid)  # the loopback SuperLink, SuperNodes, their apps
        assert len(seen) >= 3, seen
        cancelled = CliRunner().invoke(app, ["learn", "cancel", runs[0]["run_id"], "--json"])
        assert cancelled.exit_code == 0, cancelled.output
        assert trainer.wait(timeout=120) == 130, log.read_text()
    finally:
        if trainer.poll() is None:
            _stop(trainer)
    status = json.loads(CliRunner().invoke(app, ["learn", "status", "1", "--json"]).output)
    assert status["run"]["status"] == "cancelled"
    assert 1 <= status["run"]["current_round"] < 1000
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(map(pid_alive, seen)):
        time.sleep(0.2)
    assert [pid for pid in seen if pid_alive(pid)] == []
