"""The names a learning run is configured with, and the check every learning config's
``from_dict`` puts a mapping through; importable without torch or Flower (the CLI and the API
validate with them before any heavy import)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from neurons.errors import InvalidRequestError

__all__ = ["DEPLOYS", "FEDERATED_MODES", "MODEL_TYPES", "MODES", "checked_fields"]

MODEL_TYPES: tuple[str, ...] = ("mlp", "transformer")
FEDERATED_MODES: tuple[str, ...] = ("fedavg", "fedprox", "fedmedian", "fedtrimmedavg")
MODES: tuple[str, ...] = ("centralized", "distill", "ensemble", *FEDERATED_MODES)
# Where a federated run's nodes train: in this process, or through a Flower SuperLink.
DEPLOYS: tuple[str, ...] = ("local", "flower")


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
        if expected is None:
            continue
        fits = isinstance(value, expected) and (expected is bool or not isinstance(value, bool))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            fits = True
        if not fits:
            raise InvalidRequestError(f"{name} must be {expected.__name__}, got {value!r}")
    return dict(data)
