"""The embedded neuron's ASGI app: Ollama's REST API over the engine and the model store."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from neurons import __version__
from neurons.auth.node_tokens import NodeTokenMiddleware
from neurons.config import Settings
from neurons.errors import NeuronsError
from neurons.neuron import routes_inference, routes_models
from neurons.neuron.defaults import import_default_models
from neurons.neuron.engine import Engine
from neurons.neuron.metrics import neuron_registry
from neurons.neuron.mock import MockSpec, install_mock_models, mock_router
from neurons.neuron.modelstore import ModelStore
from neurons.neuron.scheduler import FairScheduler
from neurons.neuron.service import Neuron
from neurons.ollama.durations import parse_keep_alive
from neurons.ollama.wire import error_response

__all__ = ["create_neuron_app"]

log = logging.getLogger(__name__)


def create_neuron_app(
    settings: Settings, registry_transport: Any = None, mock: MockSpec | None = None
) -> FastAPI:
    """The neuron; with ``mock``, one whose token source is simulated (see
    :mod:`neurons.neuron.mock`): same routes, made-up words, no llama.cpp."""
    store = ModelStore(settings.resolved_models_dir)
    make_engine: Callable[..., Engine] = Engine if mock is None else mock.engine
    engine = make_engine(
        store,
        max_loaded=settings.max_loaded_models,
        default_keep_alive=parse_keep_alive(settings.keep_alive),
        num_parallel=settings.num_parallel,
        prefill_stretch=settings.prefill_stretch,
        available_memory=_pinned_memory(settings) if settings.host_stats else None,
        extra_buffers=settings.llama_extra_buffers,
    )
    neuron = Neuron(store, engine, FairScheduler(settings.num_parallel, settings.max_queue))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store.ensure()
        if mock is not None:
            await asyncio.to_thread(install_mock_models, store, mock.names)
        elif settings.import_default_models:
            await asyncio.to_thread(import_default_models, store)
        reaper = asyncio.create_task(_reap_forever(neuron))
        try:
            yield
        finally:
            reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reaper
            neuron.close()

    app = FastAPI(title="neurons embedded neuron", version=__version__, lifespan=lifespan)
    if settings.node_token is not None:
        app.add_middleware(NodeTokenMiddleware, token=settings.node_token.get_secret_value())
    app.state.neuron = neuron
    app.state.registry_transport = registry_transport
    if mock is not None:
        app.include_router(mock_router)  # first: its routes answer instead of the real ones
    app.include_router(routes_models.router)
    app.include_router(routes_inference.router)

    @app.exception_handler(NeuronsError)
    async def _neurons_error(_: Request, exc: NeuronsError) -> Response:
        return error_response(exc)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unexpected error")
        return JSONResponse({"error": str(exc) or type(exc).__name__}, status_code=500)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> Response:
        return JSONResponse({"error": str(exc.detail).lower()}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.get("/api/neuron/status")
    async def status() -> dict[str, Any]:
        """neurons extension: queue, slot and batching counters for monitoring, routing and
        tests. ``slots`` is how many requests run at once (the gateway routes by it);
        ``models`` has each loaded runner's own slots, steps and prompt-cache reuse;
        ``mock`` is there (true) only on a mock-mode neuron."""
        runners = [r.status() for r in list(engine.runners.values())]
        mode = {"mock": True} if mock is not None else {}
        return {
            **mode,
            "slots": settings.num_parallel,
            "running": neuron.scheduler.running,
            "waiting": neuron.scheduler.waiting,
            "slots_busy": sum(r.get("slots_busy", 0) for r in runners),
            "tokens_generated": engine.tokens_generated,
            "prompt_tokens_reused": sum(r.get("prompt_tokens_reused", 0) for r in runners),
            "loaded": [r["name"] for r in runners],
            "models": runners,
        }

    registry = neuron_registry(neuron, settings.num_parallel)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        """neurons extension: the counters above in Prometheus text (see
        :mod:`neurons.neuron.metrics`); behind the node token like every other route."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/neuron/hardware")
    async def hardware() -> dict[str, Any]:
        """neurons extension: this node's hardware, so the control plane can judge what fits
        here (stats files from the settings when given, else measured, bandwidth included)."""
        from neurons.hardware.inventory import HardwareInventory

        inventory = await asyncio.to_thread(
            HardwareInventory.collect,
            settings.host_stats,
            settings.gpu_stats,
            disk_path=settings.home,
            bandwidth=True,
        )
        result: dict[str, Any] = inventory.model_dump(mode="json")
        return result

    return app


def _pinned_memory(settings: Settings) -> Callable[[], int]:
    """The memory a host stats file says this node has, so that slots are sized by the
    same facts the node reports (``/api/neuron/hardware``)."""
    from neurons.hardware.inventory import HardwareInventory

    def available() -> int:
        inventory = HardwareInventory.collect(settings.host_stats, settings.gpu_stats)
        return inventory.host.memory.usable_bytes

    return available


async def _reap_forever(neuron: Neuron) -> None:
    while True:
        await asyncio.sleep(1.0)
        await neuron.in_loader(neuron.engine.reap)
