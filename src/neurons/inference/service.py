"""The embedding service: validation, the cache, the micro-batcher and the model, behind one
``embed`` call. The control plane's routes, seed 001's module functions and language memory
all go through it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from neurons.errors import InferenceError, InvalidRequestError
from neurons.inference.batcher import MicroBatcher
from neurons.inference.cache import TTLCache
from neurons.inference.config import InferenceConfig
from neurons.inference.model import Encoder, Vectors, load_encoder
from neurons.metrics.models import ModelMetrics
from neurons.torch_threads import use_torch_threads

__all__ = ["MAX_TEXTS", "NO_INPUT", "Embedded", "InferenceService"]

MAX_TEXTS = 2048
NO_INPUT = "No input text provided"  # seed 001's message, word for word


@dataclass(frozen=True)
class Embedded:
    """One ``embed`` call's answer, every list in input order."""

    vectors: list[Vectors]  # float32 rows
    truncated: list[bool]
    cached: list[bool]
    prompt_tokens: int  # tokens of the inputs after truncation (Ollama's prompt_eval_count)

    @property
    def embeddings(self) -> list[list[float]]:
        """The vectors as lists of Python floats (JSON's numbers)."""
        return [vector.tolist() for vector in self.vectors]


@dataclass(frozen=True)
class _Vector:
    """What one text costs to compute and is worth caching: its vector and token facts."""

    vector: Vectors
    tokens: int  # before truncation

    def truncated(self, max_length: int) -> bool:
        return self.tokens > max_length


class InferenceService:
    """Loads the configured model on :meth:`start` and embeds texts until :meth:`stop`."""

    def __init__(self, config: InferenceConfig, *, encoder: Encoder | None = None) -> None:
        """``encoder``: an already loaded model to serve instead of loading ``config``'s (tests
        and benchmarks share one; its settings must match ``config``)."""
        self.config = config
        self.name = config.name
        self.model_type = config.model_type
        self.max_length = config.max_length
        self.quantization = config.quantization
        self.metrics = ModelMetrics()
        self._cache: TTLCache[_Vector] = TTLCache(config.cache_size, config.cache_ttl_s)
        self._encoder: Encoder | None = encoder
        self._batcher: MicroBatcher[_Vector] | None = None
        self._threads: int | None = None  # torch threads of the forward passes, once one ran

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            raise InferenceError("the inference service is not started")
        return self._encoder

    @property
    def digest(self) -> str:
        return self.encoder.digest

    @property
    def dimensions(self) -> int:
        return self.encoder.dimensions

    @property
    def device(self) -> str:
        return self.encoder.device

    @property
    def running(self) -> bool:
        return self._batcher is not None

    async def start(self) -> None:
        """Load the model in a worker thread (seconds) and start the batcher; idempotent."""
        if self._batcher is not None:
            return
        if self._encoder is None:
            self._encoder = await asyncio.to_thread(load_encoder, self.config)
        batcher = MicroBatcher(
            self._forward,
            self.config.batch_size,
            self.config.batch_wait_ms / 1000,
            workers=self.config.resolved_workers(self._encoder.device),
        )
        await batcher.start()
        self._batcher = batcher

    async def stop(self) -> None:
        """End the batcher: waiting callers get an InferenceError. The model stays loaded,
        so a later ``start`` is quick."""
        batcher, self._batcher = self._batcher, None
        if batcher is not None:
            await batcher.stop()

    async def embed(self, texts: Sequence[str], *, truncate: bool = True) -> Embedded:
        """Embed ``texts`` in order. Bad input raises InvalidRequestError (400) and is not
        counted in the metrics; a failed forward pass raises InferenceError and is."""
        _validate(texts)
        batcher = self._batcher
        if batcher is None:
            raise InferenceError("the inference service is not started")
        started = time.perf_counter()
        try:
            if not truncate:
                await self._refuse_overlong(texts)
            results: list[_Vector | None] = []
            cached: list[bool] = []
            for text in texts:
                hit = self._cache.get((self.digest, text, truncate))
                results.append(hit)
                cached.append(hit is not None)
            missing = [index for index, hit in enumerate(results) if hit is None]
            if missing:
                computed = await batcher.submit([texts[index] for index in missing])
                for index, value in zip(missing, computed, strict=True):
                    results[index] = value
                    self._cache.put((self.digest, texts[index], truncate), value)
        except InvalidRequestError:
            raise
        except Exception:
            self.metrics.record(time.time(), None, error=True)
            raise
        done = [result for result in results if result is not None]
        tokens = sum(min(result.tokens, self.max_length) for result in done)
        self.metrics.record(
            time.time(), time.perf_counter() - started, error=False, prompt_tokens=tokens
        )
        return Embedded(
            vectors=[result.vector for result in done],
            truncated=[result.truncated(self.max_length) for result in done],
            cached=cached,
            prompt_tokens=tokens,
        )

    def stats(self) -> dict[str, Any]:
        batching = self._batcher.stats() if self._batcher is not None else {}
        return {
            "name": self.name,
            "model_type": self.model_type,
            "digest": self._encoder.digest if self._encoder is not None else None,
            "dimensions": self._encoder.dimensions if self._encoder is not None else None,
            "device": self._encoder.device if self._encoder is not None else None,
            "quantization": self.quantization,
            "backend": self._encoder.backend if self._encoder is not None else None,
            "max_length": self.max_length,
            "running": self.running,
            "torch_threads": self._threads,
            "cache": self._cache.stats(),
            "batching": {
                "batches": batching.get("batches", 0),
                "mean_batch_size": batching.get("mean_batch_size", 0.0),
                "largest_batch": batching.get("largest_batch", 0),
                "batch_size": self.config.batch_size,
                "batch_wait_ms": self.config.batch_wait_ms,
                "workers": batching.get("workers", 0),
            },
            "metrics": {
                "inference_count": self.metrics.inference_count,
                "average_latency": self.metrics.average_latency,
                "error_count": self.metrics.error_count,
            },
        }

    def _forward(self, texts: list[str]) -> list[_Vector]:
        # Each of the batcher's threads sets its own torch thread count on its first pass
        # (a no-op after that).
        self._threads = use_torch_threads("inference", self.config.torch_threads)
        encoder = self.encoder
        counts = encoder.token_counts(texts)
        vectors = encoder.encode(texts)
        return [_Vector(np.array(row), count) for row, count in zip(vectors, counts, strict=True)]

    async def _refuse_overlong(self, texts: Sequence[str]) -> None:
        counts = await asyncio.to_thread(self.encoder.token_counts, list(texts))
        for index, count in enumerate(counts):
            if count > self.max_length:
                raise InvalidRequestError(
                    f"input length exceeds the context length: text {index} has {count} "
                    f"tokens, more than max_length {self.max_length} (send truncate=true to "
                    "cut it)"
                )


def _validate(texts: Sequence[str]) -> None:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise InvalidRequestError("expected a list of texts")
    if not texts:
        raise InvalidRequestError(NO_INPUT)
    if len(texts) > MAX_TEXTS:
        raise InvalidRequestError(f"too many texts: {len(texts)}, at most {MAX_TEXTS} a request")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidRequestError(f"text {index}: expected a string, got {type(text).__name__}")
    if any(not text.strip() for text in texts):
        raise InvalidRequestError(NO_INPUT)
