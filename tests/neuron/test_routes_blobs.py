"""The neuron's blob routes in process (ASGI transport, no engine loads), with NodeClient.

``GET /api/blobs/{digest}`` is a neurons extension that model sync reads blobs through; the
digest becomes a file path, so whatever does not parse as ``sha256:<64 hex>`` must not reach
the file system.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from neurons.client import NodeClient
from neurons.config import Settings
from neurons.errors import BlobNotFoundError, InvalidRequestError
from neurons.neuron.app import create_neuron_app

DATA = bytes(range(256)) * 5000  # 1.28 MB: more than one 1 MiB chunk
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()


@pytest.fixture()
def app(tmp_path: Path) -> Iterator[FastAPI]:
    settings = Settings(home=tmp_path / "home", import_default_models=False, ollama_base_url="")
    created = create_neuron_app(settings)
    try:
        yield created
    finally:
        created.state.neuron.close()


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://neuron")


async def _pieces(data: bytes, size: int = 100_000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_get_blob_streams_the_file_uploaded_before(app: FastAPI) -> None:
    async def scenario() -> tuple[httpx.Response, bytes, int | None]:
        async with _client(app) as http:
            node = NodeClient("http://neuron", name="a", client=http)
            assert not await node.has_blob(DIGEST)
            await node.push_blob_stream(DIGEST, _pieces(DATA))
            assert await node.has_blob(DIGEST)
            raw = await http.get(f"/api/blobs/{DIGEST}")
            stream = node.blob_chunks(DIGEST.replace(":", "-"))  # Ollama accepts both forms
            received = b"".join([chunk async for chunk in stream])
            return raw, received, stream.size

    raw, received, size = asyncio.run(scenario())
    assert raw.status_code == 200
    assert raw.headers["content-type"] == "application/octet-stream"
    assert raw.content == DATA
    assert received == DATA
    assert size == len(DATA)


def test_missing_blob_is_404_like_head(app: FastAPI) -> None:
    missing = "sha256:" + "0" * 64

    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        async with _client(app) as http:
            node = NodeClient("http://neuron", name="a", client=http)
            with pytest.raises(BlobNotFoundError, match="cannot serve blob"):
                [chunk async for chunk in node.blob_chunks(missing)]
            return await http.get(f"/api/blobs/{missing}"), await http.head(f"/api/blobs/{missing}")

    got, head = asyncio.run(scenario())
    assert got.status_code == head.status_code == 404
    assert got.json() == {"error": f'blob "{missing}" not found'}


@pytest.mark.parametrize(
    "digest",
    [
        "sha256:xyz",
        "sha256:" + "a" * 63,
        "md5:" + "a" * 32,
        "..%2F..%2Fetc%2Fpasswd",
        "sha256-" + "a" * 64 + "%2F..",
    ],
)
def test_anything_but_a_digest_never_reaches_the_disk(app: FastAPI, digest: str) -> None:
    async def scenario() -> httpx.Response:
        async with _client(app) as http:
            return await http.get(f"/api/blobs/{digest}")

    response = asyncio.run(scenario())
    assert response.status_code in (400, 404)
    assert "error" in response.json()


def test_push_blob_stream_with_wrong_bytes_is_refused(app: FastAPI) -> None:
    async def scenario() -> None:
        async with _client(app) as http:
            node = NodeClient("http://neuron", name="a", client=http)
            with pytest.raises(InvalidRequestError, match="digest mismatch"):
                await node.push_blob_stream(DIGEST, _pieces(DATA[:-1] + b"?"))
            assert not await node.has_blob(DIGEST)

    asyncio.run(scenario())
