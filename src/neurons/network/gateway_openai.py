"""The OpenAI API on the gateway: ``/v1/chat/completions``, ``/v1/completions``,
``/v1/embeddings`` and ``/v1/models``.

A request for a model only OpenAI-compatible nodes hold is sent to them as it is
(:mod:`neurons.network.openai_nodes`). Any other is translated to the Ollama API
(:mod:`neurons.network.openai_compat`) and sent through the same dispatch as native
requests, so routing, retries before the first byte and the overhead header behave
identically. A chat whose ``tool_choice`` forces a call is answered
with the call the node decoded under a grammar (:mod:`neurons.network.openai_tools`). Streams
become server-sent events; a node that dies mid-stream produces an SSE error event, which the
``openai`` client raises as an APIError.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from neurons.auth.context import Usage, check_model, usage_of, visible_models
from neurons.errors import NeuronsError
from neurons.network import openai_compat as oa
from neurons.network.bounds import Bounds, check_openai
from neurons.network.gateway import (
    NODE_HEADER,
    OVERHEAD_HEADER,
    UPSTREAM_ERRORS,
    Clock,
    Gateway,
    Upstream,
)
from neurons.network.local_models import LOCAL_NODE, local_answer
from neurons.network.openai_inventory import OPENAI

__all__ = ["OpenAIGateway"]

Translate = Callable[[object], dict[str, Any]]
# The OpenAI route of each Ollama route a generation is translated to.
_V1 = {"/api/chat": "/chat/completions", "/api/generate": "/completions"}


class OpenAIGateway:
    ROUTES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
        ("/v1/chat/completions", "chat", ("POST",)),
        ("/v1/completions", "completions", ("POST",)),
        ("/v1/embeddings", "embeddings", ("POST",)),
        ("/v1/models", "models", ("GET",)),
        ("/v1/models/{model:path}", "model", ("GET",)),
    )

    def __init__(self, gateway: Gateway, bounds: Bounds | None = None) -> None:
        self.gateway = gateway
        self.bounds = bounds if bounds is not None else gateway.bounds

    async def chat(self, request: Request) -> Response:
        return await self._generate(request, "/api/chat", oa.chat_request, "chatcmpl")

    async def completions(self, request: Request) -> Response:
        return await self._generate(request, "/api/generate", oa.completion_request, "cmpl")

    async def embeddings(self, request: Request) -> Response:
        clock = Clock()
        try:
            body = await self._body(request)
            passed = await self._passthrough(request, "/v1/embeddings", body, clock)
            if passed is not None:
                return passed
            ollama_body = oa.embedding_request(body)
            encoding = oa.encoding_format(body)
            local = self.gateway.local
            if local is not None and local.serves(ollama_body["model"]):
                return await self._local_embeddings(request, ollama_body, encoding, clock)
            upstream = await self._dispatch(request, "/api/embed", ollama_body, clock)
        except oa.OpenAIRequestError as exc:
            return self._json(exc.body(), clock, exc.status)
        if upstream.status >= 400:
            return self._upstream_error(upstream, clock)
        answer = json.loads(upstream.body or b"{}")
        _spent(request, answer)
        result = oa.embedding_response(answer, model=ollama_body["model"], encoding_format=encoding)
        return self._json(result, clock, node=upstream.node.name)

    async def _local_embeddings(
        self, request: Request, ollama_body: dict[str, Any], encoding: str, clock: Clock
    ) -> Response:
        """The plane's own embedding model (seed 001), answered without a node."""
        local = self.gateway.local
        assert local is not None
        try:
            check_model(request.scope, ollama_body["model"])
            answer = await local_answer(local, "/api/embed", ollama_body)
        except NeuronsError as exc:
            raise oa.OpenAIRequestError(exc.message, exc.http_status) from exc
        _spent(request, answer)
        result = oa.embedding_response(answer, model=ollama_body["model"], encoding_format=encoding)
        return self._json(result, clock, node=LOCAL_NODE)

    async def models(self, request: Request) -> Response:
        clock = Clock()
        try:
            tags = visible_models(request.scope, await self._tags(clock))
            return self._json(oa.models_response(tags), clock)
        except oa.OpenAIRequestError as exc:
            return self._json(exc.body(), clock, exc.status)

    async def model(self, request: Request) -> Response:
        clock = Clock()
        name = request.path_params["model"]
        try:
            tags = visible_models(request.scope, await self._tags(clock))
        except oa.OpenAIRequestError as exc:
            return self._json(exc.body(), clock, exc.status)
        for entry in tags:
            if name in (entry.get("name"), entry.get("model")):
                return self._json(oa.model_response(entry), clock)
        return self._json(oa.error_body(f"model '{name}' not found", 404), clock, 404)

    # -- the shared path --------------------------------------------------------------------

    async def _generate(
        self, request: Request, path: str, translate: Translate, id_prefix: str
    ) -> Response:
        clock = Clock()
        try:
            body = await self._body(request)
            passed = await self._passthrough(request, "/v1" + _V1[path], body, clock)
            if passed is not None:
                return passed
            ollama_body = translate(body)
            upstream = await self._dispatch(request, path, ollama_body, clock)
        except oa.OpenAIRequestError as exc:
            return self._json(exc.body(), clock, exc.status)
        if upstream.status >= 400:
            return self._upstream_error(upstream, clock)
        model, reply_id, created = ollama_body["model"], oa.new_id(id_prefix), int(time.time())
        chat = path == "/api/chat"
        forced = oa.forced_tools(body) if chat else ()  # tool_choice: the answer must be a call
        if upstream.body is not None:
            answer = json.loads(upstream.body)
            _spent(request, answer)
            if chat:
                result = oa.chat_response(
                    answer, id=reply_id, created=created, model=model, forced=forced
                )
            else:
                result = oa.completion_response(answer, id=reply_id, created=created, model=model)
            return self._json(result, clock, node=upstream.node.name)
        usage = oa.include_usage(body)
        translator: oa.ChatStream | oa.CompletionStream = (
            oa.ChatStream(reply_id, created, model, usage, forced)
            if chat
            else oa.CompletionStream(reply_id, created, model, usage)
        )
        headers = {NODE_HEADER: upstream.node.name, OVERHEAD_HEADER: clock.overhead_ms()}
        return StreamingResponse(
            self._events(upstream, translator, usage_of(request.scope)),
            headers=headers,
            media_type="text/event-stream",
        )

    async def _events(
        self,
        upstream: Upstream,
        translator: oa.ChatStream | oa.CompletionStream,
        usage: Usage | None,
    ) -> AsyncIterator[bytes]:
        """NDJSON lines in, server-sent events out; ``[DONE]`` only after a clean end."""
        pending = b""
        failed = False
        try:
            async for chunk in upstream.chunks():
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    if not raw.strip():
                        continue
                    item = json.loads(raw)
                    failed = failed or "error" in item
                    if item.get("done") and usage is not None:
                        usage.add(_count(item, "prompt_eval_count"), _count(item, "eval_count"))
                    for event in translator.feed(item):
                        yield oa.sse(event)
        except UPSTREAM_ERRORS as exc:
            node = upstream.node
            upstream.cut = True
            reason = f"neuron {node.name} stopped mid-stream ({self.gateway.failure(exc)})"
            self.gateway.monitor.report_failure(node, reason)
            yield oa.sse(oa.sse_error(reason))
            return
        finally:
            await upstream.aclose()
        if not failed:
            yield oa.SSE_DONE

    async def _passthrough(
        self, request: Request, path: str, body: object, clock: Clock
    ) -> Response | None:
        """Send the request as it is when only OpenAI-compatible nodes hold its model
        (:mod:`neurons.network.openai_nodes`); None: take the translated path."""
        model = body.get("model") if isinstance(body, dict) else None
        if not isinstance(model, str) or not model:
            return None
        holders = [n for n in self.gateway.monitor.routable() if n.has(model)]
        if not holders or any(n.kind != OPENAI for n in holders):
            return None
        try:
            check_model(request.scope, model)
            upstream = await self.gateway.dispatch(
                path, json.dumps(body).encode(), model, clock, targets=holders
            )
        except NeuronsError as exc:
            raise oa.OpenAIRequestError(exc.message, exc.http_status) from exc
        if upstream.body is not None:
            try:
                _spent(request, oa_usage(json.loads(upstream.body)))
            except ValueError:
                pass  # not JSON: nothing to count
        return self.gateway.respond(upstream, clock)

    async def _tags(self, clock: Clock) -> list[dict[str, Any]]:
        try:
            return await self.gateway.union("/api/tags", clock)
        except NeuronsError as exc:
            raise oa.OpenAIRequestError(exc.message, exc.http_status) from exc

    async def _body(self, request: Request) -> object:
        """The request's JSON, within the bounds (a 400 naming the field past one)."""
        raw = await request.body()
        try:
            body = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise oa.OpenAIRequestError(f"invalid JSON body: {exc.msg}") from exc
        if self.bounds is not None:
            check_openai(body, self.bounds)
        return body

    async def _dispatch(
        self, request: Request, path: str, ollama_body: dict[str, Any], clock: Clock
    ) -> Upstream:
        model = ollama_body["model"]
        payload = json.dumps(ollama_body).encode()
        try:
            check_model(request.scope, model)
            return await self.gateway.dispatch(
                path,
                payload,
                model,
                clock,
                prefix=self.gateway.prefix(ollama_body),
                needed=self.gateway.needs(path, ollama_body),
            )
        except NeuronsError as exc:
            raise oa.OpenAIRequestError(exc.message, exc.http_status) from exc

    def _upstream_error(self, upstream: Upstream, clock: Clock) -> Response:
        try:
            message = str(json.loads(upstream.body or b"{}").get("error") or "")
        except (json.JSONDecodeError, AttributeError):
            message = ""
        message = message or f"{upstream.node.name} answered HTTP {upstream.status}"
        return self._json(oa.error_body(message, upstream.status), clock, upstream.status)

    def _json(
        self, data: dict[str, Any], clock: Clock, status: int = 200, node: str | None = None
    ) -> Response:
        response = self.gateway.json_response(data, clock, status)
        if node is not None:
            response.headers[NODE_HEADER] = node
        return response


def _count(answer: dict[str, Any], field: str) -> int:
    value = answer.get(field)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def oa_usage(answer: object) -> dict[str, int]:
    """An OpenAI answer's ``usage`` as Ollama's counts (what :func:`_spent` reads)."""
    usage = answer.get("usage") if isinstance(answer, dict) else None
    if not isinstance(usage, dict):
        return {}
    return {
        "prompt_eval_count": _count(usage, "prompt_tokens"),
        "eval_count": _count(usage, "completion_tokens"),
    }


def _spent(request: Request, answer: object) -> None:
    """Add the tokens a node's answer reports to the request's usage (its key's TPM)."""
    usage = usage_of(request.scope)
    if usage is not None and isinstance(answer, dict):
        usage.add(_count(answer, "prompt_eval_count"), _count(answer, "eval_count"))
