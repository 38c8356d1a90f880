"""What a GGUF file says about a model's shape: the inputs of the memory estimator.

The header is read by :mod:`neurons.ollama.ggufmeta` (a few milliseconds; ``gguf.GGUFReader``
decodes every tokenizer string and takes seconds on Gemma's 262k vocabulary). Tensor sizes use
the official ``gguf`` package's quantisation table, and a test checks the whole result against
``gguf.GGUFReader`` on the offline models.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from neurons.ollama.ggufmeta import GGUFInfo, human_parameter_count, read_gguf_info

__all__ = ["ModelProfile", "profile_from_info", "read_model_profile"]

# Architectures whose attention alternates sliding-window and global layers, and the period
# of that pattern as llama.cpp's llama-model.cpp sets it (``hparams.set_swa_pattern``): in a
# period of n layers the last one is global. GGUF files rarely carry the pattern themselves.
_SWA_PATTERNS = {"gemma2": 2, "gemma3": 6, "gemma3n": 5, "cohere2": 4, "gpt-oss": 2}

_BLOCK = re.compile(r"^blk\.(\d+)\.")


@dataclass(frozen=True)
class ModelProfile:
    """A model's architecture facts, from its GGUF header."""

    path: str
    file_size: int
    architecture: str
    parameter_count: int
    quantization: str
    block_count: int
    head_count: int
    head_count_kv: int
    embedding_length: int
    feed_forward_length: int
    key_length: int
    value_length: int
    context_length: int
    vocab_size: int
    sliding_window: int
    swa_layers: tuple[int, ...]
    chat_template: str | None
    tensor_bytes: int
    layer_bytes: tuple[int, ...]
    output_bytes: int

    @property
    def parameter_size(self) -> str:
        return human_parameter_count(self.parameter_count)

    def is_swa_layer(self, layer: int) -> bool:
        return layer in self.swa_layers

    def to_dict(self, *, include_template: bool = False) -> dict[str, Any]:
        data = asdict(self)
        data["parameter_size"] = self.parameter_size
        data["swa_layers"] = list(self.swa_layers)
        data["layer_bytes"] = list(self.layer_bytes)
        if not include_template:
            data["chat_template"] = self.chat_template is not None
        return data


def _scalar_max(value: Any, default: int) -> int:
    """Head counts may be per-layer arrays (e.g. OpenELM); the estimator needs the maximum."""
    if isinstance(value, list):
        numbers = [int(v) for v in value if isinstance(v, int | float)]
        return max(numbers) if numbers else default
    if isinstance(value, int | float):
        return int(value)
    return default


def _swa_layers(info: GGUFInfo, blocks: int, window: int) -> tuple[int, ...]:
    if window <= 0:
        return ()
    pattern = info.arch_value("attention.sliding_window_pattern")
    if isinstance(pattern, list) and len(pattern) == blocks:
        return tuple(i for i, is_swa in enumerate(pattern) if is_swa)
    period = int(pattern) if isinstance(pattern, int) else _SWA_PATTERNS.get(info.architecture)
    if not period:
        # A window without a known pattern: llama.cpp applies it to every layer.
        return tuple(range(blocks))
    return tuple(i for i in range(blocks) if (i + 1) % period != 0)


def profile_from_info(info: GGUFInfo) -> ModelProfile:
    blocks = info.block_count
    embedding = info.embedding_length
    heads = _scalar_max(info.arch_value("attention.head_count"), 1) or 1
    heads_kv = _scalar_max(info.arch_value("attention.head_count_kv"), heads) or heads
    head_dim = embedding // heads if heads else 0
    key_length = int(info.arch_value("attention.key_length", head_dim) or head_dim)
    value_length = int(info.arch_value("attention.value_length", head_dim) or head_dim)
    vocab = int(
        info.arch_value("vocab_size", 0) or info.array_lengths.get("tokenizer.ggml.tokens", 0)
    )
    if not vocab and isinstance(info.metadata.get("tokenizer.ggml.tokens"), list):
        vocab = len(info.metadata["tokenizer.ggml.tokens"])
    window = int(info.arch_value("attention.sliding_window", 0) or 0)
    layer_bytes = [0] * blocks
    output = 0
    for tensor in info.tensors:
        match = _BLOCK.match(tensor.name)
        if match and int(match.group(1)) < blocks:
            layer_bytes[int(match.group(1))] += tensor.nbytes
        else:
            output += tensor.nbytes
    return ModelProfile(
        path=str(info.path),
        file_size=info.file_size,
        architecture=info.architecture,
        parameter_count=info.parameter_count,
        quantization=info.file_type,
        block_count=blocks,
        head_count=heads,
        head_count_kv=heads_kv,
        embedding_length=embedding,
        feed_forward_length=_scalar_max(info.arch_value("feed_forward_length"), 4 * embedding),
        key_length=key_length,
        value_length=value_length,
        context_length=info.context_length,
        vocab_size=vocab,
        sliding_window=window,
        swa_layers=_swa_layers(info, blocks, window),
        chat_template=info.chat_template,
        tensor_bytes=sum(t.nbytes for t in info.tensors),
        layer_bytes=tuple(layer_bytes),
        output_bytes=output,
    )


def read_model_profile(path: Path) -> ModelProfile:
    """Read a GGUF header; raises InvalidModelFileError for anything that is not GGUF."""
    return profile_from_info(read_gguf_info(path))
