from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from neurons.config import Settings


def test_defaults_and_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NEURONS_HOME", str(tmp_path))
    monkeypatch.setenv("OLLAMA_BASE_URL", "http://gpu-box:11434/")
    monkeypatch.setenv("OLLAMA_MAX_QUEUE", "7")
    settings = Settings()
    assert settings.home == tmp_path
    assert settings.port == 8000 and settings.node_port == 11435
    assert settings.ollama_base_url == "http://gpu-box:11434"
    assert settings.max_queue == 7
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'neurons.db'}"
    assert settings.resolved_models_dir == tmp_path / "models"
    assert settings.num_parallel == 4 and settings.prefill_stretch == 2.0


def test_neuron_serving_knobs_come_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_NUM_PARALLEL", "2")
    monkeypatch.setenv("NEURONS_PREFILL_STRETCH", "4")
    monkeypatch.setenv("NEURONS_LLAMA_EXTRA_BUFFERS", "0")
    settings = Settings()
    assert settings.num_parallel == 2 and settings.prefill_stretch == 4.0
    assert settings.llama_extra_buffers == "off"
    monkeypatch.setenv("NEURONS_NUM_PARALLEL", "6")  # ours first
    assert Settings().num_parallel == 6


def test_default_home_is_user_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEURONS_HOME", raising=False)
    assert Settings().home == Path("~/.neurons").expanduser()


def test_blank_ollama_url_disables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_BASE_URL", "")
    assert Settings().ollama_base_url is None


@pytest.mark.parametrize(
    "bad",
    [
        {"port": 0},
        {"max_queue": 0},
        {"keep_alive": "3600"},
        {"no_such_field": 1},
        {"num_parallel": 0},
        {"prefill_stretch": 0.5},
        {"llama_extra_buffers": "sometimes"},
    ],
)
def test_invalid_values_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(**bad)  # type: ignore[arg-type]


def test_round_trips_through_json(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, port=9000, keep_alive="10m", ollama_base_url="")
    assert Settings.from_json(settings.to_json()) == settings
