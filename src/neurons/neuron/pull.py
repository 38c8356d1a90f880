"""Pulling models from a registry that speaks Ollama's registry protocol (Docker registry v2).

    GET {scheme}://{host}/v2/{namespace}/{model}/manifests/{tag}
    GET {scheme}://{host}/v2/{namespace}/{model}/blobs/{digest}

Every blob is streamed into a temp file, verified against its digest and only then renamed;
the manifest is written last. Any failure removes what this pull wrote, so nothing is left
half-written and the model does not appear.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from neurons.errors import DigestMismatchError, NeuronsError, RegistryError
from neurons.neuron.modelstore import MANIFEST_MEDIA_TYPE, Manifest, ModelStore
from neurons.ollama.names import ModelName

__all__ = ["pull_model"]


def _base_url(name: ModelName, insecure: bool) -> str:
    scheme = "http" if insecure else "https"
    return f"{scheme}://{name.host}"


async def pull_model(
    store: ModelStore,
    model: str,
    insecure: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """Yield Ollama's pull progress objects; raise :class:`RegistryError` on failure."""
    name = ModelName.parse(model)
    base = _base_url(name, insecure)
    repo = f"{name.namespace}/{name.model}"
    written: list[str] = []
    yield {"status": "pulling manifest"}
    async with httpx.AsyncClient(
        transport=transport, timeout=httpx.Timeout(30.0, read=300.0), follow_redirects=True
    ) as client:
        try:
            response = await client.get(
                f"{base}/v2/{repo}/manifests/{name.tag}",
                headers={"Accept": MANIFEST_MEDIA_TYPE},
            )
        except httpx.HTTPError as exc:
            raise RegistryError(
                f"pull model manifest: cannot reach registry {base}: {exc or type(exc).__name__}"
            ) from exc
        if response.status_code == 404:
            raise RegistryError("pull model manifest: file does not exist")
        if response.status_code >= 400:
            raise RegistryError(f"pull model manifest: registry answered {response.status_code}")
        try:
            manifest = Manifest.from_bytes(response.content)
        except (ValueError, KeyError, NeuronsError) as exc:
            raise RegistryError(f"pull model manifest: invalid manifest: {exc}") from exc
        try:
            for layer in (manifest.config, *manifest.layers):
                if store.has_blob(layer.digest):
                    yield _progress(layer.digest, layer.size, layer.size)
                    continue
                async for progress in _pull_blob(
                    client, store, base, repo, layer.digest, layer.size
                ):
                    yield progress
                written.append(layer.digest)
            yield {"status": "verifying sha256 digest"}
            yield {"status": "writing manifest"}
            store.write_manifest(name, manifest)
        except BaseException:
            used = store.referenced_digests()
            for digest in written:
                if digest not in used:
                    store.blob_path(digest).unlink(missing_ok=True)
            raise
    yield {"status": "success"}


def _progress(digest: str, total: int, completed: int) -> dict[str, Any]:
    short = digest.split(":", 1)[1][:12]
    return {"status": f"pulling {short}", "digest": digest, "total": total, "completed": completed}


async def _pull_blob(
    client: httpx.AsyncClient, store: ModelStore, base: str, repo: str, digest: str, size: int
) -> AsyncIterator[dict[str, Any]]:
    writer = store.blob_writer()
    try:
        async with client.stream("GET", f"{base}/v2/{repo}/blobs/{digest}") as response:
            if response.status_code >= 400:
                raise RegistryError(f"pull blob {digest}: registry answered {response.status_code}")
            yield _progress(digest, size, 0)
            reported = 0
            async for chunk in response.aiter_bytes(1 << 20):
                writer.write(chunk)
                if writer.size - reported >= (8 << 20):
                    reported = writer.size
                    yield _progress(digest, size, writer.size)
        writer.commit(digest)
        yield _progress(digest, size, writer.size)
    except DigestMismatchError as exc:
        raise RegistryError(f"pull blob: {exc}") from exc
    except httpx.HTTPError as exc:
        writer.abort()
        raise RegistryError(f"pull blob {digest}: {exc or type(exc).__name__}") from exc
    except BaseException:
        writer.abort()
        raise
