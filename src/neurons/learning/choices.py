"""The names a learning run is configured with, and the check every learning config's
``from_dict`` puts a mapping through; importable without torch or Flower (the CLI and the API
validate with them before any heavy import)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from neurons.errors import InvalidRequestError

__all__ = [
    "BATCH_SCHEDULES",
    "DEPLOYS",
    "FEDERATED_MODES",
    "LR_SCHEDULES",
    "MODEL_TYPES",
    "MODES",
    "NODE_MODES",
    "checked_fields",
    "shape_problems",
    "value_fits",
]

MODEL_TYPES: tuple[str, ...] = ("mlp", "transformer")
FEDERATED_MODES: tuple[str, ...] = ("fedavg", "fedprox", "fedmedian", "fedtrimmedavg")
MODES: tuple[str, ...] = ("centralized", "distill", "ensemble", *FEDERATED_MODES)
# Where a federated run's nodes train: in this process, or through a Flower SuperLink.
DEPLOYS: tuple[str, ...] = ("local", "flower")
# The modes whose nodes are seed 003's LearningNodes in a DistributedLearningSystem: the
# ones auto-scaling and the learning-rate and batch-size schedules apply to.
NODE_MODES: tuple[str, ...] = ("distill", "ensemble")
# Seed 003's "dynamic learning rates" and "adaptive batch sizes" (learning/schedules.py).
LR_SCHEDULES: tuple[str, ...] = ("constant", "plateau")
BATCH_SCHEDULES: tuple[str, ...] = ("constant", "adaptive")


def shape_problems(
    model_type: str, hidden_size: int, num_layers: int, num_heads: int, dropout: float
) -> list[str]:
    """What is wrong with seed 003's ``model`` block (empty: nothing)."""
    problems = []
    if model_type not in MODEL_TYPES:
        problems.append(f"model_type must be one of {', '.join(MODEL_TYPES)}")
    if not 0 <= hidden_size <= 4096:
        problems.append("hidden_size must be 0-4096 (0: the type's default)")
    if not 0 <= num_layers <= 48:
        problems.append("num_layers must be 0-48 (0: the type's default)")
    if not 1 <= num_heads <= 64:
        problems.append("num_heads must be 1-64")
    elif model_type == "transformer" and (hidden_size or 256) % num_heads:
        problems.append(f"hidden_size {hidden_size or 256} must be a multiple of num_heads")
    if not 0 <= dropout < 1:
        problems.append("dropout must be in [0, 1)")
    return problems


_SCALARS: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}


def checked_fields(cls: type, data: Mapping[str, Any], what: str) -> dict[str, Any]:
    """``data`` as keyword arguments for the dataclass ``cls``: unknown names and values of
    the wrong scalar type (a bool is no number; an int is a fine float) are refused with
    :class:`InvalidRequestError` naming ``what``."""
    declared = {f.name: str(f.type) for f in fields(cls)}
    unknown = sorted(set(data) - set(declared))
    if unknown:
        raise InvalidRequestError(f"unknown {what} fields: {', '.join(unknown)}")
    for name, value in data.items():
        expected = _SCALARS.get(declared[name])
        if expected is not None and not value_fits(value, expected):
            raise InvalidRequestError(f"{name} must be {expected.__name__}, got {value!r}")
    return dict(data)


def value_fits(value: Any, expected: type) -> bool:
    """Whether ``value`` is a fine ``expected`` (a scalar type): a bool is no number, an int
    is a fine float."""
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return True
    return isinstance(value, expected) and (expected is bool or not isinstance(value, bool))
