"""OpenAI's error envelope, and the one exception the OpenAI layer raises for a refused request.

Kept apart from :mod:`neurons.network.openai_compat` so that :mod:`neurons.network.openai_tools`
can raise it too without an import cycle; ``openai_compat`` re-exports every name here.
"""

from __future__ import annotations

from typing import Any

__all__ = ["OpenAIRequestError", "bad", "error_body", "sse_error"]


def _error_type(status: int) -> str:
    return {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")


def error_body(message: str, status: int, param: str | None = None) -> dict[str, Any]:
    """The OpenAI error envelope; ``type`` follows the HTTP status as in Ollama's ``NewError``.

    ``param`` names the request field at fault, as OpenAI does for a field it rejects.
    """
    error = {"message": message, "type": _error_type(status), "param": param, "code": None}
    return {"error": error}


def sse_error(message: str) -> dict[str, Any]:
    """The object to send as an SSE event when a node fails after the stream has started."""
    return error_body(message, 500)


class OpenAIRequestError(Exception):
    """A request the OpenAI layer refuses; ``body()`` is what goes back with ``status``."""

    def __init__(self, message: str, status: int = 400, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.param = param
        self.type = _error_type(status)

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.status, self.param)


def bad(message: str, param: str | None = None) -> OpenAIRequestError:
    """A 400 ``invalid_request_error``."""
    return OpenAIRequestError(message, 400, param)
