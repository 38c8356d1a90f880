"""Language memory (seed 003, issue 22): texts with metadata and their embeddings, per
namespace, searched by cosine and summarised with citations by an LLM on the network. The
one code path is :class:`~neurons.memory.service.MemoryService`."""

from __future__ import annotations

from neurons.memory.embeddings import Embeddings, ModelEmbeddings, Vectors
from neurons.memory.service import (
    DEFAULT_NAMESPACE,
    Hit,
    MemoryService,
    Synthesis,
    check_namespace,
    resolve_namespace,
)
from neurons.memory.synthesis import GatewayGenerator, Generated, Generator

__all__ = [
    "DEFAULT_NAMESPACE",
    "Embeddings",
    "GatewayGenerator",
    "Generated",
    "Generator",
    "Hit",
    "MemoryService",
    "ModelEmbeddings",
    "Synthesis",
    "Vectors",
    "check_namespace",
    "resolve_namespace",
]
