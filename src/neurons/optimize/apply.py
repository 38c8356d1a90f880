"""Applying a session's best parameters: a Modelfile, and a new model created on the nodes.

``smollm2:135m`` tuned becomes ``smollm2:135m-tuned`` (the tag gets ``-tuned``, so the tuned
model sorts beside its base in ``ollama list``). It is created with ``/api/create`` from the
base model plus the parameters, which any Ollama server and the embedded neuron accept, on
every healthy node holding the base model (or the nodes named).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from neurons.client import NodeClient
from neurons.errors import NeuronsError
from neurons.modelfile.schema import format_parameter_value
from neurons.network.health import HealthMonitor
from neurons.network.routing import NodeView
from neurons.ollama.names import ModelName

__all__ = ["apply_parameters", "tuned_modelfile", "tuned_name"]


def tuned_name(model: str) -> str:
    """``name:tag`` → ``name:tag-tuned`` (``latest`` when there is no tag)."""
    parsed = ModelName.parse(model)
    base = parsed.display.rsplit(":", 1)[0]
    return f"{base}:{parsed.tag}-tuned"


def tuned_modelfile(model: str, parameters: Mapping[str, Any]) -> str:
    """A Modelfile: ``FROM model`` and one ``PARAMETER`` line per value, in a stable order."""
    lines = [f"FROM {model}"]
    for name in sorted(parameters):
        for value in format_parameter_value(name, parameters[name]):
            lines.append(f"PARAMETER {name} {value}")
    return "\n".join(lines) + "\n"


async def _create(view: NodeView, monitor: HealthMonitor, body: dict[str, Any]) -> str:
    client = NodeClient(view.url, name=view.name, client=monitor.http)
    try:
        async for _ in client.create(body):
            pass
    except NeuronsError as exc:
        return f"error: {exc}"
    return "success"


async def apply_parameters(
    monitor: HealthMonitor,
    model: str,
    parameters: Mapping[str, Any],
    *,
    name: str | None = None,
    nodes: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Create the tuned model on the nodes; the answer says what was created where (a node
    that failed is reported with its error, and the others keep their new model)."""
    target = name or tuned_name(model)
    ModelName.parse(target)  # InvalidModelNameError (400) before any node is asked
    views = monitor.targets(model, nodes)
    body = {"model": target, "from": model, "parameters": dict(parameters)}
    outcomes = await asyncio.gather(*(_create(v, monitor, body) for v in views))
    monitor.note_inventory_changed()
    return {
        "model": target,
        "from": model,
        "parameters": dict(parameters),
        "modelfile": tuned_modelfile(model, parameters),
        "nodes": {v.name: outcome for v, outcome in zip(views, outcomes, strict=True)},
    }
