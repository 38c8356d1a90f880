"""Distributed learning: seed 003's ``DistributedLearningSystem``, ``LearningNode`` and
``NodeConfig`` (imported on first use, so the CLI's light modules load without torch), and
the runs, jobs and reports built on them."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from neurons.learning.node import LearningNode, NodeConfig
    from neurons.learning.system import DistributedLearningSystem

__all__ = ["DistributedLearningSystem", "LearningNode", "NodeConfig"]

_HOMES = {
    "DistributedLearningSystem": "neurons.learning.system",
    "LearningNode": "neurons.learning.node",
    "NodeConfig": "neurons.learning.node",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'neurons.learning' has no attribute {name!r}")
