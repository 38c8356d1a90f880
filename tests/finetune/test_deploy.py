"""Fetching a base model's GGUF from a real neuron through the Ollama API (``/api/show`` +
``GET /api/blobs``): verified against its digest, kept under it, and not fetched twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

from neurons.config import Settings
from neurons.finetune.deploy import BaseModelFile, fetch_base_model
from neurons.network.manager import NetworkManager
from neurons.neuron.process import NeuronProcess
from neurons.ollama.names import file_digest
from neurons.store import open_store


def test_fetch_base_model_verifies_and_caches(neuron: NeuronProcess, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", ollama_base_url="")
    store = open_store(settings.resolved_database_url)
    store.nodes.upsert("n1", neuron.url, "embedded")
    cache = tmp_path / "cache"

    async def fetch_twice() -> tuple[BaseModelFile, BaseModelFile]:
        network = NetworkManager(store, settings)
        try:
            first = await fetch_base_model(network.monitor, "smollm2:135m", cache)
            second = await fetch_base_model(network.monitor, "smollm2:135m", cache)
            return first, second
        finally:
            await network.aclose()

    try:
        first, second = asyncio.run(fetch_twice())
    finally:
        store.close()
    assert first.downloaded and not second.downloaded
    path = first.path
    assert path == second.path and first.node == "n1"
    assert file_digest(path) == first.digest
    assert path.name == first.digest.replace(":", "-")
    assert [p.name for p in cache.iterdir()] == [path.name]  # no partial file left behind
