"""The network's management API under ``/api/ai/network``: nodes, health, placements, sync.

Thin routes over :class:`~neurons.network.manager.NetworkManager`; answers carry
``"success": true`` and errors use the seed's envelope (the app's error handlers).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from pydantic import BaseModel, Field

from neurons.api.responses import errors
from neurons.network.manager import NetworkManager

__all__ = ["router"]

router = APIRouter(prefix="/api/ai/network", tags=["network"])


def _manager(request: Request) -> NetworkManager:
    manager: NetworkManager = request.app.state.network
    return manager


def _ok(payload: dict[str, Any]) -> dict[str, Any]:
    return {"success": True, **payload}


class NewNode(BaseModel):
    url: str = Field(description="The node's base URL, e.g. http://10.0.0.5:11434.")
    name: str | None = Field(default=None, description="Default: host-port of the URL.")
    labels: dict[str, str] = Field(default_factory=dict)
    priority: int = Field(default=0, ge=-1_000_000, le=1_000_000)
    kind: str | None = Field(
        default=None,
        description=(
            "embedded | ollama | openai (an OpenAI-compatible server; its API key as the"
            " token); default: detected."
        ),
    )
    token: str | None = Field(
        default=None,
        max_length=512,
        description="The node token the node requires; stored sealed, never shown.",
    )


class PlacementBody(BaseModel):
    labels: dict[str, str] = Field(default_factory=dict, description="Nodes carrying all these.")
    replicas: int | None = Field(
        default=None, ge=1, le=10_000, description="At least this many nodes."
    )


@router.get("/status")
async def status(request: Request) -> dict[str, Any]:
    """Every node as the health monitor last saw it: state, breaker, models, load."""
    return _ok(_manager(request).status())


@router.post("/check")
async def check(request: Request) -> dict[str, Any]:
    """Probe every node now (the seed's ``manage_state``)."""
    return _ok({"nodes": await _manager(request).manage_state()})


@router.get("/nodes")
async def nodes(request: Request) -> dict[str, Any]:
    return _ok({"nodes": _manager(request).status()["nodes"]})


@router.post("/nodes", status_code=201, responses=errors(400, 409))
async def add_node(request: Request, node: NewNode) -> dict[str, Any]:
    """Register a node (an embedded neuron or any Ollama server) and probe it."""
    added = await _manager(request).add_neuron(
        node.url,
        name=node.name,
        labels=node.labels,
        priority=node.priority,
        kind=node.kind,
        token=node.token,
    )
    return _ok({"node": added})


@router.delete("/nodes/{name}", responses=errors(404))
async def remove_node(request: Request, name: str) -> dict[str, Any]:
    await _manager(request).remove_neuron(name)
    return _ok({"removed": name})


@router.post("/nodes/{name}/drain", responses=errors(404))
async def drain(request: Request, name: str) -> dict[str, Any]:
    """Stop routing new requests to the node (open ones finish)."""
    return _ok({"node": await _manager(request).drain(name, True)})


@router.post("/nodes/{name}/resume", responses=errors(404))
async def resume(request: Request, name: str) -> dict[str, Any]:
    return _ok({"node": await _manager(request).drain(name, False)})


@router.get("/nodes/{name}/events", responses=errors(400, 404))
async def events(
    request: Request, name: str, limit: Annotated[int, Query(ge=1, le=1000)] = 50
) -> dict[str, Any]:
    store = _manager(request).store
    return _ok({"events": await asyncio.to_thread(store.nodes.events, name, limit)})


@router.get("/placements")
async def placements(request: Request) -> dict[str, Any]:
    store = _manager(request).store
    found = await asyncio.to_thread(store.placements.list)
    return _ok({"placements": [p.to_dict() for p in found]})


@router.put("/placements/{model:path}", responses=errors(400))
async def set_placement(
    request: Request, model: str, placement: Annotated[PlacementBody, Body()]
) -> dict[str, Any]:
    """Declare where a model should be: on nodes with these labels and/or on N nodes."""
    store = _manager(request).store
    saved = await asyncio.to_thread(
        store.placements.set, model, placement.labels or None, placement.replicas
    )
    return _ok({"placement": saved.to_dict()})


@router.delete("/placements/{model:path}", responses=errors(400, 404))
async def remove_placement(request: Request, model: str) -> dict[str, Any]:
    store = _manager(request).store
    await asyncio.to_thread(store.placements.remove, model)
    return _ok({"removed": model})


@router.post("/sync", responses=errors(400, 404, 502, 503))
async def sync(
    request: Request,
    model: Annotated[str | None, Query(description="Only this model's placement.")] = None,
) -> dict[str, Any]:
    """Copy models between nodes until the placements hold; the report lists each copy."""
    report = await _manager(request).synchronize_neurons(model)
    return _ok({"report": report.to_dict()})
