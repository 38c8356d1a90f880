"""The control plane's door: every request but ``/api/health`` shows a key, the key's scope
must cover the route, and its limits must have room. One pure ASGI middleware, so the cost on
the request path is a hash, a few dictionary lookups and the limiter (measured by
``benchmarks/gateway_overhead.py --auth``).

- The key comes as ``Authorization: Bearer <key>`` (what the ollama and OpenAI clients send)
  or ``X-API-Key``.
- A refusal answers in its surface's shape (:mod:`neurons.api.surfaces`): 401 without a valid
  key, 403 past the key's scope, 429 with ``Retry-After`` past a limit.
- The caller (:class:`~neurons.auth.service.Principal`) goes into the request's state, where
  the gateways look up which models it may use (:mod:`neurons.auth.context`).
- Tokens a key spends are read from the Ollama-API answers as they pass (the node's
  ``prompt_eval_count`` + ``eval_count``); the OpenAI gateway, which parses its answers
  anyway, adds them to the request's :class:`Usage` itself.
- Every mutating call, refused or not, is written to the audit trail before its last byte
  goes out, so a client that reads the trail right after its call finds it.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from neurons.api.surfaces import error_response
from neurons.auth.context import Usage
from neurons.auth.keys import presented_secret
from neurons.auth.scopes import INFERENCE_ROUTES, is_mutating, required_scope
from neurons.auth.service import AuthService, Principal
from neurons.errors import NeuronsError, RateLimitError

__all__ = ["AccessMiddleware"]

_PROMPT_COUNT = re.compile(rb'"prompt_eval_count":\s*(\d+)')
_EVAL_COUNT = re.compile(rb'"eval_count":\s*(\d+)')
# How much of a mutating call's JSON body is kept to name its target in the audit trail.
_AUDIT_BODY_BYTES = 64 * 1024


class AccessMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        path: str = scope["path"]
        needed = required_scope(method, path)
        auth: AuthService | None = getattr(scope["app"].state, "auth", None)
        if needed is None or auth is None:
            await self.app(scope, receive, send)
            return
        audited = is_mutating(method, path)
        principal: Principal | None = None
        try:
            shown = presented_secret(scope["headers"])
            principal = auth.authenticate(None if shown is None else shown.decode("latin-1"))
            principal.check_scope(needed)
            limited = await auth.admit_async(principal, time.time())
        except NeuronsError as exc:
            limited_out = isinstance(exc, RateLimitError)
            headers = (
                {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimitError) else None
            )
            if limited_out and principal is not None and principal.key_id is not None:
                metrics = getattr(scope["app"].state, "metrics", None)
                if metrics is not None:
                    metrics.keys.refused(principal.name)
            if audited:
                actor = principal.name if principal is not None else "anonymous"
                head = await _read_head(receive)
                await self._audit(auth, actor, method, path, head, exc.http_status, exc.message)
            await error_response(path, exc, headers)(scope, receive, send)
            return

        state = scope.setdefault("state", {})
        state["principal"] = principal
        metered = principal.key_id is not None
        as_spent = metered and auth.charges_as_spent  # else charged once, by auth.finish
        usage = state["usage"] = Usage(
            charge=(lambda spent: auth.charge(principal, spent, time.time())) if as_spent else None
        )
        scan = metered and path in INFERENCE_ROUTES
        body = bytearray()
        status = 500
        pending = b""

        async def receive_and_keep() -> Message:
            message = await receive()
            if message["type"] == "http.request" and len(body) < _AUDIT_BODY_BYTES:
                body.extend(message.get("body", b"")[: _AUDIT_BODY_BYTES - len(body)])
            return message

        async def send_and_count(message: Message) -> None:
            nonlocal status, pending
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                last = not message.get("more_body", False)
                if scan:
                    chunk = pending + message.get("body", b"")
                    done, _, pending = chunk.rpartition(b"\n")
                    if last:
                        done, pending = chunk, b""
                    if done:
                        _count(done, usage)
                if last:
                    # Before the last byte goes out: a client's next request must already
                    # find this one counted and audited.
                    await settle()
                    if audited:
                        await self._audit(auth, principal.name, method, path, body, status, None)
            await send(message)

        settled = False

        async def settle() -> None:
            nonlocal settled
            if settled:
                return
            settled = True
            if auth.charges_as_spent:
                if limited:
                    auth.release(principal)
            elif limited or usage.tokens:
                # Shielded: a client gone mid-answer cancels this task, and a place not given
                # back would stay counted (in the database, by every control plane).
                await asyncio.shield(auth.finish(principal, limited, usage.tokens, time.time()))
            if metered:
                auth.record_use(principal, usage.tokens, time.time())
                metrics = getattr(scope["app"].state, "metrics", None)
                if metrics is not None:
                    metrics.keys.request(principal.name, status, usage.tokens)

        try:
            await self.app(scope, receive_and_keep if audited else receive, send_and_count)
        finally:
            await settle()

    @staticmethod
    async def _audit(
        auth: AuthService,
        actor: str,
        method: str,
        path: str,
        body: bytes | bytearray,
        status: int,
        error: str | None,
    ) -> None:
        detail: dict[str, Any] = {"method": method, "path": path}
        if error is not None:
            detail["error"] = error
        await asyncio.to_thread(
            auth.record_audit, actor, f"{method} {path}", _target(path, body), status, detail
        )


async def _read_head(receive: Receive) -> bytes:
    """The first bytes of a refused call's body, enough to name its target."""
    head = bytearray()
    while len(head) < _AUDIT_BODY_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            break
        head.extend(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return bytes(head[:_AUDIT_BODY_BYTES])


def _count(data: bytes, usage: Usage) -> None:
    prompt = _PROMPT_COUNT.search(data)
    completion = _EVAL_COUNT.search(data)
    if prompt or completion:
        usage.add(
            int(prompt.group(1)) if prompt else 0, int(completion.group(1)) if completion else 0
        )


def _target(path: str, body: bytes | bytearray) -> str:
    """What a call acted on: the model or name its JSON body names, else its path."""
    if body[:1] == b"{":
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if isinstance(data, dict):
            if isinstance(data.get("destination"), str) and isinstance(data.get("source"), str):
                return f"{data['source']} -> {data['destination']}"
            for field in ("model", "name", "url", "node"):
                value = data.get(field)
                if isinstance(value, str) and value:
                    return value[:200]
    return path
