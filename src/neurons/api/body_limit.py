"""The control plane's cap on request bodies (``Settings.max_body_bytes``), one pure ASGI
middleware so a request within it pays a header scan and nothing more.

- A ``Content-Length`` over the cap is refused before a byte of the body is read.
- A body without one (chunked) is counted as it streams and refused once over: the route
  reading it stops there, and whatever it would have answered gives way to the 413.
- Blob uploads (``/api/blobs/sha256:...``: model files of hundreds of MB, streamed to disk and
  checked against their digest) are exempt.

The 413 answers in the shape of the surface the path belongs to (:mod:`neurons.api.surfaces`).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from neurons.api.surfaces import error_response
from neurons.errors import PayloadTooLargeError

__all__ = ["BodyLimitMiddleware"]

_CONTENT_LENGTH = b"content-length"
_EXEMPT = ("/api/blobs/",)


class _Overflow(Exception):
    """Raised into the route reading a body past the cap (not a NeuronsError: no handler of
    the app may turn it into an answer of its own)."""


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(_EXEMPT):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope["headers"])
        if declared is not None:
            if declared > self.max_bytes:
                await self._refuse(scope, receive, send, f"{declared} bytes")
                return
            await self.app(scope, receive, send)  # the server reads no more than declared
            return
        await self._counted(scope, receive, send)

    async def _counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = 0
        over = started = False

        async def counting_receive() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    over = True
                    raise _Overflow
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over and not started:
                return  # the route's answer to a body it could not read: the 413 goes instead
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _Overflow:
            if started:
                raise
        if over and not started:
            await self._refuse(scope, receive, send, f"over {self.max_bytes} bytes")

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, size: str) -> None:
        error = PayloadTooLargeError(
            f"request body too large: {size}, the limit is {self.max_bytes} (max_body_bytes)"
        )
        await error_response(scope["path"], error)(scope, receive, send)


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name.lower() == _CONTENT_LENGTH:
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length itself
    return None
