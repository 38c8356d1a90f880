"""Finding a model's GGUF from what a user types."""

from __future__ import annotations

from pathlib import Path

import pytest

from neurons.errors import ModelNotFoundError
from neurons.hardware.locate import locate_gguf
from neurons.neuron.defaults import import_default_models
from neurons.neuron.modelstore import ModelStore


def test_a_path_wins(tmp_path: Path) -> None:
    model = tmp_path / "any.gguf"
    model.write_bytes(b"GGUF")
    assert locate_gguf(str(model), tmp_path / "models", tmp_path / "cache") == model


def test_a_model_in_the_local_store(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    store.ensure()
    assert import_default_models(store, only=["smollm2:135m"]) == ["smollm2:135m"]
    found = locate_gguf("smollm2:135m", store.root, tmp_path / "cache")
    assert found.parent == store.root / "blobs"
    assert found.name.startswith("sha256-")


def test_a_default_model_without_a_store(tmp_path: Path) -> None:
    found = locate_gguf("smollm2:135m", tmp_path / "absent", tmp_path / "cache")
    assert found.name == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_unknown_model(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="model 'llama3' not found"):
        locate_gguf("llama3", tmp_path / "models", tmp_path / "cache")
