"""Fast GGUF header reader: key/values and tensor shapes without touching the weights.

``gguf.GGUFReader`` decodes every array (262k tokenizer strings for Gemma) and takes seconds;
``/api/show`` and ``/api/tags`` need only scalars, array lengths and the parameter count, so
this reader skips large arrays by their encoded lengths.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from neurons.errors import InvalidModelFileError

__all__ = [
    "FILE_TYPES",
    "GGUFInfo",
    "TensorInfo",
    "human_parameter_count",
    "is_gguf",
    "read_gguf_info",
]

GGUF_MAGIC = b"GGUF"
# Arrays longer than this are summarised by their length (Ollama nulls them unless verbose).
_SMALL_ARRAY = 64

# llama.cpp's LLAMA_FTYPE_* names, as Ollama prints them in quantization_level.
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4",
}  # fmt: skip

_SCALARS: dict[int, tuple[str, int]] = {
    0: ("<B", 1), 1: ("<b", 1), 2: ("<H", 2), 3: ("<h", 2), 4: ("<I", 4), 5: ("<i", 4),
    6: ("<f", 4), 7: ("<?", 1), 10: ("<Q", 8), 11: ("<q", 8), 12: ("<d", 8),
}  # fmt: skip
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's header entry: enough to size it without reading its data."""

    name: str
    shape: tuple[int, ...]
    ggml_type: int
    nbytes: int


def _tensor_nbytes(shape: tuple[int, ...], ggml_type: int) -> int:
    # Block and type sizes come from the official gguf package, so new quant types are
    # sized correctly as soon as gguf knows them.
    try:
        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    except (ValueError, KeyError):
        return 0
    elements = 1
    for dim in shape:
        elements *= dim
    return elements // block * type_size


@dataclass
class GGUFInfo:
    """What the header says about a model."""

    path: Path
    file_size: int
    metadata: dict[str, Any]
    array_lengths: dict[str, int] = field(default_factory=dict)
    parameter_count: int = 0
    tensor_count: int = 0
    tensors: list[TensorInfo] = field(default_factory=list)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "unknown"))

    def arch_value(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(f"{self.architecture}.{key}", default)

    @property
    def file_type(self) -> str:
        ftype = self.metadata.get("general.file_type")
        return FILE_TYPES.get(int(ftype), "unknown") if isinstance(ftype, int) else "unknown"

    @property
    def context_length(self) -> int:
        return int(self.arch_value("context_length", 2048) or 2048)

    @property
    def embedding_length(self) -> int:
        return int(self.arch_value("embedding_length", 0) or 0)

    @property
    def block_count(self) -> int:
        return int(self.arch_value("block_count", 0) or 0)

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) else None

    def model_info(self) -> dict[str, Any]:
        """``/api/show``'s ``model_info``: every key, large arrays as null (Ollama's habit)."""
        info: dict[str, Any] = {k: v for k, v in self.metadata.items()}
        for key in self.array_lengths:
            info.setdefault(key, None)
        info["general.parameter_count"] = self.parameter_count
        return dict(sorted(info.items()))


def human_parameter_count(count: int) -> str:
    """Ollama's ``format.HumanNumber`` style: ``134.52M``, ``7.6B``.

    >>> human_parameter_count(134_515_008)
    '134.52M'
    >>> human_parameter_count(7_615_616_512)
    '7.6B'
    """
    if count >= 1_000_000_000:
        return f"{count / 1e9:.1f}B"
    if count >= 1_000_000:
        return f"{count / 1e6:.2f}M"
    if count >= 1_000:
        return f"{count / 1e3:.2f}K"
    return str(count)


def is_gguf(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(4) == GGUF_MAGIC
    except OSError:
        return False


def read_gguf_info(path: Path) -> GGUFInfo:
    stat = path.stat()
    return _read_cached(path, stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=64)
def _read_cached(path: Path, size: int, mtime_ns: int) -> GGUFInfo:
    try:
        with path.open("rb") as handle:
            return _parse(handle, path, size)
    except (struct.error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidModelFileError("supplied file was not in GGUF format") from exc


def _parse(handle: BinaryIO, path: Path, size: int) -> GGUFInfo:
    if handle.read(4) != GGUF_MAGIC:
        raise InvalidModelFileError("supplied file was not in GGUF format")
    (version,) = struct.unpack("<I", handle.read(4))
    if version < 2:
        raise InvalidModelFileError(f"unsupported GGUF version {version}")
    n_tensors, n_kv = struct.unpack("<QQ", handle.read(16))
    info = GGUFInfo(path=path, file_size=size, metadata={}, tensor_count=n_tensors)
    for _ in range(n_kv):
        key = _read_str(handle)
        (vtype,) = struct.unpack("<I", handle.read(4))
        if vtype == _ARRAY:
            (etype,) = struct.unpack("<I", handle.read(4))
            (count,) = struct.unpack("<Q", handle.read(8))
            if count <= _SMALL_ARRAY:
                info.metadata[key] = [_read_value(handle, etype) for _ in range(count)]
            else:
                _skip_array(handle, etype, count)
                info.array_lengths[key] = count
        else:
            info.metadata[key] = _read_value(handle, vtype)
    total = 0
    for _ in range(n_tensors):
        name = _read_str(handle)
        (n_dims,) = struct.unpack("<I", handle.read(4))
        dims = struct.unpack(f"<{n_dims}Q", handle.read(8 * n_dims))
        ggml_type, _offset = struct.unpack("<IQ", handle.read(12))
        elements = 1
        for dim in dims:
            elements *= dim
        total += elements
        info.tensors.append(TensorInfo(name, dims, ggml_type, _tensor_nbytes(dims, ggml_type)))
    info.parameter_count = total
    return info


def _read_str(handle: BinaryIO) -> str:
    (length,) = struct.unpack("<Q", handle.read(8))
    if length > 1 << 26:
        raise ValueError("string too long")
    return handle.read(length).decode("utf-8")


def _read_value(handle: BinaryIO, vtype: int) -> Any:
    if vtype == _STRING:
        return _read_str(handle)
    if vtype == _ARRAY:
        (etype,) = struct.unpack("<I", handle.read(4))
        (count,) = struct.unpack("<Q", handle.read(8))
        return [_read_value(handle, etype) for _ in range(count)]
    fmt, width = _SCALARS[vtype]
    return struct.unpack(fmt, handle.read(width))[0]


def _skip_array(handle: BinaryIO, etype: int, count: int) -> None:
    if etype == _STRING:
        unpack = struct.Struct("<Q").unpack
        for _ in range(count):
            (length,) = unpack(handle.read(8))
            handle.seek(length, 1)
    elif etype in _SCALARS:
        handle.seek(_SCALARS[etype][1] * count, 1)
    else:
        for _ in range(count):
            _read_value(handle, etype)
