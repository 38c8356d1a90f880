"""Ollama's runtime ``options``: names, types, defaults, and how they split into load-time
(runner) settings and per-request sampling settings.

Values come from the model's params layer (Modelfile PARAMETERs) overlaid by the request's
``options``. Unknown names are ignored with a log line, as Ollama does; a known name with a
value of the wrong type is refused.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from neurons.errors import InvalidOptionError
from neurons.modelfile.schema import PARAMETERS

__all__ = [
    "DEFAULTS",
    "OPTION_TYPES",
    "LoadOptions",
    "SamplingOptions",
    "resolve_options",
]

log = logging.getLogger(__name__)

_PYTHON_TYPES: dict[str, type] = {"int": int, "float": float, "bool": bool, "string_list": list}

# One source of truth: the Modelfile PARAMETER schema (neurons.modelfile.schema).
OPTION_TYPES: dict[str, type] = {
    name: _PYTHON_TYPES[spec.type] for name, spec in PARAMETERS.items()
}

# Current Ollama defaults (see shared/reference/ollama-api.md §2.3). Options Ollama leaves
# unset (main_gpu, use_mmap) have no entry; nor has draft_num_predict, which only means
# something with a draft model, and the neuron loads none.
DEFAULTS: dict[str, Any] = {
    name: list(spec.default) if isinstance(spec.default, tuple) else spec.default
    for name, spec in PARAMETERS.items()
    if spec.default is not None and name != "draft_num_predict"
}


@dataclass(frozen=True)
class LoadOptions:
    """Settings fixed when llama.cpp loads a model; a change means a reload."""

    num_ctx: int
    num_batch: int
    num_thread: int
    use_mmap: bool


@dataclass
class SamplingOptions:
    seed: int
    num_predict: int
    num_keep: int
    top_k: int
    top_p: float
    min_p: float
    typical_p: float
    repeat_last_n: int
    temperature: float
    repeat_penalty: float
    presence_penalty: float
    frequency_penalty: float
    stop: list[str] = field(default_factory=list)


def _coerce(name: str, value: Any) -> Any:
    kind = OPTION_TYPES[name]
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return int(value)
    elif kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif kind is list:
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise InvalidOptionError(f'option "{name}" must be of type array of strings')
    type_name = {bool: "bool", int: "int", float: "float32"}[kind]
    raise InvalidOptionError(f'option "{name}" must be of type {type_name}')


def merge_options(*layers: dict[str, Any] | None) -> dict[str, Any]:
    """Overlay option dicts left to right; unknown names are dropped with a warning."""
    merged: dict[str, Any] = dict(DEFAULTS)
    for layer in layers:
        for name, value in (layer or {}).items():
            if name not in OPTION_TYPES:
                log.warning("invalid option provided: %s", name)
                continue
            if value is None:
                continue
            merged[name] = _coerce(name, value)
    return merged


def default_threads() -> int:
    """Physical cores when known: llama.cpp decodes slower with hyper-threads oversubscribed."""
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
    except ImportError:  # pragma: no cover - psutil is a dependency
        physical = None
    return max(1, physical or os.cpu_count() or 1)


def resolve_options(
    model_params: dict[str, Any] | None,
    request_options: dict[str, Any] | None,
    train_ctx: int,
) -> tuple[LoadOptions, SamplingOptions]:
    merged = merge_options(model_params, request_options)
    num_ctx = max(4, min(int(merged["num_ctx"]), train_ctx)) if train_ctx > 0 else merged["num_ctx"]
    load = LoadOptions(
        num_ctx=num_ctx,
        num_batch=max(1, min(int(merged["num_batch"]), num_ctx)),
        num_thread=int(merged["num_thread"]) or default_threads(),
        use_mmap=bool(merged.get("use_mmap", True)),
    )
    if merged["top_k"] < 0 or not 0.0 <= merged["top_p"] <= 1.0:
        raise InvalidOptionError("top_k must be >= 0 and top_p between 0 and 1")
    sampling = SamplingOptions(
        seed=int(merged["seed"]),
        num_predict=int(merged["num_predict"]),
        num_keep=int(merged["num_keep"]),
        top_k=int(merged["top_k"]),
        top_p=float(merged["top_p"]),
        min_p=float(merged["min_p"]),
        typical_p=float(merged["typical_p"]),
        repeat_last_n=int(merged["repeat_last_n"]),
        temperature=float(merged["temperature"]),
        repeat_penalty=float(merged["repeat_penalty"]),
        presence_penalty=float(merged["presence_penalty"]),
        frequency_penalty=float(merged["frequency_penalty"]),
        stop=[s for s in merged["stop"] if s],
    )
    return load, sampling
