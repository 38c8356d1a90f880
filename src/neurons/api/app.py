"""The control plane app: the management API under ``/api/ai`` (seed 002's model library,
the network, plugins; errors in the seed's envelope), and the gateway: the Ollama API and the
OpenAI API routed across the network's nodes (errors as those APIs answer them).

Route handlers are thin: the objects doing the work are built in the lifespan (they need the
event loop, the store and one pooled HTTP client) and reached through ``app.state``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from neurons import __version__
from neurons.api import (
    routes_auth,
    routes_events,
    routes_finetune,
    routes_learning,
    routes_library,
    routes_network,
    routes_optimization,
    routes_state,
)
from neurons.api.access import AccessMiddleware
from neurons.api.body_limit import BodyLimitMiddleware
from neurons.api.responses import document
from neurons.api.surfaces import error_response
from neurons.api.versioning import APIVersionMiddleware
from neurons.auth.node_tokens import NodeTokens, node_http_client
from neurons.auth.sealing import Sealer
from neurons.auth.service import AuthService
from neurons.config import Settings
from neurons.errors import ConfigError, NeuronsError
from neurons.events import EventBus
from neurons.finetune.service import FineTuningService
from neurons.learning.service import LearningService
from neurons.library.service import LibraryService
from neurons.network.bounds import Bounds
from neurons.network.fanout import ModelOperations
from neurons.network.gateway import Gateway, OverheadHeaderMiddleware, upstream_session
from neurons.network.gateway_openai import OpenAIGateway
from neurons.network.manager import NetworkManager
from neurons.network.routing import RoutingPolicy
from neurons.optimize.service import OptimizationService
from neurons.persistence import PersistenceService
from neurons.plugins.loader import PluginHost, default_host
from neurons.store import open_store

__all__ = ["NodeSpec", "create_control_plane", "envelope"]

log = logging.getLogger(__name__)

_HTTP_ERROR_CODES = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed"}


@dataclass(frozen=True)
class NodeSpec:
    """A node to register at start-up."""

    name: str
    url: str
    kind: str  # "embedded" | "ollama"
    token: str | None = field(default=None, repr=False)  # the node token it requires


def create_control_plane(settings: Settings, nodes: list[NodeSpec]) -> FastAPI:
    """The control plane: management API, Ollama-API gateway and OpenAI-API gateway."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await asyncio.to_thread(open_store, settings.resolved_database_url)
        auth = AuthService(store, settings.resolved_master_key)
        try:
            auth.check_exposure(settings.host, settings.insecure)
        except BaseException:
            store.close()
            raise
        auth.start()
        app.state.auth = auth
        # Pooled keep-alive connections to the nodes, sending each node its token. No limit on
        # a whole answer (generations are long), but a node silent for node_timeout_s fails
        # the call instead of hanging it.
        tokens = NodeTokens()
        http = node_http_client(tokens, settings.node_timeout_s)
        session = upstream_session(settings.node_timeout_s)
        sealer = Sealer(settings.resolved_secret_key_file)
        for spec in nodes:
            sealed = None if spec.token is None else sealer.seal(spec.token)
            store.nodes.upsert(spec.name, spec.url, spec.kind, token_sealed=sealed)
        if settings.ollama_base_url and await _answers(http, settings.ollama_base_url):
            store.nodes.upsert("ollama", settings.ollama_base_url, "ollama")
            log.info("joined the real Ollama at %s", settings.ollama_base_url)
        plugins = default_host()
        network = NetworkManager(store, settings, http, tokens)
        events = EventBus(store)  # /api/ai/events; services get events.publish (issue 20)
        app.state.events = events
        network.monitor.publish = events.publish  # node up/down, breakers, models, sync
        bounds = Bounds.from_settings(settings)
        gateway = Gateway(
            network.monitor,
            http,
            session,
            _routing_policy(plugins, settings.routing_policy),
            attempts=settings.gateway_attempts,
            sticky_prefix_chars=settings.sticky_prefix_chars,
            bounds=bounds,
        )
        app.state.store = store
        app.state.network = network
        app.state.gateway = gateway
        app.state.model_ops = ModelOperations(gateway)
        app.state.openai = OpenAIGateway(gateway, bounds)
        app.state.plugins = plugins
        app.state.library = LibraryService(store, settings, http)
        optimization = OptimizationService(store, settings, network)
        app.state.optimization = optimization
        fine_tuning = FineTuningService(store, settings, network)
        app.state.fine_tuning = fine_tuning
        learning = LearningService(store, settings)
        app.state.learning = learning
        await network.monitor.check_all()
        network.monitor.start()
        optimization.start_supervisor()  # resumes sessions a previous process left running
        fine_tuning.start_supervisor()  # and jobs, from their checkpoints
        await learning.resume_interrupted()  # and learning runs, likewise
        persistence = PersistenceService(store, settings, publish=events.publish)
        app.state.persistence = persistence
        persistence.start()  # a state snapshot every snapshot_interval_s, and at shutdown
        try:
            yield
        finally:
            await learning.aclose()
            await auth.aclose()
            await fine_tuning.aclose()
            await optimization.aclose()
            await network.aclose()
            await session.close()
            await http.aclose()
            await persistence.aclose()  # last: the snapshot holds what the others left
            await asyncio.to_thread(events.close)  # stores the events still handed over
            store.close()

    app = FastAPI(title="neurons control plane", version=__version__, lifespan=lifespan)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(OverheadHeaderMiddleware)
    app.add_middleware(AccessMiddleware)  # added late: outer, so refusals cost least
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

    app.include_router(routes_auth.router)
    app.include_router(routes_library.router)
    app.include_router(routes_network.router)
    app.include_router(routes_optimization.router)
    app.include_router(routes_finetune.router)
    app.include_router(routes_learning.router)
    app.include_router(routes_state.router)
    app.include_router(routes_events.router)

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


def _routing_policy(plugins: PluginHost, name: str) -> RoutingPolicy:
    policies = plugins.routing_policies()
    if name not in policies:
        raise ConfigError(
            f"unknown routing policy {name!r}; installed: {', '.join(sorted(policies))}"
        )
    return policies[name]()


async def _answers(client: httpx.AsyncClient, url: str) -> bool:
    try:
        response = await client.get(url.rstrip("/") + "/api/version", timeout=2.0)
    except httpx.HTTPError:
        return False
    return response.status_code == 200
