"""The names a learning run is configured with, importable without torch or Flower (the CLI
and the API validate with them before any heavy import)."""

from __future__ import annotations

__all__ = ["FEDERATED_MODES", "MODEL_TYPES", "MODES"]

MODEL_TYPES: tuple[str, ...] = ("mlp", "transformer")
FEDERATED_MODES: tuple[str, ...] = ("fedavg", "fedprox", "fedmedian", "fedtrimmedavg")
MODES: tuple[str, ...] = ("centralized", "distill", "ensemble", *FEDERATED_MODES)
