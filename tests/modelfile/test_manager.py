"""Seed 000's OllamaModelfileManager, starting with its usage example exactly as written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from neurons.errors import ModelfileError
from neurons.hardware.locate import locate_gguf
from neurons.modelfile.manager import OllamaModelfileManager
from neurons.modelfile.parser import parse_file
from neurons.modelfile.schema import PARAMETERS

HOST_STATS = {
    "cpu": {"model": "Test CPU", "physical_cores": 6, "logical_cpus": 12},
    "memory": {"total_bytes": 32 << 30, "available_bytes": 30 << 30},
}


@pytest.fixture
def paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    monkeypatch.setenv("NEURONS_HOME", str(tmp_path / "home"))
    data = tmp_path / "data"
    data.mkdir()
    return data / "Modelfile", data / "host-stats.json", data / "gpu-stats.json"


def test_the_seed_usage_example(
    paths: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    filepath, host_stats_path, gpu_stats_path = (str(p) for p in paths)

    # --- seed 000, "Simplified usage example of OllamaModelfileManager", unchanged ---
    manager = OllamaModelfileManager(filepath, host_stats_path, gpu_stats_path)
    try:
        manager.load_modelfile()
    except FileNotFoundError:
        print(f"{filepath} does not exist, creating a new one.")

    manager.set_parameter("temperature", 0.7)
    temperature = manager.get_parameter("temperature")
    print(f"Temperature: {temperature}")

    manager.update_instruction("FROM", "llama3")
    manager.update_instruction(
        "SYSTEM", "You are Mario from super mario bros, acting as an assistant."
    )

    try:
        manager.validate_modelfile()
    except ValueError as e:
        print(e)

    manager.optimize_parameters_for_hardware()
    manager.determine_all_parameters()
    manager.save_modelfile()
    print(f"Modelfile saved to {filepath}")
    # --- end of the seed's example ---

    out = capsys.readouterr().out
    assert "does not exist, creating a new one." in out
    assert "Temperature: 0.7" in out and "Modelfile saved to" in out
    saved = parse_file(filepath)
    assert saved.value("from") == "llama3"
    assert saved.value("system") == "You are Mario from super mario bros, acting as an assistant."
    params = saved.parameters()
    assert params["temperature"] == pytest.approx(0.7)
    assert set(params) == set(PARAMETERS) - {"stop"}
    assert params["num_thread"] >= 1 and params["num_gpu"] == 0
    text = Path(filepath).read_text()
    assert "# Parameters tuned by neurons" in text and "llama3 is not available locally" in text
    # Loading the saved file gives the same Modelfile back.
    again = OllamaModelfileManager(filepath, host_stats_path, gpu_stats_path)
    assert again.load_modelfile() == saved


def test_stats_files_drive_the_tuning(paths: tuple[Path, Path, Path]) -> None:
    filepath, host_stats, gpu_stats = paths
    host_stats.write_text(json.dumps(HOST_STATS))
    gpu_stats.write_text(json.dumps({"gpus": [{"name": "Fake", "memory_total_bytes": 24 << 30}]}))
    smollm2 = locate_gguf("smollm2:135m", Path("/nonexistent"), Path("/nonexistent"))
    filepath.write_text(f"FROM {smollm2}\nPARAMETER temperature 0.2\n")
    manager = OllamaModelfileManager(filepath, host_stats, gpu_stats)
    manager.load_modelfile()
    tuned = manager.optimize_parameters_for_hardware()
    assert tuned["num_thread"].value == 6
    assert tuned["num_ctx"].value == 8192  # SmolLM2's training context
    assert tuned["num_gpu"].value == 31 and tuned["num_batch"].value == 1024
    assert manager.get_parameter("num_ctx") == 8192
    assert manager.get_parameter("temperature") == pytest.approx(0.2)


def test_from_a_relative_gguf_and_a_default_model_name(
    paths: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    filepath, host_stats, _ = paths
    host_stats.write_text(json.dumps(HOST_STATS))
    filepath.write_text("FROM smollm2:135m\n")
    manager = OllamaModelfileManager(filepath, host_stats)
    manager.load_modelfile()
    profile = manager.model_profile()
    assert profile is not None and profile.architecture == "llama"


def test_validate_lists_every_problem(paths: tuple[Path, Path, Path]) -> None:
    filepath = paths[0]
    filepath.write_text(
        "PARAMETER temperature hot\nPARAMETER num_ctx big\nPARAMETER Temperature 1\n"
    )
    manager = OllamaModelfileManager(filepath)
    manager.load_modelfile()
    with pytest.raises(ValueError) as caught:
        manager.validate_modelfile()
    message = str(caught.value)
    assert isinstance(caught.value, ModelfileError)
    assert "(line 1): invalid float value [hot]" in message
    assert "(line 2): invalid int value [big]" in message
    assert "(line 3): unknown parameter 'Temperature'" in message
    assert "no FROM line" in message


def test_bad_edits_are_refused(paths: tuple[Path, Path, Path]) -> None:
    manager = OllamaModelfileManager(paths[0])
    with pytest.raises(ValueError, match="unknown parameter 'temprature'"):
        manager.set_parameter("temprature", 0.5)
    with pytest.raises(ValueError):
        manager.set_parameter("num_ctx", "lots")
    with pytest.raises(ValueError, match="command must be one of"):
        manager.update_instruction("FORM", "llama3")
    with pytest.raises(ValueError, match="message role"):
        manager.add_message("robot", "beep")
    manager.add_message("user", "Who are you?")
    assert manager.modelfile.messages() == [{"role": "user", "content": "Who are you?"}]


def test_load_reports_syntax_errors_with_their_line(paths: tuple[Path, Path, Path]) -> None:
    filepath = paths[0]
    filepath.write_text("FROM x\nBOGUS thing\n")
    with pytest.raises(ModelfileError, match=r"\(line 2\): command must be one of"):
        OllamaModelfileManager(filepath).load_modelfile()


def test_save_is_atomic(paths: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    filepath = paths[0]
    filepath.write_text("FROM old\n")
    manager = OllamaModelfileManager(filepath)
    manager.load_modelfile()
    manager.update_instruction("FROM", "new")

    def crash(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        manager.save_modelfile()
    monkeypatch.undo()
    assert filepath.read_text() == "FROM old\n"  # the old file is intact
    assert sorted(p.name for p in filepath.parent.iterdir()) == ["Modelfile"]  # no leftovers
    manager.save_modelfile()
    assert parse_file(filepath).value("from") == "new"
