"""The control plane app: health, node registry state, seed 002's model-library API under
``/api/ai/ollama/models`` (errors in the seed's envelope), and the Ollama API passed through
to the network's neuron. (Multi-node routing arrives with the gateway; today every Ollama-API
request goes to the first healthy embedded neuron.)"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from neurons import __version__
from neurons.api import routes_library
from neurons.api.proxy import forward
from neurons.config import Settings
from neurons.errors import NeuronsError
from neurons.library.service import LibraryService
from neurons.store import Store, open_store

__all__ = ["NodeSpec", "create_control_plane", "envelope"]

log = logging.getLogger(__name__)
HEALTH_INTERVAL_S = 5.0


@dataclass(frozen=True)
class NodeSpec:
    """A node to register at start-up."""

    name: str
    url: str
    kind: str  # "embedded" | "ollama"


def create_control_plane(settings: Settings, nodes: list[NodeSpec]) -> FastAPI:
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await asyncio.to_thread(open_store, settings.resolved_database_url)
        client = httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None))
        for spec in nodes:
            store.nodes.upsert(spec.name, spec.url, spec.kind)
        if settings.ollama_base_url and await _probe(client, settings.ollama_base_url):
            store.nodes.upsert("ollama", settings.ollama_base_url, "ollama")
            log.info("joined the real Ollama at %s", settings.ollama_base_url)
        state.update(store=store, client=client)
        app.state.library = LibraryService(store, settings, client)
        await _check_all(store, client)
        health = asyncio.create_task(_health_forever(store, client))
        try:
            yield
        finally:
            health.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await health
            await client.aclose()
            store.close()

    app = FastAPI(title="neurons control plane", version=__version__, lifespan=lifespan)

    @app.exception_handler(NeuronsError)
    async def _neurons_error(_: Request, exc: NeuronsError) -> Response:
        return envelope(exc.message, exc.error_code, exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return envelope(problems, "validation_error", 422)

    app.include_router(routes_library.router)

    @app.api_route(
        "/api/ai/{path:path}", methods=["GET", "POST", "DELETE", "PUT"], include_in_schema=False
    )
    async def _unknown_management_route(path: str) -> Response:
        return envelope(f"no such endpoint: /api/ai/{path}", "not_found", 404)

    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        store: Store = state["store"]
        records = await asyncio.to_thread(store.nodes.list)
        online = sum(1 for r in records if r.status == "online")
        return {
            "status": "ok" if online else "degraded",
            "version": __version__,
            "nodes": [
                {"name": r.name, "url": r.url, "kind": r.kind, "status": r.status} for r in records
            ],
        }

    async def passthrough(request: Request) -> Response:
        store: Store = state["store"]
        records = await asyncio.to_thread(store.nodes.list)
        candidates = [r for r in records if r.status == "online"] or records
        embedded = [r for r in candidates if r.kind == "embedded"] or candidates
        if not embedded:
            return JSONResponse({"error": "no neuron is registered"}, status_code=503)
        node = embedded[0]
        return await forward(state["client"], node.url, request, node.name)

    methods = ["GET", "POST", "DELETE", "HEAD"]
    app.add_api_route("/api/{path:path}", passthrough, methods=methods, include_in_schema=False)
    app.add_api_route("/", passthrough, methods=["GET", "HEAD"], include_in_schema=False)
    return app


def envelope(message: str, error_code: str, status: int) -> JSONResponse:
    """Seed 002's error shape for the management API."""
    return JSONResponse(
        {
            "success": False,
            "error": message,
            "error_code": error_code,
            "timestamp": datetime.now(UTC).isoformat(),
        },
        status_code=status,
    )


async def _probe(client: httpx.AsyncClient, url: str) -> bool:
    try:
        response = await client.get(url.rstrip("/") + "/api/version", timeout=2.0)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


async def _check_all(store: Store, client: httpx.AsyncClient) -> None:
    records = await asyncio.to_thread(store.nodes.list)
    for record in records:
        ok = await _probe(client, record.url)
        status = "online" if ok else "offline"
        if status != record.status:
            await asyncio.to_thread(
                store.nodes.record_event, record.id, status, {"url": record.url}
            )
        await asyncio.to_thread(store.nodes.set_status, record.id, status, ok)


async def _health_forever(store: Store, client: httpx.AsyncClient) -> None:
    while True:
        await asyncio.sleep(HEALTH_INTERVAL_S)
        try:
            await _check_all(store, client)
        except NeuronsError as exc:  # a health pass must never kill the loop
            log.warning("health check failed: %s", exc)
