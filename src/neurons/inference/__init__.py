"""An in-process embedding model served like text-embeddings-inference: seed 001's model
module (``initialize_model``, ``run_model_inference``, ``start_model_service``) over an
:class:`InferenceService` that micro-batches concurrent callers and caches repeated texts.
"""

from __future__ import annotations

from neurons.inference.config import InferenceConfig
from neurons.inference.module import (
    EmbeddingModel,
    initialize_model,
    model_instance,
    run_model_inference,
    start_model_service,
)
from neurons.inference.service import Embedded, InferenceService

__all__ = [
    "Embedded",
    "EmbeddingModel",
    "InferenceConfig",
    "InferenceService",
    "initialize_model",
    "model_instance",
    "run_model_inference",
    "start_model_service",
]
