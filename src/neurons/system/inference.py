"""The ``inference`` component: seed 001's embedding model (:mod:`neurons.inference`) inside
the control plane, behind ``/api/v1/model/inference``, the language memory and the gateway's
embedding routes (under ``inference_model_name``, ``all-minilm`` by default).

The model loads on the first request that needs it, not when the plane starts: importing torch
and loading the weights takes seconds and a few hundred MB, which a plane that never embeds
should not pay (nor a test suite that starts hundreds of planes). Concurrent first requests
wait for the one load; a load that fails is reported to each of them and tried again by the
next request (the files may have been fixed meanwhile).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from neurons.config import Settings
from neurons.inference.config import InferenceConfig
from neurons.inference.service import Embedded, InferenceService
from neurons.metrics.models import ModelMetrics
from neurons.ollama.names import canonical_name
from neurons.system.core import Component

__all__ = ["InferenceComponent", "LocalInference", "inference_config"]


def inference_config(settings: Settings) -> InferenceConfig:
    """The settings' seed-001 block as the module's config (measured defaults where unset)."""
    data: dict[str, Any] = {
        "model_path": None if settings.model_path is None else str(settings.model_path),
        "model_type": settings.model_type,
        "max_length": settings.model_max_length,
        "device": settings.model_device,
        "quantization": settings.inference_quantization,
        "backend": settings.inference_backend,
        "name": settings.inference_model_name,
        "cache_size": settings.inference_cache_size,
        "cache_ttl_s": settings.inference_cache_ttl_s,
        "torch_threads": settings.torch_threads,
    }
    if settings.inference_batch_size is not None:
        data["batch_size"] = settings.inference_batch_size
    if settings.inference_batch_wait_ms is not None:
        data["batch_wait_ms"] = settings.inference_batch_wait_ms
    if settings.inference_workers is not None:
        data["workers"] = settings.inference_workers
    return InferenceConfig.from_dict(data)


class LocalInference:
    """The plane's embedding model, started on first use. ``embed`` is the service's; the
    model's facts (``digest``, ``dimensions``...) are read from :meth:`ready`'s service."""

    def __init__(self, config: InferenceConfig) -> None:
        self.config = config
        self.name = canonical_name(config.name)  # how the gateway and /api/tags call it
        self._service: InferenceService | None = None
        self._lock = asyncio.Lock()

    @property
    def loaded(self) -> InferenceService | None:
        """The service once it has started, else None (nothing is loaded by asking)."""
        return self._service

    async def ready(self) -> InferenceService:
        if self._service is not None:
            return self._service
        async with self._lock:
            if self._service is None:
                service = InferenceService(self.config)
                await service.start()  # raises with the reason; the next call tries again
                self._service = service
        return self._service

    async def embed(self, texts: Sequence[str], *, truncate: bool = True) -> Embedded:
        service = await self.ready()
        return await service.embed(texts, truncate=truncate)

    @property
    def digest(self) -> str:
        """The loaded model's digest (its version); after a first :meth:`embed` or :meth:`ready`."""
        return self._loaded().digest

    @property
    def dimensions(self) -> int:
        return self._loaded().dimensions

    def _loaded(self) -> InferenceService:
        if self._service is None:
            raise RuntimeError("the embedding model is not loaded yet: await ready() first")
        return self._service

    def serves(self, model: str) -> bool:
        """Whether a request for ``model`` is this model's (``all-minilm`` = ``:latest``)."""
        return canonical_name(model) == self.name

    @property
    def metrics(self) -> ModelMetrics | None:
        return None if self._service is None else self._service.metrics

    async def aclose(self) -> None:
        async with self._lock:
            if self._service is not None:
                await self._service.stop()
                self._service = None


class InferenceComponent(Component):
    """Puts :class:`LocalInference` at ``state.inference``; stopping ends its batcher."""

    name = "inference"

    def __init__(self, state: Any, settings: Settings) -> None:
        self.state = state
        self.settings = settings
        self.local: LocalInference | None = None

    async def start(self) -> None:
        self.local = LocalInference(inference_config(self.settings))
        self.state.inference = self.local

    async def stop(self) -> None:
        self.state.inference = None
        if self.local is not None:
            await self.local.aclose()

    def health(self) -> dict[str, Any]:
        loaded = self.local.loaded if self.local is not None else None
        return {"ok": True, "loaded": loaded is not None}

    def metrics(self) -> dict[str, Any]:
        loaded = self.local.loaded if self.local is not None else None
        if loaded is None:
            return {"loaded": False}
        return {"loaded": True, **loaded.stats(), **loaded.metrics.to_dict()}
