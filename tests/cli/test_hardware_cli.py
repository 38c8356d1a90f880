"""``neurons hardware`` and ``neurons hardware estimate`` with a temp state dir."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from neurons.cli.main import app


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("NEURONS_HOME", str(tmp_path / "home"))
    return CliRunner()


def test_hardware_json(runner: CliRunner) -> None:
    result = runner.invoke(app, ["hardware", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["host"]["memory"]["total_bytes"] > 0
    assert data["host"]["cpu"]["physical_cores"] >= 1
    assert data["gpus"] == []


def test_hardware_table_reads_stats_files(runner: CliRunner, tmp_path: Path) -> None:
    host = tmp_path / "host-stats.json"
    host.write_text(json.dumps({"memory": {"total_bytes": 8 << 30}, "hostname": "filebox"}))
    gpus = tmp_path / "gpu-stats.json"
    gpus.write_text(json.dumps([{"name": "Fake GPU", "memory_total_bytes": 8 << 30}]))
    result = runner.invoke(app, ["hardware", "--host-stats", str(host), "--gpu-stats", str(gpus)])
    assert result.exit_code == 0, result.output
    assert "filebox" in result.stdout and "Fake GPU" in result.stdout


def test_estimate_json_for_a_model_name(runner: CliRunner) -> None:
    result = runner.invoke(
        app, ["hardware", "estimate", "smollm2:135m", "--num-ctx", "2048", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in ("total_bytes", "weights_bytes", "kv_cache_bytes", "compute_bytes"):
        assert isinstance(data[key], int) and data[key] > 0
    assert data["kv_cache_bytes"] == 45 * 2**20  # 30 layers × 3 heads × 128 × 2 bytes × 2048
    assert data["num_ctx"] == 2048 and data["gpu_layers"] == 0 and data["fits"] is True
    assert data["profile"]["architecture"] == "llama" and data["profile"]["block_count"] == 30


def test_estimate_a_gguf_path_with_gpu_layers(runner: CliRunner, smollm2_path: Path) -> None:
    result = runner.invoke(
        app,
        ["hardware", "estimate", str(smollm2_path), "--num-ctx", "4096", "--num-gpu", "10"],
    )
    assert result.exit_code == 0, result.output
    assert "GPU (10/31 layers)" in result.stdout
    assert "partial offload" in result.stdout


def test_estimate_unknown_model_fails_cleanly(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "neurons", "hardware", "estimate", "nosuch:model", "--json"],
        capture_output=True,
        text=True,
        env={"NEURONS_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert done.returncode == 1
    assert "model 'nosuch:model' not found" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture
def smollm2_path() -> Path:
    from neurons.hardware.locate import locate_gguf

    return locate_gguf("smollm2:135m", Path("/nonexistent"), Path("/nonexistent"))
