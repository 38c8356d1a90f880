"""What the health monitor needs of an OpenAI-compatible node: its kind's name and how its
``/v1/models`` reads as an inventory. Apart from :mod:`neurons.network.openai_nodes` because
the monitor is imported by every process that touches the network (a state snapshot's CLI
among them), and the translation behind that module pulls in the web framework."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["OPENAI", "skip_reason", "tags_of"]

OPENAI = "openai"  # the node kind


def tags_of(models: Mapping[str, Any]) -> dict[str, Any]:
    """``GET /v1/models``' answer as an ``/api/tags`` answer (names only: no digest, size or
    details, which such a server does not tell).

    >>> tags_of({"data": [{"id": "smollm2"}, {"object": "model"}]})
    {'models': [{'name': 'smollm2', 'model': 'smollm2'}]}
    """
    data = models.get("data")
    ids = [str(m["id"]) for m in data if isinstance(m, dict) and m.get("id")] if data else []
    return {"models": [{"name": i, "model": i} for i in ids]}


def skip_reason(path: str) -> str:
    """Why a model operation skips an OpenAI-compatible node (its per-node result)."""
    return f"skipped: an OpenAI-compatible node has no Ollama API for {path}"
