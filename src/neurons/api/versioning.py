"""The management API's version: ``/api/ai/v1/<rest>`` is ``/api/ai/<rest>``, and every answer
under ``/api/ai`` says which version it speaks (``X-Neurons-API-Version: 1``).

The unversioned paths are the seed's and keep working; a client that wants to pin the
contract uses ``/api/ai/v1/...``. A later incompatible version would get its own prefix, and
the header tells a client which one answered.

One pure ASGI middleware, added outermost: the path is rewritten before anything else looks
at it, so the access check (:mod:`neurons.api.access`, which decides a key's scope by path)
and the routes see ``/api/ai/<rest>``, and its refusals (401, 403, 429) carry the header too.

>>> _rewrite("/api/ai/v1/network/status"), _rewrite("/api/ai/v1"), _rewrite("/api/ai/v1x")
('/api/ai/network/status', '/api/ai', None)
>>> _rewrite("/api/ai/network/status"), _rewrite("/api/tags")
(None, None)
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["API_VERSION", "API_VERSION_HEADER", "APIVersionMiddleware"]

API_VERSION = "1"
API_VERSION_HEADER = "X-Neurons-API-Version"

_ROOT = "/api/ai"
_VERSIONED = f"{_ROOT}/v{API_VERSION}"
_HEADER = (API_VERSION_HEADER.lower().encode("latin-1"), API_VERSION.encode("latin-1"))


def _rewrite(path: str) -> str | None:
    """The unversioned path of a ``/api/ai/v1`` path; None for any other path."""
    if path == _VERSIONED:
        return _ROOT
    if path.startswith(_VERSIONED + "/"):
        return _ROOT + path[len(_VERSIONED) :]
    return None


def _is_management(path: str) -> bool:
    return path == _ROOT or path.startswith(_ROOT + "/")


class APIVersionMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_management(scope["path"]):
            await self.app(scope, receive, send)
            return
        rewritten = _rewrite(scope["path"])
        if rewritten is not None:
            scope = {**scope, "path": rewritten}
            raw = scope.get("raw_path")
            if isinstance(raw, bytes):  # still percent-encoded: cut the prefix, keep the rest
                cut = _rewrite(raw.decode("latin-1"))
                scope["raw_path"] = None if cut is None else cut.encode("latin-1")

        async def send_with_version(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers") or [] if h[0].lower() != _HEADER[0]]
                message = {**message, "headers": [*headers, _HEADER]}
            await send(message)

        await self.app(scope, receive, send_with_version)
