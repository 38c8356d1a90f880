"""GGUF profiles of the offline models, checked against the official gguf package's reader."""

from __future__ import annotations

from pathlib import Path

import pytest
from gguf import GGUFReader

from neurons.errors import InvalidModelFileError
from neurons.hardware.gguf import read_model_profile


def test_smollm2_profile_matches_gguf_reader(smollm2_gguf: Path) -> None:
    profile = read_model_profile(smollm2_gguf)
    reader = GGUFReader(smollm2_gguf)
    assert profile.tensor_bytes == sum(int(t.n_bytes) for t in reader.tensors)
    assert profile.parameter_count == sum(int(t.n_elements) for t in reader.tensors)
    assert profile.architecture == "llama"
    assert profile.quantization == "Q4_1"
    assert (profile.block_count, profile.head_count, profile.head_count_kv) == (30, 9, 3)
    assert (profile.embedding_length, profile.key_length, profile.value_length) == (576, 64, 64)
    assert profile.context_length == 8192
    assert profile.vocab_size == 49152
    assert profile.sliding_window == 0 and profile.swa_layers == ()
    assert profile.chat_template and "im_start" in profile.chat_template
    assert profile.file_size == smollm2_gguf.stat().st_size
    assert profile.parameter_size == "134.52M"
    # Per-layer bytes plus the non-layer tensors account for every tensor exactly.
    assert sum(profile.layer_bytes) + profile.output_bytes == profile.tensor_bytes
    data = profile.to_dict()
    assert data["chat_template"] is True and data["parameter_size"] == "134.52M"


def test_gemma3_profile_has_sliding_window_layers(gemma3_gguf: Path) -> None:
    profile = read_model_profile(gemma3_gguf)
    reader = GGUFReader(gemma3_gguf)
    assert profile.tensor_bytes == sum(int(t.n_bytes) for t in reader.tensors)
    assert profile.architecture == "gemma3"
    assert profile.quantization == "Q4_K_M"
    assert (profile.block_count, profile.head_count, profile.head_count_kv) == (18, 4, 1)
    assert (profile.key_length, profile.value_length) == (256, 256)
    assert profile.sliding_window == 512 and profile.context_length == 32768
    assert profile.vocab_size == 262144
    # Every 6th layer is global, as llama.cpp's set_swa_pattern(6) makes it.
    assert [i for i in range(18) if not profile.is_swa_layer(i)] == [5, 11, 17]
    assert profile.chat_template is None


def test_not_gguf_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"not a model at all")
    with pytest.raises(InvalidModelFileError, match="not in GGUF format"):
        read_model_profile(bogus)
