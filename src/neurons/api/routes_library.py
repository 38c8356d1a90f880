"""Seed 002's model-library API under ``/api/ai/ollama/models``: thin routes over
:class:`~neurons.library.service.LibraryService`. Answers carry ``"success": true``; errors
use the seed's envelope (the app's error handlers)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request

from neurons.api.responses import errors
from neurons.library.service import LibraryService

__all__ = ["router"]

router = APIRouter(prefix="/api/ai/ollama/models", tags=["model library"])


def _service(request: Request) -> LibraryService:
    service: LibraryService = request.app.state.library
    return service


def _ok(payload: dict[str, Any]) -> dict[str, Any]:
    return {"success": True, **payload}


NodeQuery = Annotated[str | None, Query(description="A node name; default: this host.")]


@router.get("/library", responses=errors(400))
async def library(
    request: Request,
    category: Annotated[str | None, Query(description="Only this category.")] = None,
) -> dict[str, Any]:
    """Every model of the library by category, with where it is installed."""
    return _ok(await _service(request).get_library(category))


@router.get("/search", responses=errors(400))
async def search(
    request: Request,
    query: str = "",
    category: str | None = None,
    size: Annotated[str | None, Query(description="tiny, small, medium, large or huge")] = None,
    min_performance: Annotated[float | None, Query(ge=0.0, le=1.0)] = None,
    max_parameters: Annotated[str | None, Query(description="e.g. 7e9 or 7B")] = None,
    installed: bool | None = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=200)] = 20,
) -> dict[str, Any]:
    """Search names, descriptions and capabilities, with a relevance score."""
    return _ok(
        await _service(request).search(
            query,
            category=category,
            size=size,
            min_performance=min_performance,
            max_parameters=max_parameters,
            installed=installed,
            page=page,
            page_size=page_size,
        )
    )


@router.get("/recommendations", responses=errors(400, 404))
async def recommendations(
    request: Request,
    task_type: str,
    preferred_size: str | None = None,
    node: NodeQuery = None,
    scope: Annotated[str, Query(description="host, node or network")] = "host",
    limit: Annotated[int, Query(ge=1, le=50)] = 5,
) -> dict[str, Any]:
    """Ranked models for a task on this host, a node, or the whole network."""
    return _ok(
        await _service(request).recommendations(
            task_type, preferred_size=preferred_size, node=node, scope=scope, limit=limit
        )
    )


@router.get("/compatibility/{model_name:path}", responses=errors(400, 404))
async def compatibility(
    request: Request,
    model_name: str,
    node: NodeQuery = None,
    num_ctx: Annotated[int | None, Query(ge=1, le=10_000_000)] = None,
) -> dict[str, Any]:
    """Does the model fit, and how fast will it run?"""
    return _ok(await _service(request).compatibility(model_name, node=node, num_ctx=num_ctx))


@router.get("/compare", responses=errors(400, 404))
async def compare(
    request: Request,
    models: Annotated[str, Query(description="Comma-separated names: a,b,c")],
    node: NodeQuery = None,
    num_ctx: Annotated[int | None, Query(ge=1, le=10_000_000)] = None,
) -> dict[str, Any]:
    """Side by side: performance, memory, context, speed."""
    return _ok(await _service(request).compare(models.split(","), node=node, num_ctx=num_ctx))


@router.get("/installed", responses=errors(502, 503))
async def installed(request: Request) -> dict[str, Any]:
    """Models the nodes hold, merged across nodes."""
    return _ok(await _service(request).installed())


@router.get("/details/{model_name:path}", responses=errors(400, 404, 502, 503))
async def details(request: Request, model_name: str) -> dict[str, Any]:
    """One model: facts, sources, copies on nodes, measurements."""
    return _ok({"model": await _service(request).model_details(model_name)})


@router.post("/pull", responses=errors(400, 404, 502, 503))
async def pull(
    request: Request,
    model: Annotated[str, Body(embed=True)],
    node: Annotated[str | None, Body(embed=True)] = None,
    insecure: Annotated[bool, Body(embed=True)] = False,
) -> dict[str, Any]:
    """Pull onto one node, or onto every online node (``insecure``: plain-HTTP registry)."""
    return _ok(await _service(request).pull(model, node=node, insecure=insecure))


@router.post("/copy", responses=errors(400, 404, 502, 503))
async def copy(
    request: Request,
    source: Annotated[str, Body(embed=True)],
    destination: Annotated[str, Body(embed=True)],
    node: Annotated[str | None, Body(embed=True)] = None,
) -> dict[str, Any]:
    return _ok(await _service(request).copy(source, destination, node=node))


@router.post("/create", responses=errors(400, 404, 502, 503))
async def create(
    request: Request,
    name: Annotated[str, Body(embed=True)],
    modelfile: Annotated[str, Body(embed=True)],
    node: Annotated[str | None, Body(embed=True)] = None,
) -> dict[str, Any]:
    """Create a model from Modelfile text; FROM names a model (paths are not read)."""
    return _ok(await _service(request).create(name, modelfile, node=node))


@router.post("/evaluate/{model_name:path}", responses=errors(400, 404, 502, 503))
async def evaluate(
    request: Request,
    model_name: str,
    node: Annotated[str | None, Body(embed=True)] = None,
    limit: Annotated[int | None, Body(embed=True, ge=1)] = None,
) -> dict[str, Any]:
    """Measure quality and speed on a node; the library then reports the measured score."""
    return _ok(await _service(request).evaluate(model_name, node=node, limit=limit))


@router.delete("/{model_name:path}", responses=errors(400, 404, 502, 503))
async def delete(request: Request, model_name: str, node: NodeQuery = None) -> dict[str, Any]:
    """Delete from one node, or from every node that holds it."""
    return _ok(await _service(request).delete(model_name, node=node))
