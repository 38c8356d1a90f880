"""The CLI as a user runs it: the installed console script, in a temp state dir."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from neurons import __version__
from neurons.cli.main import app


def test_version_and_help() -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["version"]).stdout.strip() == __version__
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("up", "serve-node", "version"):
        assert command in result.stdout


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "neurons"
    out = subprocess.run([str(script), "version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == __version__


def test_serve_node_refuses_bad_settings(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "neurons",
            "serve-node",
            "--home",
            str(tmp_path),
            "--max-queue",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "max_queue" in result.stderr
    assert not (tmp_path / "models").exists()
