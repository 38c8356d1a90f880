"""``neurons modelfile validate | render | to-json`` through Typer's CliRunner."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from neurons.cli.main import app

runner = CliRunner()


@pytest.fixture
def modelfile(tmp_path: Path) -> Path:
    (tmp_path / "tiny.gguf").write_bytes(b"GGUF tiny weights")
    path = tmp_path / "Modelfile"
    path.write_text(
        "# a comment\n"
        "from ./tiny.gguf\n"
        "parameter temperature 0.7\n"
        "parameter stop <|eot|>\n"
        "parameter mirostat 1\n"
        'system """\nBe brief.\n"""\n'
        "license MIT\n"
    )
    return path


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["modelfile", "--help"])
    assert result.exit_code == 0
    for command in ("validate", "render", "to-json"):
        assert command in result.stdout
    assert "modelfile" in runner.invoke(app, ["--help"]).stdout


def test_validate_ok_with_warnings(modelfile: Path) -> None:
    result = runner.invoke(app, ["modelfile", "validate", str(modelfile)])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"{modelfile}: valid"
    assert result.stderr.strip() == "warning: (line 5): parameter mirostat is deprecated"


def test_validate_lists_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "Modelfile"
    path.write_text("PARAMETER Temperature 1\nPARAMETER top_k x\n")
    result = runner.invoke(app, ["modelfile", "validate", str(path)])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "no FROM line",
        "(line 1): unknown parameter 'Temperature'",
        "(line 2): invalid int value [x]",
    ]


def test_validate_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "Modelfile"
    path.write_text("FROM a\nMESSAGE robot hi\n")
    result = runner.invoke(app, ["modelfile", "validate", str(path)])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        '(line 2): message role must be one of "system", "user", or "assistant"'
    )


def test_validate_missing_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["modelfile", "validate", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "Invalid value" in result.stderr


def test_render(modelfile: Path) -> None:
    result = runner.invoke(app, ["modelfile", "render", str(modelfile)])
    assert result.exit_code == 0
    assert result.stdout == (
        "FROM ./tiny.gguf\n"
        "PARAMETER temperature 0.7\n"
        "PARAMETER stop <|eot|>\n"
        "PARAMETER mirostat 1\n"
        'SYSTEM """\nBe brief.\n"""\n'
        "LICENSE MIT\n"
    )


def test_render_refuses_a_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "Modelfile"
    path.write_text('FROM a\nSYSTEM "open\n')
    result = runner.invoke(app, ["modelfile", "render", str(path)])
    assert result.exit_code == 1
    assert result.stderr.strip() == "(line 2): unexpected EOF"


def test_to_json(modelfile: Path) -> None:
    result = runner.invoke(app, ["modelfile", "to-json", str(modelfile), "--model", "me/tiny"])
    assert result.exit_code == 0
    digest = "sha256:" + hashlib.sha256(b"GGUF tiny weights").hexdigest()
    assert json.loads(result.stdout) == {
        "model": "me/tiny",
        "files": {"tiny.gguf": digest},
        "license": ["MIT"],
        "system": "\nBe brief.\n",
        "parameters": {"temperature": 0.7, "stop": ["<|eot|>"]},
    }
    assert f"blob to upload: {digest} {modelfile.parent / 'tiny.gguf'}" in result.stderr


def test_to_json_default_model_name(modelfile: Path) -> None:
    result = runner.invoke(app, ["modelfile", "to-json", str(modelfile)])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["model"] == modelfile.parent.name


def test_to_json_invalid(tmp_path: Path) -> None:
    path = tmp_path / "Modelfile"
    path.write_text("FROM m\nADAPTER missing.gguf\n")
    result = runner.invoke(app, ["modelfile", "to-json", str(path)])
    assert result.exit_code == 1
    assert result.stderr.strip() == "(line 2): ADAPTER missing.gguf: no such file"


HOST_STATS = {
    "cpu": {"physical_cores": 4, "logical_cpus": 8},
    "memory": {"total_bytes": 16 << 30, "available_bytes": 12 << 30},
}


def test_tune_prints_the_tuned_modelfile_and_reasons(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEURONS_HOME", str(tmp_path / "home"))
    path = tmp_path / "Modelfile"
    path.write_text("FROM smollm2:135m\nPARAMETER temperature 0.3\n")
    stats = tmp_path / "host-stats.json"
    stats.write_text(json.dumps(HOST_STATS))
    result = runner.invoke(app, ["modelfile", "tune", str(path), "--host-stats", str(stats)])
    assert result.exit_code == 0, result.output
    assert "PARAMETER num_ctx 8192" in result.stdout
    assert "PARAMETER num_thread 4" in result.stdout
    assert "PARAMETER temperature 0.3" in result.stdout
    assert "num_ctx = 8192: needs" in result.stderr
    assert path.read_text() == "FROM smollm2:135m\nPARAMETER temperature 0.3\n"  # untouched


def test_tune_write_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEURONS_HOME", str(tmp_path / "home"))
    path = tmp_path / "Modelfile"
    path.write_text("FROM llama3\n")
    stats = tmp_path / "host-stats.json"
    stats.write_text(json.dumps(HOST_STATS))
    result = runner.invoke(
        app, ["modelfile", "tune", str(path), "--write", "--all", "--host-stats", str(stats)]
    )
    assert result.exit_code == 0, result.output
    text = path.read_text()
    assert "PARAMETER num_ctx 4096" in text and "PARAMETER top_k 40" in text
    assert "llama3 is not available locally" in text
    check = runner.invoke(app, ["modelfile", "validate", str(path)])
    assert check.exit_code == 0, check.output


def test_tune_refuses_an_invalid_modelfile(tmp_path: Path) -> None:
    path = tmp_path / "Modelfile"
    path.write_text("FROM x\nPARAMETER foo 1\n")
    result = runner.invoke(app, ["modelfile", "tune", str(path)])
    assert result.exit_code == 1
    assert "(line 2): unknown parameter 'foo'" in result.stderr
