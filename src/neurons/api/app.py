"""The control plane app: the management API under ``/api/ai`` (seed 002's model library,
the network, plugins; errors in the seed's envelope), and the gateway: the Ollama API and the
OpenAI API routed across the network's nodes (errors as those APIs answer them).

Route handlers are thin: the objects doing the work are built by the system's components
(:mod:`neurons.system.components`), which the lifespan starts in dependency order and stops
in reverse, and reached through ``app.state``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException

from neurons import __version__
from neurons.api import (
    routes_auth,
    routes_events,
    routes_finetune,
    routes_inference,
    routes_learning,
    routes_library,
    routes_memory,
    routes_metrics,
    routes_network,
    routes_optimization,
    routes_state,
    routes_system,
)
from neurons.api.access import AccessMiddleware
from neurons.api.body_limit import BodyLimitMiddleware
from neurons.api.metrics import RequestMetricsMiddleware
from neurons.api.responses import document
from neurons.api.surfaces import error_response
from neurons.api.versioning import APIVersionMiddleware
from neurons.config import Settings
from neurons.dashboard import router as dashboard_router
from neurons.errors import NeuronsError
from neurons.metrics.service import MetricsService
from neurons.network.fanout import ModelOperations
from neurons.network.gateway import Gateway, OverheadHeaderMiddleware
from neurons.network.gateway_openai import OpenAIGateway
from neurons.network.manager import NetworkManager
from neurons.system.components import NodeSpec, control_plane_components
from neurons.system.core import BackendIntegrationSystem, Component

__all__ = ["NodeSpec", "create_control_plane", "envelope"]

log = logging.getLogger(__name__)

_HTTP_ERROR_CODES = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed"}


def create_control_plane(
    settings: Settings,
    nodes: Sequence[NodeSpec],
    *,
    neurons: Sequence[Component] = (),
    mock: bool = False,
) -> FastAPI:
    """The control plane: management API, Ollama-API gateway and OpenAI-API gateway.
    ``neurons`` are components that run nodes of ``nodes`` (``neurons up``'s embedded
    neuron), started before the network and stopped after it; ``mock`` marks the system as
    serving simulated neurons."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A system per lifespan, so an app can be served again after it stopped.
        system = BackendIntegrationSystem(mock=mock, stop_timeout_s=settings.drain_deadline_s)
        app.state.system = system
        for component in control_plane_components(app.state, settings, nodes, neurons):
            system.register(component)
        await system.initialize()  # a failure stops what started and names the component
        try:
            yield
        finally:
            await system.shutdown()

    app = FastAPI(title="neurons control plane", version=__version__, lifespan=lifespan)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(OverheadHeaderMiddleware)
    app.add_middleware(AccessMiddleware)  # added late: outer, so refusals cost least
    # None with metrics off: nothing on the request path records, the routes answer 404.
    app.state.metrics = metrics = MetricsService(app.state) if settings.metrics else None
    app.state.inference = None  # the inference component's, while it runs
    if metrics is not None:
        # Outside the access check, so refusals are counted too; inside the version rewrite,
        # so /api/ai/v1/x counts as /api/ai/x (the rewrite copies the scope the router marks).
        app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    app.add_middleware(APIVersionMiddleware)  # outermost: /api/ai/v1/x is /api/ai/x for all

    @app.exception_handler(NeuronsError)
    async def _neurons_error(_: Request, exc: NeuronsError) -> Response:
        return envelope(exc.message, exc.error_code, exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return envelope(problems, "validation_error", 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """Starlette's own refusals (an unparsable body, no such path or method) in the
        shape of the surface asked."""
        error = NeuronsError(str(exc.detail))
        error.http_status = exc.status_code
        error.error_code = _HTTP_ERROR_CODES.get(exc.status_code, "http_error")
        return error_response(request.url.path, error, exc.headers)

    app.include_router(dashboard_router)  # /dashboard: the page and its files
    app.include_router(routes_auth.router)
    app.include_router(routes_library.router)
    app.include_router(routes_network.router)
    app.include_router(routes_optimization.router)
    app.include_router(routes_finetune.router)
    app.include_router(routes_learning.router)
    app.include_router(routes_state.router)
    app.include_router(routes_events.router)
    app.include_router(routes_system.router)
    app.include_router(routes_metrics.router)
    app.include_router(routes_memory.router)
    app.include_router(routes_inference.router)

    @app.get("/api/ai/plugins", tags=["plugins"])
    async def plugins(request: Request) -> dict[str, Any]:
        """Installed plugins (loaded or failed, with the error) and the routing policies."""
        host = request.app.state.plugins
        return {
            "success": True,
            "plugins": [info.to_dict() for info in host.infos()],
            "routing_policies": sorted(host.routing_policies()),
        }

    @app.api_route(
        "/api/ai/{path:path}", methods=["GET", "POST", "DELETE", "PUT"], include_in_schema=False
    )
    async def _unknown_management_route(path: str) -> Response:
        return envelope(f"no such endpoint: /api/ai/{path}", "not_found", 404)

    @app.get("/api/health")
    async def health(request: Request) -> dict[str, Any]:
        network: NetworkManager = request.app.state.network
        views = network.neurons
        return {
            "status": "ok" if any(v.state.routable for v in views) else "degraded",
            "version": __version__,
            "nodes": [
                {"name": v.name, "url": v.url, "kind": v.kind, "status": str(v.state)}
                for v in views
            ],
        }

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        """Prometheus text (see :mod:`neurons.metrics`); read scope when keys are on."""
        if metrics is None:
            return envelope("metrics are off (settings: metrics)", "not_found", 404)
        return Response(await metrics.render(), media_type=CONTENT_TYPE_LATEST)

    document(app)
    _mount(app, "gateway", Gateway.ROUTES)
    _mount(app, "model_ops", ModelOperations.ROUTES)
    _mount(app, "openai", OpenAIGateway.ROUTES)
    # Anything else under /api (e.g. /api/neuron/status) goes to one node as it is.
    _mount(app, "gateway", (("/api/{path:path}", "passthrough", ("GET", "POST", "DELETE")),))
    return app


def _mount(
    app: FastAPI, attribute: str, routes: tuple[tuple[str, str, tuple[str, ...]], ...]
) -> None:
    """Route to a method of an object the lifespan builds (``app.state.<attribute>``)."""
    for path, method, verbs in routes:

        async def handler(request: Request, _method: str = method) -> Response:
            target = getattr(request.app.state, attribute)
            response: Response = await getattr(target, _method)(request)
            return response

        app.add_api_route(path, handler, methods=list(verbs), include_in_schema=False)


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
