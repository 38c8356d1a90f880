"""Byte-for-byte pass-through of Ollama-API requests to a neuron.

Streams both ways without buffering, so NDJSON tokens reach the client as the neuron writes
them; when the client goes away the upstream response is closed, which stops the neuron's
generation too.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

__all__ = ["OVERHEAD_HEADER", "forward"]

OVERHEAD_HEADER = "X-Neurons-Overhead-Ms"
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "host",
    "content-length",
}


def _headers(items: httpx.Headers | list[tuple[str, str]]) -> dict[str, str]:
    pairs = items.multi_items() if isinstance(items, httpx.Headers) else items
    return {k: v for k, v in pairs if k.lower() not in _HOP_BY_HOP}


async def forward(
    client: httpx.AsyncClient, base_url: str, request: Request, node: str
) -> Response:
    started = time.perf_counter()
    url = base_url.rstrip("/") + request.url.path
    if request.url.query:
        url += "?" + request.url.query

    async def body() -> AsyncIterator[bytes]:
        async for chunk in request.stream():
            yield chunk

    upstream_request = client.build_request(
        request.method,
        url,
        headers=_headers(list(request.headers.items())),
        content=body() if request.method not in ("GET", "HEAD") else None,
    )
    try:
        upstream = await client.send(upstream_request, stream=True)
    except httpx.HTTPError as exc:
        return JSONResponse(
            {"error": f"neuron {node} at {base_url} is unreachable: {exc or type(exc).__name__}"},
            status_code=502,
        )
    headers = _headers(upstream.headers)
    headers["X-Neurons-Node"] = node
    headers[OVERHEAD_HEADER] = f"{(time.perf_counter() - started) * 1000:.2f}"
    return StreamingResponse(
        upstream.aiter_raw(),
        status_code=upstream.status_code,
        headers=headers,
        background=BackgroundTask(upstream.aclose),
    )
