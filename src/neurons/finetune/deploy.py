"""Between a job and the neurons: fetching the base model's GGUF, deploying the trained adapter.

Both go through the Ollama API only, as model sync does (:mod:`neurons.network.sync`):

- **fetch**: ``/api/show`` on a healthy node holding the base model names its weights blob;
  the blob is streamed (an embedded neuron's ``GET /api/blobs``, or a real Ollama's models
  directory named by its ``models_dir`` label) into the fine-tuning cache, verified against
  its digest on the way, and kept under that digest, so the next job on the same base starts
  at once.
- **deploy**: on each target node the adapter is uploaded with ``POST /api/blobs/<digest>``
  and the model is built with ``/api/create`` ``{"model": target, "from": base, "adapters":
  {"adapter.gguf": digest}}``; it inherits the base's template, system prompt and parameters.
  A target lacking the base model gets a copy first (model sync). Each node's outcome is
  reported; one failing node does not undo the others.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neurons.client import NodeClient
from neurons.errors import (
    NeuronsError,
)
from neurons.network.health import HealthMonitor
from neurons.network.routing import NodeView
from neurons.network.sync import (
    copy_model,
    model_recipe,
    node_models_dir,
    open_blob,
    verified_chunks,
)
from neurons.ollama.names import canonical_name, digest_to_filename, file_digest

__all__ = ["BaseModelFile", "deploy_adapter", "fetch_base_model"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaseModelFile:
    """The base model's weights on this machine: the GGUF, its digest, where it came from."""

    path: Path
    digest: str
    node: str
    downloaded: bool


async def fetch_base_model(monitor: HealthMonitor, model: str, cache_dir: Path) -> BaseModelFile:
    """The GGUF of ``model``, from the first healthy node holding it (cached by digest)."""
    if not monitor.views:
        await monitor.check_all()
    view = monitor.targets(model)[0]
    source = NodeClient(view.url, name=view.name, client=monitor.http)
    recipe = model_recipe(model, await source.show(model))
    digest = recipe.files["model.gguf"]
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / digest_to_filename(digest)
    if path.is_file():
        return BaseModelFile(path, digest, view.name, downloaded=False)
    chunks, _ = await open_blob(source, digest, node_models_dir(view))
    partial = path.with_name(path.name + f".partial-{os.getpid()}")
    checked = verified_chunks(chunks, digest)  # SyncError before the file is kept
    try:
        with partial.open("wb") as handle:
            async for chunk in checked:
                await asyncio.to_thread(handle.write, chunk)
        partial.replace(path)
    finally:
        await checked.aclose()
        await chunks.aclose()
        partial.unlink(missing_ok=True)
    log.info("fetched %s (%s) from %s into %s", model, digest, view.name, path)
    return BaseModelFile(path, digest, view.name, downloaded=True)


async def _deploy_one(
    monitor: HealthMonitor,
    view: NodeView,
    *,
    base: str,
    target: str,
    adapter: Path,
    digest: str,
) -> dict[str, Any]:
    client = NodeClient(view.url, name=view.name, client=monitor.http)
    outcome: dict[str, Any] = {"node": view.name}
    try:
        if not any(_same(base, name) for name in view.models):
            holder = monitor.targets(base)[0]
            source = NodeClient(holder.url, name=holder.name, client=monitor.http)
            await copy_model(source, client, base, source_models_dir=node_models_dir(holder))
            outcome["copied_base_from"] = holder.name
        outcome["uploaded"] = await client.push_blob(digest, adapter)
        body = {"model": target, "from": base, "adapters": {"adapter.gguf": digest}}
        async for _ in client.create(body):
            pass
        outcome["status"] = "success"
    except NeuronsError as exc:
        outcome.update(status="error", error=str(exc))
    return outcome


def _same(a: str, b: str) -> bool:
    return canonical_name(a) == canonical_name(b)


async def deploy_adapter(
    monitor: HealthMonitor,
    *,
    base: str,
    target: str,
    adapter: Path,
    nodes: Sequence[str] = (),
) -> dict[str, Any]:
    """Create ``target`` = ``base`` + the adapter GGUF on the nodes named (default: every
    healthy node holding ``base``). The answer lists each node's outcome; it raises only when
    no node could be asked at all."""
    if not monitor.views:
        await monitor.check_all()
    views = monitor.targets(base, nodes)
    digest = await asyncio.to_thread(file_digest, adapter)
    outcomes = await asyncio.gather(
        *(
            _deploy_one(monitor, v, base=base, target=target, adapter=adapter, digest=digest)
            for v in views
        )
    )
    monitor.note_inventory_changed()
    return {
        "model": target,
        "from": base,
        "adapter_digest": digest,
        "adapter_bytes": adapter.stat().st_size,
        "nodes": {o["node"]: o for o in outcomes},
    }
