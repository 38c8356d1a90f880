"""The control plane's three surfaces and the error shape each answers in, chosen by path:

- the management API (``/api/ai/...``): seed 002's envelope
  ``{"success": false, "error", "error_code", "timestamp"}``;
- the OpenAI API (``/v1/...``): OpenAI's error object;
- everything else (the Ollama API, ``/docs``, ``/openapi.json``): Ollama's ``{"error": ...}``.

Middlewares that refuse a request before any route runs (keys, limits, body size) answer
through :func:`error_response`, so a refusal looks like the surface the client speaks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response

from neurons.errors import NeuronsError

__all__ = ["error_body", "error_response"]

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}
_OPENAI_CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded"}


def error_body(path: str, exc: NeuronsError) -> dict[str, Any]:
    """The error object for ``exc`` in the shape of the surface ``path`` belongs to."""
    status = exc.http_status
    if path.startswith("/api/ai/") or path == "/api/ai":
        return {
            "success": False,
            "error": exc.message,
            "error_code": exc.error_code,
            "timestamp": datetime.now(UTC).isoformat(),
        }
    if path.startswith("/v1/") or path == "/v1":
        error = {
            "message": exc.message,
            "type": _OPENAI_TYPES.get(status, "api_error"),
            "param": None,
            "code": _OPENAI_CODES.get(status),
        }
        return {"error": error}
    return {"error": exc.message}


def error_response(
    path: str, exc: NeuronsError, headers: Mapping[str, str] | None = None
) -> Response:
    content = json.dumps(error_body(path, exc), separators=(",", ":")).encode()
    return Response(content, exc.http_status, dict(headers or {}), media_type="application/json")
