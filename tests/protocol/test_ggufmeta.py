from __future__ import annotations

from pathlib import Path

import pytest

from neurons.errors import InvalidModelFileError
from neurons.neuron.defaults import _smollm2_path
from neurons.ollama.ggufmeta import human_parameter_count, is_gguf, read_gguf_info


def test_reads_smollm2_header_without_decoding_vocab() -> None:
    info = read_gguf_info(_smollm2_path(Path(".")))
    assert info.architecture == "llama"
    assert info.parameter_count == 134_515_008
    assert info.file_type == "Q4_1"
    assert info.context_length == 8192 and info.block_count == 30
    assert info.embedding_length == 576
    assert info.chat_template and "<|im_start|>" in info.chat_template
    assert info.array_lengths["tokenizer.ggml.tokens"] == 49152
    shown = info.model_info()
    assert shown["tokenizer.ggml.tokens"] is None  # large arrays are nulled, as Ollama does
    assert shown["general.parameter_count"] == 134_515_008


def test_rejects_non_gguf(tmp_path: Path) -> None:
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"NOPE" + b"\0" * 32)
    assert not is_gguf(bad)
    with pytest.raises(InvalidModelFileError):
        read_gguf_info(bad)
    truncated = tmp_path / "t.gguf"
    truncated.write_bytes(b"GGUF\x03\x00\x00\x00")
    with pytest.raises(InvalidModelFileError):
        read_gguf_info(truncated)


@pytest.mark.parametrize(
    ("count", "text"), [(134_515_008, "134.52M"), (7_615_616_512, "7.6B"), (999, "999")]
)
def test_human_parameter_count(count: int, text: str) -> None:
    assert human_parameter_count(count) == text
