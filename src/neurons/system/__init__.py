"""The system: seed 003's ``BackendIntegrationSystem`` and the components of a neurons
process (:mod:`neurons.system.core`), and ``neurons up`` built on them
(:mod:`neurons.system.up`).

``run_up`` is loaded on first use: it needs the control plane, whose app imports this
package's components, and ``neurons serve-node`` needs only :func:`stop_on_sigterm`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from neurons.system.core import (
    TRANSITIONS,
    BackendIntegrationSystem,
    Component,
    ComponentState,
)
from neurons.system.signals import stop_on_sigterm

if TYPE_CHECKING:
    from neurons.system.up import run_up

__all__ = [
    "TRANSITIONS",
    "BackendIntegrationSystem",
    "Component",
    "ComponentState",
    "run_up",
    "stop_on_sigterm",
]


def __getattr__(name: str) -> Any:
    if name == "run_up":
        from neurons.system.up import run_up

        return run_up
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
