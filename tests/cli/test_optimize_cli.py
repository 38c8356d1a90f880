"""``neurons optimize`` in a temp state dir, with trials run on the session's real neuron.

Sessions are kept tiny (two parameters, two prompts, three trials, token-F1 scoring so no
embedding model loads): a trial is about a second on an idle machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ollama
import pytest
from typer.testing import CliRunner, Result

from neurons.cli.optimize import optimize_app
from neurons.errors import (
    InvalidRequestError,
    SessionNotFoundError,
)
from neurons.neuron.process import NeuronProcess
from neurons.optimize.sessions import SessionConfig
from neurons.store import open_store

SMOL = "smollm2:135m"
TUNED = "smollm2:135m-tuned"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = ("--param", "temperature", "--param", "top_k", "--eval-limit", "2", "--no-similarity")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NEURONS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NEURONS_OLLAMA_BASE_URL", "")
    monkeypatch.setenv("COLUMNS", "200")  # rich tables: no cell cut short with an ellipsis
    return tmp_path / "home"


@pytest.fixture
def with_node(home: Path, neuron: NeuronProcess) -> str:
    """The session's neuron registered as ``n1``, as ``neurons up`` would register it."""
    store = open_store(f"sqlite:///{home / 'neurons.db'}")
    store.nodes.upsert("n1", neuron.url, "embedded")
    store.close()
    return "n1"


@pytest.fixture
def tuned_cleanup(neuron: NeuronProcess) -> Iterator[ollama.Client]:
    """The neuron is shared by the whole test session: leave no tuned model behind."""
    client = ollama.Client(host=neuron.url)
    try:
        yield client
    finally:
        if TUNED in {m.model for m in client.list().models}:
            client.delete(TUNED)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(optimize_app, list(args))


def ok(*args: str) -> str:
    result = invoke(*args)
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.stdout


def as_json(*args: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ok(*args, "--json"))
    assert data.pop("success") is True
    return data


def raised(*args: str) -> BaseException:
    """Library errors reach the root ``main()`` (exit 1 there); the runner sees them raised."""
    result = invoke(*args)
    assert result.exit_code != 0, (args, result.output)
    assert result.exception is not None, result.output
    return result.exception


def refused(*args: str) -> str:
    """A refusal as every job command reports it: exit 1, ``error: ...`` on stderr, and under
    ``--json`` the management envelope on stdout; the message."""
    result = invoke(*args)
    assert result.exit_code == 1 and result.stderr.startswith("error: "), result.output
    envelope = json.loads(invoke(*args, "--json").stdout)
    assert envelope["success"] is False and envelope["error_code"], envelope
    assert envelope["error"] == result.stderr.strip().removeprefix("error: ")
    return str(envelope["error"])


def sessions(home: Path) -> list[dict[str, Any]]:
    store = open_store(f"sqlite:///{home / 'neurons.db'}")
    try:
        return [r.to_dict() for r in store.optimization.list()]
    finally:
        store.close()


def assert_png(path: Path, width: int) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert int.from_bytes(data[16:20], "big") == width  # IHDR: 800 px, 1300 with a 2nd panel
    assert len(data) > 10_000  # axes, points, a line and labels: matplotlib drew something


def neurons_cli(home: Path, *args: str) -> subprocess.Popen[str]:
    """``neurons optimize ...`` as a user runs it: its own process, through ``main()``."""
    env = {**os.environ, "NEURONS_HOME": str(home), "NEURONS_OLLAMA_BASE_URL": ""}
    return subprocess.Popen(
        [sys.executable, "-m", "neurons", "optimize", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell without job control starts background jobs with SIGINT ignored, and that is
        # inherited: give the CLI the default disposition, as a terminal would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


# -- run, status, ls, plot, apply -----------------------------------------------------------


@pytest.mark.slow
def test_run_then_status_ls_plot_apply(
    home: Path, with_node: str, tuned_cleanup: ollama.Client, tmp_path: Path
) -> None:
    out = ok("run", SMOL, *TINY, "--iterations", "3", "--seed", "7")
    png = home / "optimization" / "session-1.png"
    assert "session 1: smollm2:135m, balance_quality_speed by bayesian_optimization" in out
    assert "completed, 3/3 trials" in out and "on n1" in out
    assert "top 3 of 3 completed trials" in out
    assert "0 b" in out  # the baseline is marked
    assert "temperature" in out and "tok/s" in out and "MiB" in out
    assert "best parameters: temperature=" in out and "top_k=" in out
    assert "knee of the quality/speed Pareto front" in out
    assert "neurons optimize apply 1" in out
    assert f"convergence plot: {png}" in out.replace("\n", "")
    assert_png(png, 1300)  # balance_quality_speed: convergence and the Pareto panel

    status = as_json("status", "1")
    assert (status["status"], status["current_iteration"], status["node"]) == ("completed", 3, "n1")
    assert status["best_result"]["overall_score"] > 0
    assert set(status["best_result"]["parameters"]) == {"temperature", "top_k"}
    assert [t["trial"] for t in status["trials"]] == [0, 1, 2]
    assert status["trials"][0]["baseline"] is True
    assert all(t["state"] == "complete" for t in status["trials"])
    assert status["best"]["pareto_front"]
    assert len(status["convergence"]) == 3

    text = ok("status", "1")
    assert "3 trial(s)" in text and "best parameters:" in text and "complete" in text

    listed = as_json("ls", "--status", "completed")["sessions"]
    assert [(s["session_id"], s["status"]) for s in listed] == [("1", "completed")]
    assert as_json("ls", "--status", "running")["sessions"] == []
    assert "1 session(s)" in ok("ls")

    again = tmp_path / "plots" / "again.png"
    assert ok("plot", "1", "--output", str(again)).strip() == str(again)
    assert_png(again, 1300)

    applied = as_json("apply", "1")
    assert (applied["model"], applied["from"]) == (TUNED, SMOL)
    assert applied["nodes"] == {"n1": "success"}
    assert applied["parameters"] == status["best_result"]["parameters"]
    assert applied["modelfile"].startswith(f"FROM {SMOL}\nPARAMETER temperature ")
    shown = tuned_cleanup.show(TUNED)
    assert shown.parameters is not None
    parameters = dict(line.split(None, 1) for line in shown.parameters.splitlines())
    assert int(parameters["top_k"]) == applied["parameters"]["top_k"]
    assert float(parameters["temperature"]) == pytest.approx(
        applied["parameters"]["temperature"], rel=1e-6
    )

    text = ok("apply", "1")  # again: a create over an existing model replaces it
    assert f"{TUNED} from {SMOL} (session 1):" in text
    assert "FROM smollm2:135m" in text and "n1: success" in text
    assert "cannot cancel a session that is completed" in refused("cancel", "1")  # final
    assert "cannot start a session that is completed" in refused("start", "1")


@pytest.mark.slow
def test_run_json_single_objective(home: Path, with_node: str, tmp_path: Path) -> None:
    png = tmp_path / "out" / "latency.png"
    args = ("--objective", "minimize_latency", "--strategy", "random_search", "--node", "n1")
    details = as_json(
        "run", SMOL, *TINY, *args, "--iterations", "2", "--samples", "2", "--plot", str(png)
    )
    assert (details["status"], details["objective"], details["strategy"]) == (
        "completed",
        "minimize_latency",
        "random_search",
    )
    assert details["plot"] == str(png)
    assert [t["state"] for t in details["trials"]] == ["complete", "complete"]
    assert details["trials"][0]["overall_score"] == 0.5  # the baseline scores 0.5 by definition
    store = open_store(f"sqlite:///{home / 'neurons.db'}")
    try:
        assert store.optimization.get(details["session_id"]).config["samples"] == 2
    finally:
        store.close()
    assert "pareto_front" not in details["best"]
    assert_png(png, 800)  # one panel
    assert not (home / "optimization").exists()  # --plot replaced the default


# -- Ctrl-C ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_ctrl_c_cancels_and_exits_130(home: Path, with_node: str) -> None:
    process = neurons_cli(home, "run", SMOL, *TINY, "--iterations", "50")
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait for the baseline to finish
            time.sleep(0.2)
            found = sessions(home) if (home / "neurons.db").exists() else []
            if found and found[0]["status"] == "running" and found[0]["current_iteration"] >= 1:
                break
        else:
            pytest.fail("the session never finished a trial")
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, err
    assert "interrupted: session 1 cancelled after" in err
    assert "of 50 trials" in err and "best parameters:" in err
    (session,) = sessions(home)
    assert session["status"] == "cancelled"
    assert 1 <= session["current_iteration"] < 50
    assert session["best_result"] is not None


# -- errors -----------------------------------------------------------------------------------


def test_errors_are_clear_and_create_nothing(
    home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    error = raised("run", SMOL, "--objective", "fastest")
    assert isinstance(error, InvalidRequestError)
    assert "unknown objective 'fastest'; valid: maximize_quality" in str(error)
    assert "unknown strategy 'luck'" in str(raised("run", SMOL, "--strategy", "luck"))
    assert "not in the general search space: nope" in str(raised("run", SMOL, "--param", "nope"))
    assert "iterations must be an integer of at least 1" in str(
        raised("run", SMOL, "--iterations", "0")
    )
    assert "ending in .png" in str(raised("run", SMOL, "--plot", str(tmp_path / "p.svg")))
    assert "samples must be an integer of at least 1" in str(raised("run", SMOL, "--samples", "0"))

    monkeypatch.setenv("MAX_OPTIMIZATION_ITERATIONS", "2")
    error = raised("run", SMOL, "--iterations", "3")
    assert "max_iterations 3 is above MAX_OPTIMIZATION_ITERATIONS (2)" in str(error)
    monkeypatch.setenv("OPTIMIZATION_TIMEOUT_MINUTES", "1")
    error = raised("run", SMOL, "--iterations", "2", "--timeout-minutes", "5")
    assert "above OPTIMIZATION_TIMEOUT_MINUTES (1.0)" in str(error)

    bad = tmp_path / "eval.jsonl"
    bad.write_text(
        '{"prompt": "Capital of France?", "reference": "Paris"}\n\n{"prompt": "2+2?"}\nnot json\n',
        encoding="utf-8",
    )
    message = str(raised("run", SMOL, "--eval-file", str(bad)))
    assert f"invalid evaluation set {bad}:" in message
    assert "(line 3): missing or empty reference" in message
    assert "(line 4): not valid JSON" in message
    missing = tmp_path / "missing.jsonl"
    assert f"cannot read evaluation set {missing}" in str(
        raised("run", SMOL, "--eval-file", str(missing))
    )

    assert sessions(home) == []  # nothing was stored for any of these
    assert isinstance(raised("status", "9"), SessionNotFoundError)
    assert "unknown session status 'done'" in str(raised("ls", "--status", "done"))
    assert "ending in .png" in str(raised("plot", "1", "--output", str(tmp_path / "x.jpg")))


def test_error_messages_through_main(home: Path) -> None:
    """What a user sees: one line on stderr and exit 1, no traceback."""
    process = neurons_cli(home, "run", SMOL, "--objective", "fastest")
    out, err = process.communicate(timeout=120)
    assert process.returncode == 1
    assert "Error: unknown objective 'fastest'; valid: maximize_quality" in err
    assert "Traceback" not in err


def test_no_node_holds_the_model_fails_the_session(home: Path) -> None:
    result = invoke("run", "nothere:1b", *TINY, "--iterations", "2")
    assert result.exit_code == 1
    assert "session 1 failed: no healthy node holds nothere:1b" in result.output
    (session,) = sessions(home)
    assert session["status"] == "failed" and "nothere:1b" in session["error"]
    assert (home / "optimization" / "session-1.png").exists()  # an empty chart, still drawn


def test_cancel_a_pending_session(home: Path) -> None:
    store = open_store(f"sqlite:///{home / 'neurons.db'}")
    try:
        config = SessionConfig.create(model_name=SMOL, max_iterations=3, parameters=["top_k"])
        store.optimization.create(config.to_dict())
    finally:
        store.close()
    assert as_json("ls", "--status", "pending")["sessions"][0]["session_id"] == "1"
    assert ok("cancel", "1").strip() == "session 1 cancelled after 0 trial(s)"
    assert as_json("status", "1")["status"] == "cancelled"
    assert "cannot cancel a session that is cancelled" in refused("cancel", "1")
    assert "no optimization session '9'" in refused("start", "9")
    assert "cancelled" in ok("ls")


def test_start_runs_a_stored_session_in_the_foreground(home: Path, with_node: str) -> None:
    """A cancelled session resumed with ``start``: it runs here to its end, as ``run`` does."""
    store = open_store(f"sqlite:///{home / 'neurons.db'}")
    try:
        config = SessionConfig.create(
            model_name=SMOL,
            max_iterations=2,
            parameters=["top_k"],
            eval_limit=1,
            similarity=False,
        )
        store.optimization.create(config.to_dict())
    finally:
        store.close()
    ok("cancel", "1")
    details = as_json("start", "1")
    assert (details["status"], details["current_iteration"]) == ("completed", 2)
    assert [t["state"] for t in details["trials"]] == ["complete", "complete"]
    assert details["plot"] == str(home / "optimization" / "session-1.png")
