"""Small helpers shared by the Ollama-API route modules: JSON bodies, timestamps, NDJSON."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse

from neurons.errors import InvalidRequestError, NeuronsError

__all__ = [
    "NDJSON",
    "error_line",
    "error_response",
    "line",
    "ndjson_response",
    "now_rfc3339",
    "prepend",
    "read_json",
    "required_model",
    "rfc3339",
    "wants_stream",
]

NDJSON = "application/x-ndjson"


async def read_json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        raise InvalidRequestError("missing request body")
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(f"invalid character in JSON body: {exc.msg}") from exc
    except UnicodeDecodeError as exc:  # bytes in no encoding JSON allows
        raise InvalidRequestError("invalid character in JSON body: not UTF-8") from exc
    if not isinstance(body, dict):
        raise InvalidRequestError("json: cannot unmarshal non-object into request body")
    return body


def required_model(body: dict[str, Any]) -> str:
    """The request's ``model`` (or its deprecated alias ``name``), or Ollama's 400."""
    name = body.get("model") or body.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequestError("model is required")
    return name


def wants_stream(body: dict[str, Any]) -> bool:
    """Ollama streams unless ``stream`` is explicitly false."""
    return body.get("stream") is not False


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def now_rfc3339() -> str:
    return rfc3339(datetime.now(UTC))


def line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def error_line(exc: BaseException) -> bytes:
    message = exc.message if isinstance(exc, NeuronsError) else str(exc) or type(exc).__name__
    return line({"error": message})


def ndjson_response(chunks: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    """Stream ``chunks`` as NDJSON; an error after the first byte becomes a final
    ``{"error": ...}`` line, as Ollama does (the status line is already 200)."""

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in chunks:
                yield line(chunk)
        except NeuronsError as exc:
            yield error_line(exc)

    return StreamingResponse(body(), media_type=NDJSON)


async def prepend(
    first: dict[str, Any], rest: AsyncIterator[dict[str, Any]]
) -> AsyncIterator[dict[str, Any]]:
    yield first
    async for item in rest:
        yield item


def error_response(exc: NeuronsError) -> JSONResponse:
    return JSONResponse({"error": exc.message}, status_code=exc.http_status)
