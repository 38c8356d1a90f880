"""One typed async client for any node that speaks the Ollama REST API (an embedded neuron or a
real Ollama server).

Errors become the library's: a refused or timed-out connection is NodeUnreachableError, a 404
is ModelNotFoundError (Ollama answers 404 only for missing models and blobs), any other error
status is NodeError carrying the node's own ``error`` text. Reading a blob is the exception:
there a 404 or 405 is BlobNotFoundError, because a real Ollama has no ``GET /api/blobs`` and
answers that way for every digest.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from neurons.errors import (
    BlobNotFoundError,
    InvalidRequestError,
    ModelNotFoundError,
    NeuronsError,
    NodeError,
    NodeUnreachableError,
)

__all__ = ["BlobStream", "NodeClient", "error_message", "node_error"]

_CHUNK = 1 << 20


class BlobStream(AsyncIterator[bytes]):
    """The bytes of one blob as they arrive from ``GET /api/blobs/{digest}``.

    ``size`` is the Content-Length, known once the first chunk has been awaited (the request
    is only sent then), so a caller can report progress against it. Breaking off early: call
    :meth:`aclose`, which closes the connection.
    """

    def __init__(self, node: NodeClient, digest: str) -> None:
        self.size: int | None = None
        self._chunks = node._read_blob(digest, self)

    def __aiter__(self) -> BlobStream:
        return self

    async def __anext__(self) -> bytes:
        return await self._chunks.__anext__()

    async def aclose(self) -> None:
        await self._chunks.aclose()


def error_message(body: bytes, fallback: str) -> str:
    """The text of an Ollama error answer: its ``{"error": ...}``, else the body as it is,
    else ``fallback`` (an empty body)."""
    text = body.decode(errors="replace")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and data.get("error"):
        return str(data["error"])
    return text or fallback


def node_error(node: str, status: int, message: str) -> NeuronsError:
    """A node's error answer as the library's error: the one mapping, for this client and
    the operations layer (:mod:`neurons.network.operations`)."""
    if status == 404:
        return ModelNotFoundError(message)
    if status == 400:
        return InvalidRequestError(message)
    return NodeError(f"{node}: {message} (HTTP {status})")


class NodeClient:
    """``async with NodeClient(url) as node: await node.tags()``."""

    def __init__(
        self,
        url: str,
        *,
        name: str | None = None,
        timeout: float = 30.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.name = name or self.url
        self._own = client is None
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(timeout, read=None))

    async def __aenter__(self) -> NodeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own:
            await self._client.aclose()

    # -- plumbing ---------------------------------------------------------------------------

    def _error(self, response: httpx.Response) -> Exception:
        message = error_message(response.content, response.reason_phrase)
        return node_error(self.name, response.status_code, message)

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._client.request(method, self.url + path, **kwargs)
        except httpx.TransportError as exc:
            raise NodeUnreachableError(f"{self.name} is unreachable: {exc}") from exc
        if response.status_code >= 400:
            raise self._error(response)
        return response

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._request(method, path, **kwargs)
        return response.json() if response.content else {}

    async def _stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """NDJSON progress lines; an ``error`` line mid-stream raises NodeError."""
        try:
            async with self._client.stream("POST", self.url + path, json=body) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise self._error(response)
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    item = json.loads(line)
                    if isinstance(item, dict) and item.get("error"):
                        raise NodeError(f"{self.name}: {item['error']}")
                    yield item
        except httpx.TransportError as exc:
            raise NodeUnreachableError(f"{self.name} is unreachable: {exc}") from exc

    # -- the Ollama API ---------------------------------------------------------------------

    async def version(self) -> str:
        return str((await self._json("GET", "/api/version")).get("version", ""))

    async def tags(self) -> list[dict[str, Any]]:
        return list((await self._json("GET", "/api/tags")).get("models") or [])

    async def ps(self) -> list[dict[str, Any]]:
        return list((await self._json("GET", "/api/ps")).get("models") or [])

    async def show(self, model: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._json("POST", "/api/show", json={"model": model})
        return result

    async def generate(self, model: str, prompt: str, **body: Any) -> dict[str, Any]:
        payload = {"model": model, "prompt": prompt, "stream": False, **body}
        result: dict[str, Any] = await self._json("POST", "/api/generate", json=payload)
        return result

    async def chat(self, model: str, messages: list[dict[str, Any]], **body: Any) -> dict[str, Any]:
        payload = {"model": model, "messages": messages, "stream": False, **body}
        result: dict[str, Any] = await self._json("POST", "/api/chat", json=payload)
        return result

    async def embed(self, model: str, inputs: list[str]) -> list[list[float]]:
        result = await self._json("POST", "/api/embed", json={"model": model, "input": inputs})
        return [list(map(float, v)) for v in result.get("embeddings") or []]

    def pull(self, model: str, *, insecure: bool = False) -> AsyncIterator[dict[str, Any]]:
        body = {"model": model, "stream": True, "insecure": insecure}
        return self._stream("/api/pull", body)

    def create(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        return self._stream("/api/create", {**body, "stream": True})

    async def delete(self, model: str) -> None:
        await self._request("DELETE", "/api/delete", json={"model": model})

    async def copy(self, source: str, destination: str) -> None:
        await self._request(
            "POST", "/api/copy", json={"source": source, "destination": destination}
        )

    async def has_blob(self, digest: str) -> bool:
        try:
            await self._request("HEAD", f"/api/blobs/{digest}")
        except ModelNotFoundError:
            return False
        return True

    async def push_blob(self, digest: str, path: Path) -> bool:
        """Upload ``path`` as blob ``digest`` unless the node has it; True when uploaded."""
        if await self.has_blob(digest):
            return False

        async def chunks() -> AsyncIterator[bytes]:
            with path.open("rb") as handle:
                while chunk := handle.read(_CHUNK):
                    yield chunk

        await self._request("POST", f"/api/blobs/{digest}", content=chunks())
        return True

    def blob_chunks(self, digest: str) -> BlobStream:
        """Stream blob ``digest`` (a neurons extension; see the module docstring for 404)."""
        return BlobStream(self, digest)

    async def _read_blob(self, digest: str, stream: BlobStream) -> AsyncGenerator[bytes, None]:
        try:
            async with self._client.stream("GET", f"{self.url}/api/blobs/{digest}") as response:
                if response.status_code in (404, 405):
                    await response.aread()
                    raise BlobNotFoundError(
                        f"{self.name} cannot serve blob {digest} "
                        f"(HTTP {response.status_code}: {response.text.strip()[:200]})"
                    )
                if response.status_code >= 400:
                    await response.aread()
                    raise self._error(response)
                length = response.headers.get("content-length")
                stream.size = int(length) if length and length.isdigit() else None
                async for chunk in response.aiter_bytes(_CHUNK):
                    yield chunk
        except httpx.TransportError as exc:
            raise NodeUnreachableError(f"{self.name} is unreachable: {exc}") from exc

    async def push_blob_stream(self, digest: str, chunks: AsyncIterator[bytes]) -> None:
        """Upload ``chunks`` as blob ``digest``; the node checks the digest (400 on mismatch)."""
        await self._request("POST", f"/api/blobs/{digest}", content=chunks)
