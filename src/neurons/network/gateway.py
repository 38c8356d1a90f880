"""The gateway: one Ollama API in front of every node.

Inference and ``/api/show`` go to one node chosen by the routing policy among the healthy
nodes that hold the model; a generation or chat only to those whose copy has the capabilities
it needs (tools, thinking, ...), and when no holder's copy has them the gateway answers the
400 a node would. A connection error or a 5xx moves the request to the next node — only while
nothing has reached the client: a non-streamed answer is read whole before it is sent, and a
stream's first chunk is read before the status line goes out. A stream cut after that ends
with an Ollama-style ``{"error": ...}`` line (the status is already 200).

``/api/tags`` and ``/api/ps`` are unions over the nodes (a model's capabilities are the union
of its copies'); model operations are fanned out or targeted (:mod:`neurons.network.fanout`);
the OpenAI API is translated on top of the same dispatch
(:mod:`neurons.network.gateway_openai`). A node older than an API gets the request in a
form it knows (:mod:`neurons.network.versions`): ``/api/embed`` as ``/api/embeddings``
calls, by the version its health probe read. An OpenAI-compatible node gets it in the
OpenAI API (:mod:`neurons.network.openai_nodes`).

Every response carries ``X-Neurons-Overhead-Ms``: the time the gateway spent on the request
itself, that is the wall time minus the time spent waiting for nodes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import httpx
from fastapi import Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from neurons.auth.context import check_model, visible_models
from neurons.errors import (
    NeuronsError,
    NodeNotFoundError,
    NodeUnreachableError,
    NoNodeAvailableError,
)
from neurons.metrics.inference import FINAL_BYTES, Finished, InferenceRecorder
from neurons.network.bounds import Bounds, check_ollama
from neurons.network.health import HealthMonitor
from neurons.network.local_models import LOCAL_PATHS, local_answer, local_tags_entry
from neurons.network.openai_inventory import OPENAI
from neurons.network.openai_nodes import Translated, send, tags_answer, translatable
from neurons.network.routing import NodeView, RouteRequest, RoutingPolicy, canonical_label
from neurons.network.versions import EMBED, embed_via_embeddings, supports
from neurons.ollama import OLLAMA_COMPAT_VERSION
from neurons.ollama.capabilities import check_capabilities, required_capabilities
from neurons.ollama.wire import NDJSON, line, read_json, required_model

if TYPE_CHECKING:
    from neurons.system.inference import LocalInference

__all__ = [
    "NODE_HEADER",
    "OVERHEAD_HEADER",
    "UPSTREAM_ERRORS",
    "Gateway",
    "OverheadHeaderMiddleware",
    "Upstream",
    "upstream_failure",
    "upstream_session",
]

OVERHEAD_HEADER = "X-Neurons-Overhead-Ms"
NODE_HEADER = "X-Neurons-Node"
_JSON = {"content-type": "application/json"}
T = TypeVar("T")
# Statuses worth another node: the node failed (5xx) or its inventory was stale (404).
_RETRY_STATUSES = frozenset({404, 500, 502, 503, 504})
# The routes whose requests a node checks against the model's capabilities, with the action
# its error message names (Ollama checks nothing for /api/embed and /api/show).
_CHECKED_ACTIONS = {"/api/generate": "generate", "/api/chat": "chat"}


@dataclass
class Clock:
    """Wall time of one request, and the part of it spent waiting for nodes."""

    started: float = field(default_factory=time.perf_counter)
    waited: float = 0.0

    def overhead_ms(self) -> str:
        return f"{max(0.0, time.perf_counter() - self.started - self.waited) * 1000:.3f}"

    async def wait(self, awaitable: Awaitable[T]) -> T:
        t0 = time.perf_counter()
        try:
            return await awaitable
        finally:
            self.waited += time.perf_counter() - t0


# What a node connection can raise before or during a response (a cut stream is a
# ClientPayloadError; a refused or reset connection a ClientConnectionError or OSError).
UPSTREAM_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, OSError, TimeoutError)


def upstream_session(read_timeout_s: float | None = None) -> aiohttp.ClientSession:
    """The pooled client for the request path. aiohttp, not httpx, because it costs about
    0.4 ms less per request (benchmarks/gateway_overhead.py). Idle connections are dropped
    after 3 s, before uvicorn's 5 s keep-alive closes them under a request in flight.

    No limit on a whole answer (generations take their time), but a node that sends nothing
    for ``read_timeout_s`` (``Settings.node_timeout_s``) fails the request: before its first
    byte it moves to the next node or ends in a 502, after it the stream ends with an error."""
    connector = aiohttp.TCPConnector(limit=512, keepalive_timeout=3.0)
    timeout = aiohttp.ClientTimeout(total=None, connect=10.0, sock_read=read_timeout_s)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        auto_decompress=False,
        skip_auto_headers=("User-Agent",),
    )


def upstream_failure(exc: BaseException, timeout_s: float | None) -> str:
    """Why a node connection failed, in words; a stall names the timeout that ended it."""
    if isinstance(exc, aiohttp.SocketTimeoutError) and timeout_s is not None:
        return f"sent nothing for {timeout_s:g} s (node_timeout_s)"
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


@dataclass
class _Watch:
    """What the metrics recorder needs of an answer besides the answer itself."""

    recorder: InferenceRecorder
    model: str
    route: str
    started: float


@dataclass
class Upstream:
    """A node's answer, taken far enough that the request can no longer move elsewhere:
    the whole body (``body``), or the status line and first chunk of a stream (``first``).

    When metrics are on it is recorded once, as it ends: a body at once, a stream when it is
    closed (with its last bytes, where Ollama puts the counts, and whether it was ``cut``)."""

    node: NodeView
    response: aiohttp.ClientResponse
    body: bytes | None = None
    first: bytes = b""
    first_byte: float | None = None  # perf_counter when a stream's first chunk came
    cut: bool = False  # the stream broke after its status line went out
    media_type: str | None = None  # of an answer translated here, not the node's own
    _rest: AsyncIterator[bytes] | None = None
    _release: Callable[[], None] | None = None
    _watch: _Watch | None = None
    _tail: bytes = b""

    @property
    def status(self) -> int:
        return self.response.status

    def headers(self, clock: Clock) -> dict[str, str]:
        return {
            "content-type": self.media_type
            or self.response.headers.get("Content-Type")
            or "application/json",
            NODE_HEADER: self.node.name,
            OVERHEAD_HEADER: clock.overhead_ms(),
        }

    async def chunks(self) -> AsyncIterator[bytes]:
        keep = self._watch is not None
        if self.first:
            if keep:
                self._tail = self.first[-FINAL_BYTES:]
            yield self.first
        if self._rest is not None:
            async for chunk in self._rest:
                if keep:
                    self._tail = (self._tail + chunk)[-FINAL_BYTES:]
                yield chunk

    async def aclose(self) -> None:
        self.response.release()
        if self._release is not None:
            self._release()
            self._release = None
        if self.body is None:
            self.record()

    def watch(self, recorder: InferenceRecorder, model: str, route: str, started: float) -> None:
        """Record this answer when it ends (now, for a body read whole)."""
        self._watch = _Watch(recorder, model, route, started)
        if self.body is not None:
            self.record()

    def record(self) -> None:
        watch, self._watch = self._watch, None  # once
        if watch is None:
            return
        status = self.response.status
        # A name no node holds (a typo, a 404) is not a label: labels must stay few.
        known = status < 400 or self.node.has(watch.model)
        watch.recorder.finished(
            Finished(
                node=self.node.name,
                model=canonical_label(watch.model) if known else "other",
                route=watch.route,
                status=status,
                started=watch.started,
                ended=time.perf_counter(),
                first_byte=self.first_byte,
                tail=self.body if self.body is not None else self._tail,
                cut=self.cut,
            )
        )


class Gateway:
    # (path, handler method, HTTP methods): the control plane mounts these after its own routes.
    ROUTES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
        ("/api/generate", "inference", ("POST",)),
        ("/api/chat", "inference", ("POST",)),
        ("/api/embed", "inference", ("POST",)),
        ("/api/embeddings", "inference", ("POST",)),
        ("/api/show", "inference", ("POST",)),
        ("/api/tags", "tags", ("GET",)),
        ("/api/ps", "ps", ("GET",)),
        ("/api/version", "version", ("GET", "HEAD")),
        ("/", "root", ("GET", "HEAD")),
    )

    def __init__(
        self,
        monitor: HealthMonitor,
        http: httpx.AsyncClient,
        session: aiohttp.ClientSession,
        policy: RoutingPolicy,
        *,
        attempts: int = 3,
        sticky_prefix_chars: int = 0,
        bounds: Bounds | None = None,
    ) -> None:
        self.monitor = monitor
        self.http = http  # management-ish calls (unions, pass-through)
        self.session = session  # the request path
        self.policy = policy
        self.attempts = attempts
        self.sticky_prefix_chars = sticky_prefix_chars
        self.bounds = bounds  # None: no caps on a request's lists and sizes
        self.recorder: InferenceRecorder | None = None  # None: metrics are off
        # The plane's own embedding model (neurons.system.inference), or None.
        self.local: LocalInference | None = None

    # -- choosing and dispatching -----------------------------------------------------------

    def candidates(
        self, model: str, needed: Sequence[str] = (), action: str = "generate"
    ) -> list[NodeView]:
        """The healthy nodes that hold ``model`` and whose copy has the capabilities in
        ``needed``; Ollama's 400 (naming ``action``) when some hold it but none can, the
        message the most preferred holder would give. When none holds it, the healthy nodes
        all the same: an inventory may be a probe behind (a pull just finished), and a node
        that really lacks the model answers with Ollama's own 404, which the client then gets."""
        eligible = self.monitor.eligible(model)
        if eligible:
            if not needed:
                return eligible
            able = [v for v in eligible if v.supports(model, needed)]
            if not able:
                known = eligible[0].capabilities_of(model) or ()
                check_capabilities(model, list(known), list(needed), action)
            return able or eligible
        routable = self.monitor.routable()
        if not routable:
            raise self.nothing_healthy()
        return routable

    def nothing_healthy(self) -> NoNodeAvailableError:
        known = len(self.monitor.views)
        return NoNodeAvailableError(
            f"no healthy neuron can take the request ({known} registered, none healthy)"
        )

    @staticmethod
    def needs(path: str, body: dict[str, Any]) -> list[str]:
        """The capabilities a request on ``path`` needs of its model, where a node checks."""
        return required_capabilities(path, body) if path in _CHECKED_ACTIONS else []

    def prefix(self, body: dict[str, Any]) -> str | None:
        n = self.sticky_prefix_chars
        if n <= 0:
            return None
        text = str(body.get("system") or "") + str(body.get("prompt") or "")
        for message in body.get("messages") or []:
            if isinstance(message, dict):
                text += str(message.get("content") or "")
            if len(text) >= n:
                break
        return text[:n] or None

    async def dispatch(
        self,
        path: str,
        payload: bytes,
        model: str,
        clock: Clock,
        *,
        prefix: str | None = None,
        targets: list[NodeView] | None = None,
        needed: Sequence[str] = (),
    ) -> Upstream:
        """Send ``payload`` to the best node for ``model`` whose copy has the capabilities in
        ``needed`` (or of ``targets``, the nodes the request named, which check for
        themselves), moving on after failures."""
        action = _CHECKED_ACTIONS.get(path, "generate")
        candidates = translatable(targets or self.candidates(model, needed, action), path, payload)
        order = self.policy.order(RouteRequest(model, prefix), candidates)
        tries = order[: self.attempts]
        failures: list[str] = []
        reached = False
        for index, node in enumerate(tries):
            if not node.state.routable:
                failures.append(f"{node.name}: {node.state}")
                continue
            if not node.breaker.acquire():
                failures.append(f"{node.name}: circuit open")
                continue
            reached = True
            outcome = await clock.wait(self._try(node, path, payload))
            if isinstance(outcome, str):
                failures.append(outcome)
                self._failed(node, model, path, counted=True)
            elif outcome.status in _RETRY_STATUSES and index + 1 < len(tries):
                failures.append(f"{node.name}: HTTP {outcome.status}")
                self._failed(node, model, path, counted=outcome.status != 404)
            else:
                if self.recorder is not None:
                    outcome.watch(self.recorder, model, path, clock.started)
                return outcome  # the last node's error answer goes to the client as it is
        if not reached:  # every candidate was down or behind an open breaker
            raise NoNodeAvailableError("no node can take the request: " + "; ".join(failures))
        raise NodeUnreachableError(
            f"no node could serve the request ({len(failures)} tried): " + "; ".join(failures)
        )

    def _failed(self, node: NodeView, model: str, path: str, *, counted: bool) -> None:
        if self.recorder is not None:
            label = canonical_label(model) if node.has(model) else "other"
            self.recorder.attempt_failed(node.name, label, path, counted=counted)

    async def _try(self, node: NodeView, path: str, payload: bytes) -> Upstream | str:
        """One attempt; a string says why it failed before any byte could reach the client."""
        node.in_flight += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                node.in_flight -= 1

        t0 = time.perf_counter()
        headers = self.monitor.tokens.headers(node.url)
        bridged: bytes | None = None  # an answer translated for a node older than the API
        translated: Translated | None = None  # for a node with another API (openai_nodes)
        try:
            if node.kind == OPENAI:
                response, translated = await send(self.session, node, path, payload, headers)
                bridged = translated.body
            elif path == "/api/embed" and not supports(node.version, EMBED):
                response, bridged = await embed_via_embeddings(
                    self.session, node.url, payload, headers
                )
            else:
                response = await self.session.post(node.url + path, data=payload, headers=headers)
        except UPSTREAM_ERRORS as exc:
            release()
            reason = f"{node.name}: {self.failure(exc)}"
            self.monitor.report_failure(node, reason)
            return reason
        except BaseException:  # the bridge refused the request (400): nothing was sent
            release()
            raise
        upstream = Upstream(node, response, _release=release)
        if translated is not None:
            upstream.media_type = translated.media_type
        try:
            if translated is not None and translated.stream is not None:
                upstream._rest = translated.stream
                upstream.first = await anext(upstream._rest, b"")
                upstream.first_byte = time.perf_counter()
            elif bridged is not None:
                upstream.body = bridged
                await upstream.aclose()
            elif NDJSON in response.headers.get("Content-Type", "") and response.status < 400:
                upstream._rest = response.content.iter_any()
                upstream.first = await anext(upstream._rest, b"")
                upstream.first_byte = time.perf_counter()
            else:
                upstream.body = await response.read()
                await upstream.aclose()
        except UPSTREAM_ERRORS as exc:
            await upstream.aclose()
            reason = f"{node.name}: {self.failure(exc)} before the first byte"
            self.monitor.report_failure(node, reason)
            return reason
        if response.status >= 500 and response.status != 503:
            self.monitor.report_failure(node, f"{node.name}: HTTP {response.status}")
        else:  # answered (a 503 is a full queue: busy, not broken)
            self.monitor.report_success(node, (time.perf_counter() - t0) * 1000)
        return upstream

    # -- answering --------------------------------------------------------------------------

    def respond(self, upstream: Upstream, clock: Clock) -> Response:
        headers = upstream.headers(clock)
        media_type = headers.pop("content-type")
        if upstream.body is not None:
            return Response(upstream.body, upstream.status, headers, media_type=media_type)
        return StreamingResponse(
            self.relay(upstream), upstream.status, headers, media_type=media_type
        )

    async def relay(self, upstream: Upstream) -> AsyncIterator[bytes]:
        """The stream's bytes as they come; a cut ends with an ``{"error": ...}`` line."""
        ended_line = True
        try:
            async for chunk in upstream.chunks():
                ended_line = chunk.endswith(b"\n")
                yield chunk
        except UPSTREAM_ERRORS as exc:
            node = upstream.node
            upstream.cut = True
            reason = f"neuron {node.name} stopped mid-stream ({self.failure(exc)})"
            self.monitor.report_failure(node, reason)
            yield (b"" if ended_line else b"\n") + line({"error": reason})
        finally:
            await upstream.aclose()

    # -- routes -----------------------------------------------------------------------------

    async def inference(self, request: Request) -> Response:
        clock = Clock()
        try:
            body = await read_json(request)
            model = required_model(body)
            if self.bounds is not None:
                check_ollama(body, self.bounds)
            check_model(request.scope, model)
            path = request.url.path
            if self.local is not None and path in LOCAL_PATHS and self.local.serves(model):
                return self.json_response(await local_answer(self.local, path, body), clock)
            upstream = await self.dispatch(
                path,
                await request.body(),
                model,
                clock,
                prefix=self.prefix(body),
                targets=self.targets(request, default=[]),
                needed=self.needs(path, body),
            )
        except NeuronsError as exc:
            return self.error_response(exc, clock)
        return self.respond(upstream, clock)

    async def tags(self, request: Request) -> Response:
        return await self._union_response(request, "/api/tags")

    async def ps(self, request: Request) -> Response:
        return await self._union_response(request, "/api/ps")

    async def _union_response(self, request: Request, path: str) -> Response:
        """A union, less the models the caller's key may not use."""
        clock = Clock()
        try:
            merged = await self.union(path, clock)
        except NeuronsError as exc:
            return self.error_response(exc, clock)
        return self.json_response({"models": visible_models(request.scope, merged)}, clock)

    async def union(self, path: str, clock: Clock) -> list[dict[str, Any]]:
        """Each model once (first from the most preferred node), with the nodes that have it
        and the union of its copies' capabilities (each node lists them in Ollama's order; one
        only a later node's copy has follows). A node whose entries lack them (an older
        Ollama) gives what the health monitor read from its ``/api/show``."""
        nodes = self.monitor.routable()
        if not nodes and self.monitor.views:
            raise self.nothing_healthy()
        answers = await clock.wait(
            asyncio.gather(*(self._models(n, path) for n in nodes), return_exceptions=True)
        )
        merged: dict[str, dict[str, Any]] = {}
        if self.local is not None and path == "/api/tags":  # it answers here, before any node
            entry = local_tags_entry(self.local)
            merged[entry["name"]] = entry
        for node, answer in zip(nodes, answers, strict=True):
            if isinstance(answer, BaseException):
                continue
            for item in answer:
                name = str(item.get("name") or item.get("model") or "")
                entry = merged.setdefault(name, {**item, "nodes": []})
                entry["nodes"].append(node.name)
                listed = item.get("capabilities")
                if not isinstance(listed, list) or not listed:
                    listed = node.capabilities_of(name) or ()
                if listed:
                    had = entry.get("capabilities")
                    had = had if isinstance(had, list) else []
                    entry["capabilities"] = list(dict.fromkeys([*had, *listed]))
        return list(merged.values())

    async def _models(self, node: NodeView, path: str) -> list[dict[str, Any]]:
        if node.kind == OPENAI:  # no /api/tags there: what its probe read from /v1/models
            return tags_answer(node)
        response = await self.http.get(node.url + path, timeout=10.0)
        response.raise_for_status()
        models = response.json().get("models") or []
        return [m for m in models if isinstance(m, dict)]

    async def version(self, request: Request) -> Response:
        return self.json_response({"version": OLLAMA_COMPAT_VERSION}, Clock())

    async def root(self, request: Request) -> Response:
        return PlainTextResponse("Ollama is running", headers={OVERHEAD_HEADER: "0.000"})

    async def passthrough(self, request: Request) -> Response:
        """Any other ``/api/...`` path (e.g. ``/api/neuron/status``): to the targeted node,
        or the most preferred healthy one."""
        clock = Clock()
        try:
            nodes = self.targets(request, default=self.monitor.routable()[:1])
            if not nodes:
                raise NoNodeAvailableError("no healthy neuron is registered")
        except NeuronsError as exc:
            return self.error_response(exc, clock)
        node = nodes[0]
        try:
            response = await clock.wait(
                self.http.request(
                    request.method,
                    node.url + request.url.path,
                    params=request.query_params,
                    content=await request.body(),
                    headers=_JSON,
                )
            )
        except httpx.TransportError as exc:
            return self.error_response(
                NodeUnreachableError(f"{node.name} is unreachable: {exc}"), clock
            )
        headers = {NODE_HEADER: node.name, OVERHEAD_HEADER: clock.overhead_ms()}
        media_type = response.headers.get("content-type")
        return Response(response.content, response.status_code, headers, media_type=media_type)

    def targets(self, request: Request, *, default: list[NodeView]) -> list[NodeView]:
        """Nodes named by ``?node=a,b`` or the ``X-Neurons-Node`` header, else ``default``."""
        named = request.query_params.get("node") or request.headers.get(NODE_HEADER) or ""
        names = [n.strip() for n in named.split(",") if n.strip()]
        if not names:
            return default
        found: list[NodeView] = []
        for name in names:
            view = self.monitor.find(name)
            if view is None:
                raise NodeNotFoundError(f"no node named {name!r}")
            found.append(view)
        return found

    # -- helpers ----------------------------------------------------------------------------

    def failure(self, exc: BaseException) -> str:
        """Why a node connection failed (:func:`upstream_failure`)."""
        return upstream_failure(exc, self.session.timeout.sock_read)

    def json_response(self, data: Any, clock: Clock, status: int = 200) -> Response:
        content = json.dumps(data, separators=(",", ":")).encode()
        headers = {OVERHEAD_HEADER: clock.overhead_ms()}
        return Response(content, status, headers, media_type="application/json")

    def error_response(self, exc: NeuronsError, clock: Clock) -> Response:
        return self.json_response({"error": exc.message}, clock, exc.http_status)


class OverheadHeaderMiddleware:
    """Give every response the overhead header: routes that wait for nodes set it themselves
    (wall time minus the wait); for the rest, all of the time is the control plane's own."""

    _NAME = OVERHEAD_HEADER.lower().encode()

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                if not any(key.lower() == self._NAME for key, _ in headers):
                    ms = (time.perf_counter() - started) * 1000
                    headers.append((self._NAME, f"{ms:.3f}".encode()))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_header)
