"""The model catalog: Ollama library models described by facts, shipped as package data.

``catalog.json`` holds what the model cards say (parameters, file size of Ollama's default
quantisation, context length, capabilities, architecture shape). Nothing in it is a score:
performance comes from :mod:`neurons.library.performance`, measured or estimated by a
documented formula, never typed in.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from neurons.hardware.gguf import ModelProfile

__all__ = [
    "CATEGORIES",
    "SIZE_CLASSES",
    "ArchitectureFacts",
    "CatalogModel",
    "load_catalog",
    "size_class",
]

CATEGORIES: tuple[str, ...] = ("general", "code", "vision", "math", "embedding", "reasoning")
Category = Literal["general", "code", "vision", "math", "embedding", "reasoning"]
Capability = Literal["completion", "tools", "vision", "embedding", "thinking", "insert"]

# Size classes by parameter count (the boundaries): upper bounds, exclusive.
SIZE_CLASSES: dict[str, tuple[float, float]] = {
    "tiny": (0, 1e9),
    "small": (1e9, 4e9),
    "medium": (4e9, 14e9),
    "large": (14e9, 40e9),
    "huge": (40e9, math.inf),
}


def size_class(parameters: int) -> str:
    for name, (low, high) in SIZE_CLASSES.items():
        if low <= parameters < high:
            return name
    return "huge"


class ArchitectureFacts(BaseModel):
    """The shape of the network, as its GGUF header / config.json states it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str
    block_count: int | None = None
    embedding_length: int | None = None
    head_count: int | None = None
    head_count_kv: int | None = None
    key_length: int | None = None
    value_length: int | None = None
    feed_forward_length: int | None = None
    vocab_size: int | None = None
    sliding_window: int | None = 0
    swa_pattern: int | None = 0


class CatalogModel(BaseModel):
    """One Ollama library model (a name:tag), with facts from its model card."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str
    family: str
    description: str
    parameters: int = Field(gt=0)
    parameter_size: str
    quantization: str
    file_size_bytes: int = Field(gt=0)
    context_length: int = Field(gt=0)
    capabilities: tuple[Capability, ...]
    categories: tuple[Category, ...]
    license: str | None = None
    released: str | None = None
    architecture: ArchitectureFacts | None = None
    sources: tuple[str, ...] = ()
    unverified: tuple[str, ...] = ()

    @property
    def size_class(self) -> str:
        return size_class(self.parameters)

    @property
    def base_name(self) -> str:
        return self.name.split(":", 1)[0]

    def profile(self) -> ModelProfile | None:
        """A memory-estimator profile built from the catalog facts (no GGUF needed), or None
        when the architecture facts are incomplete."""
        arch = self.architecture
        if arch is None:
            return None
        blocks, embedding = arch.block_count, arch.embedding_length
        heads, heads_kv = arch.head_count, arch.head_count_kv
        if not (blocks and embedding and heads and heads_kv):
            return None
        head_dim = embedding // heads
        vocab = arch.vocab_size or 32000
        # Token embeddings are the one big tensor outside the blocks; the rest splits evenly.
        embed_bytes = self.file_size_bytes * vocab * embedding // max(self.parameters, 1)
        layer_total = max(self.file_size_bytes - embed_bytes, 0)
        window = arch.sliding_window or 0
        pattern = arch.swa_pattern or 0
        swa_layers: tuple[int, ...] = ()
        if window:
            swa_layers = tuple(i for i in range(blocks) if not pattern or (i + 1) % pattern != 0)
        return ModelProfile(
            path=self.name,
            file_size=self.file_size_bytes,
            architecture=arch.name,
            parameter_count=self.parameters,
            quantization=self.quantization,
            block_count=blocks,
            head_count=heads,
            head_count_kv=heads_kv,
            embedding_length=embedding,
            feed_forward_length=arch.feed_forward_length or 4 * embedding,
            key_length=arch.key_length or head_dim,
            value_length=arch.value_length or head_dim,
            context_length=self.context_length,
            vocab_size=vocab,
            sliding_window=window,
            swa_layers=swa_layers,
            chat_template=None,
            tensor_bytes=self.file_size_bytes,
            layer_bytes=tuple([layer_total // blocks] * blocks),
            output_bytes=embed_bytes,
        )


class _CatalogFile(BaseModel):
    version: int
    models: list[CatalogModel]


@lru_cache(maxsize=1)
def load_catalog() -> tuple[CatalogModel, ...]:
    """The packaged catalog, parsed and validated once per process."""
    text = (resources.files("neurons.library") / "catalog.json").read_text(encoding="utf-8")
    return tuple(_CatalogFile.model_validate(json.loads(text)).models)
