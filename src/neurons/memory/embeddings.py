"""Where language memory gets its vectors: the small :class:`Embeddings` contract, and
:class:`ModelEmbeddings`, which wraps the control plane's own embedding model (seed 001's
:mod:`neurons.inference`, all-MiniLM-L6-v2 by default).

Every answer names the model's digest with the vectors it made: vectors of two models (or two
versions of one) live in different spaces, and the memory compares only those of one digest.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

__all__ = ["EmbeddingModel", "Embeddings", "ModelEmbeddings", "Vectors"]


@dataclass(frozen=True)
class Vectors:
    """The vectors of some texts, one row each, unit length, with the model that made them."""

    matrix: np.ndarray  # (len(texts), dimensions), float32
    model: str
    digest: str
    truncated: tuple[bool, ...] = ()  # per text: only its first tokens were embedded


class Embeddings(ABC):
    """Turns texts into vectors. ``embed`` is called with at least one text, from the event
    loop; an implementation may batch, cache or run elsewhere, but must answer the rows in
    the order of ``texts`` and normalised to unit length (the memory scores by dot product)."""

    @abstractmethod
    async def embed(self, texts: Sequence[str]) -> Vectors:
        """The vectors of ``texts``."""


class EmbeddingModel(Protocol):
    """What :class:`ModelEmbeddings` needs of the inference module's service (or of the
    control plane's lazily started wrapper of it, ``app.state.inference``): ``digest`` is
    readable once ``embed`` has answered."""

    name: str

    async def embed(self, texts: Sequence[str]) -> Any: ...

    @property
    def digest(self) -> str: ...


class ModelEmbeddings(Embeddings):
    """The embedding model the control plane runs (``neurons.inference``)."""

    def __init__(self, model: EmbeddingModel) -> None:
        self.model = model

    async def embed(self, texts: Sequence[str]) -> Vectors:
        embedded = await self.model.embed(list(texts))
        matrix = _unit_rows(np.asarray(embedded.embeddings, dtype=np.float32))
        truncated = _flags(getattr(embedded, "truncated", None), len(texts))
        return Vectors(matrix, str(self.model.name), str(self.model.digest), truncated)


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (the model already normalises; this keeps the dot-product
    scores cosines whatever a future implementation answers). A zero row stays zero."""
    if matrix.ndim != 2:
        raise ValueError(f"expected one vector per text, got an array of shape {matrix.shape}")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit: np.ndarray = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
    return unit


def _flags(truncated: Any, count: int) -> tuple[bool, ...]:
    """Per text, whether it was truncated; the service may say it per text or for all."""
    if isinstance(truncated, list | tuple):
        return tuple(bool(t) for t in truncated)
    return (bool(truncated),) * count if count == 1 else ()
