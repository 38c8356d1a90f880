"""Seed 001's model module: ``initialize_model``, ``start_model_service`` and
``run_model_inference`` over one module-level model, and the seed's model class
(``initialize(config) -> bool``, ``inference(text) -> dict``), here :class:`EmbeddingModel`.

As in the seed, these never raise for a model problem: ``initialize`` returns False with the
error logged, and inference answers ``{"error": ...}``. The empty-input answer is exactly the
seed's ``{"error": "No input text provided"}``; other errors add ``error_code`` (from
:mod:`neurons.errors`) so an HTTP edge can pick the status.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from neurons.errors import InvalidRequestError, NeuronsError
from neurons.inference.config import InferenceConfig
from neurons.inference.service import NO_INPUT, Embedded, InferenceService

__all__ = [
    "EmbeddingModel",
    "initialize_model",
    "model_instance",
    "run_model_inference",
    "start_model_service",
]

logger = logging.getLogger(__name__)


class EmbeddingModel:
    """The seed's ``CustomModel``: one :class:`InferenceService`, (re)built by ``initialize``."""

    def __init__(self) -> None:
        self.service: InferenceService | None = None

    async def initialize(self, config: Mapping[str, Any]) -> bool:
        """Load the model ``config`` describes (seed keys: model_path, model_type, max_length,
        device; see InferenceConfig); True on success, False with the error logged."""
        try:
            service = InferenceService(InferenceConfig.from_dict(config))
            await service.start()
        except NeuronsError as error:
            logger.error("loading the embedding model failed: %s", error)
            return False
        previous, self.service = self.service, service
        if previous is not None:
            await previous.stop()
        logger.info(
            "embedding model %s ready (%s, %d dimensions, on %s)",
            service.name,
            service.digest,
            service.dimensions,
            service.device,
        )
        return True

    async def close(self) -> None:
        service, self.service = self.service, None
        if service is not None:
            await service.stop()

    async def inference(self, input_text: str, *, truncate: bool = True) -> dict[str, Any]:
        """One text's embedding, in the seed's shape (``input_text``, ``embeddings`` as a list
        of one vector, ``model_type``) plus the model's version and what happened."""
        answer = await self._embed([input_text], truncate)
        if "error" in answer:
            return answer
        embedded: Embedded = answer["embedded"]
        return {
            "input_text": input_text,
            **self._describe(embedded),
            "truncated": embedded.truncated[0],
            "cached": embedded.cached[0],
        }

    async def inference_many(self, texts: list[str], *, truncate: bool = True) -> dict[str, Any]:
        answer = await self._embed(texts, truncate)
        if "error" in answer:
            return answer
        embedded: Embedded = answer["embedded"]
        return {
            "input_texts": texts,
            **self._describe(embedded),
            "truncated": embedded.truncated,
            "cached": embedded.cached,
        }

    async def _embed(self, texts: list[str], truncate: bool) -> dict[str, Any]:
        if self.service is None:
            return {"error": "Model not initialized", "error_code": "inference_error"}
        try:
            return {"embedded": await self.service.embed(texts, truncate=truncate)}
        except InvalidRequestError as error:
            if str(error) == NO_INPUT:
                return {"error": NO_INPUT}
            return {"error": str(error), "error_code": error.error_code}
        except NeuronsError as error:
            logger.error("embedding failed: %s", error)
            return {"error": str(error), "error_code": error.error_code}

    def _describe(self, embedded: Embedded) -> dict[str, Any]:
        assert self.service is not None  # _embed answered, so there is one
        return {
            "embeddings": embedded.embeddings,
            "model_type": self.service.model_type,
            "model_version": self.service.digest,
            "dimensions": self.service.dimensions,
            "prompt_tokens": embedded.prompt_tokens,
        }


# The seed's global instance, which the module functions drive.
model_instance = EmbeddingModel()


async def initialize_model(config: Mapping[str, Any]) -> bool:
    """Load (or reload) the module's model; True on success, False with the error logged."""
    return await model_instance.initialize(config)


async def start_model_service(config: Mapping[str, Any]) -> bool:
    """The seed's entry point: initialize and say so in the log."""
    started = await model_instance.initialize(config)
    if started:
        logger.info("embedding model service started")
    else:
        logger.error("embedding model service failed to start")
    return started


async def run_model_inference(input_data: Mapping[str, Any]) -> dict[str, Any]:
    """``{"text": "..."}`` or ``{"texts": [...]}``, optional ``"truncate": bool``; the answer
    is described in :meth:`EmbeddingModel.inference` (one text) and ``inference_many``."""
    if not isinstance(input_data, Mapping):
        return {"error": "expected a JSON object", "error_code": "invalid_request"}
    truncate = input_data.get("truncate", True)
    if not isinstance(truncate, bool):
        return {"error": "truncate: expected true or false", "error_code": "invalid_request"}
    if "texts" in input_data:
        texts = input_data["texts"]
        if not isinstance(texts, list):
            return {"error": "texts: expected a list of strings", "error_code": "invalid_request"}
        return await model_instance.inference_many(texts, truncate=truncate)
    text = input_data.get("text", "")
    if not isinstance(text, str):
        return {"error": "text: expected a string", "error_code": "invalid_request"}
    if not text.strip():
        return {"error": NO_INPUT}
    return await model_instance.inference(text, truncate=truncate)
