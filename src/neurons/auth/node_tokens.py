"""Node tokens on both sides of the wire.

- A neuron started with a token (``serve-node --token T``, ``NEURONS_NODE_TOKEN``) refuses
  every request without it: :class:`NodeTokenMiddleware`, 401 in Ollama's shape.
- The control plane sends each node its token: :class:`NodeTokens` maps a node's origin
  (scheme, host, port) to its token. It is an ``httpx.Auth``, so every call made with the
  shared httpx client carries the right ``Authorization`` header without its caller knowing,
  and gives the aiohttp request path the headers to send (:meth:`NodeTokens.headers`).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Generator, Iterable, Mapping
from typing import Protocol
from urllib.parse import urlsplit

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from neurons.auth.keys import presented_secret
from neurons.auth.sealing import Sealer

__all__ = ["NodeTokenMiddleware", "NodeTokens", "node_http_client", "origin"]

_JSON = {"content-type": "application/json"}


class HasSealedToken(Protocol):
    @property
    def url(self) -> str: ...

    @property
    def token_sealed(self) -> str | None: ...


def origin(url: str) -> str:
    """``http://Host:80/x`` and ``http://host`` are one origin: ``http://host:80``."""
    parts = urlsplit(url)
    scheme = (parts.scheme or "http").lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return f"{scheme}://{(parts.hostname or '').lower()}:{port}"


class NodeTokens(httpx.Auth):
    """Origin → token of the nodes that need one. Reads happen on every node call, writes
    when the registry changes; both on the event loop or under the GIL, so no lock."""

    def __init__(self, tokens: Mapping[str, str] | None = None) -> None:
        self._tokens: dict[str, str] = {}
        self._headers: dict[str, dict[str, str]] = {}
        for url, token in (tokens or {}).items():
            self.set(url, token)

    def set(self, url: str, token: str | None) -> None:
        key = origin(url)
        if token:
            self._tokens[key] = token
            self._headers[key] = {**_JSON, "authorization": f"Bearer {token}"}
        else:
            self._tokens.pop(key, None)
            self._headers.pop(key, None)

    @classmethod
    def from_records(cls, records: Iterable[HasSealedToken], sealer: Sealer) -> NodeTokens:
        """The tokens of registry records (a short-lived process: the CLI)."""
        tokens = cls()
        for record in records:
            if record.token_sealed is not None:
                tokens.set(record.url, sealer.unseal(record.token_sealed))
        return tokens

    def token(self, url: str) -> str | None:
        return self._tokens.get(origin(url))

    def headers(self, url: str) -> dict[str, str]:
        """JSON content type, and the node's token where it has one."""
        return self._headers.get(origin(url), _JSON)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._tokens.get(origin(str(request.url))) if self._tokens else None
        if token is not None and "authorization" not in request.headers:
            request.headers["Authorization"] = f"Bearer {token}"
        yield request


def node_http_client(tokens: NodeTokens, read_timeout_s: float | None = None) -> httpx.AsyncClient:
    """The httpx client the control plane's services share for node calls."""
    return httpx.AsyncClient(
        auth=tokens,
        timeout=httpx.Timeout(10.0, read=read_timeout_s),
        limits=httpx.Limits(
            max_connections=512, max_keepalive_connections=128, keepalive_expiry=3.0
        ),
    )


class NodeTokenMiddleware:
    """The neuron's door: ``Authorization: Bearer T`` or ``X-API-Key: T``, else 401."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._presented(scope["headers"]):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"error": "this neuron requires its node token"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b"Bearer"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _presented(self, headers: list[tuple[bytes, bytes]]) -> bool:
        shown = presented_secret(headers)
        return shown is not None and hmac.compare_digest(shown, self._token)
