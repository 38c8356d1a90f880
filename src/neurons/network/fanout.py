"""Model operations through the gateway: targeted at named nodes or fanned out to many.

A request names its nodes with ``?node=a,b`` or the ``X-Neurons-Node`` header; without one,
``pull``, ``create`` and blob uploads go to every healthy node, and ``copy``/``delete`` to the
healthy nodes that hold the model (404 when none does, as Ollama answers). One target is a
plain byte-for-byte forward. Several targets run at once: streamed progress lines carry a
``node`` field and the stream ends with ``{"status": "success"}`` only if every node
succeeded, else with an ``{"error": ...}`` line naming the nodes that failed.

Blob uploads are spooled to a temp file and hashed first (a wrong digest is refused before
any node sees a byte), then pushed to each node that lacks the blob.

OpenAI-compatible nodes (:mod:`neurons.network.openai_nodes`) have no Ollama API to run
these on: they are skipped, each with its reason (an ``X-Neurons-Skipped`` header, and a
progress line in a stream); an operation whose only targets they are is a 400 that says so.

A pull, create or copy that succeeded on at least one node is announced as ``model.created``
and a delete as ``model.deleted``, naming the nodes it succeeded on (through the health
monitor's ``emit``, so only when the control plane runs an event bus). A streamed answer
counts as a success only once its last line says ``"status": "success"``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from neurons.client import NodeClient, error_message
from neurons.errors import (
    DigestMismatchError,
    InvalidRequestError,
    ModelNotFoundError,
    NeuronsError,
    NoNodeAvailableError,
)
from neurons.events.kinds import MODEL_CREATED, MODEL_DELETED
from neurons.network.gateway import NODE_HEADER, OVERHEAD_HEADER, Clock, Gateway
from neurons.network.openai_inventory import OPENAI, skip_reason
from neurons.network.routing import NodeView
from neurons.ollama.names import canonical_name, normalize_digest
from neurons.ollama.wire import NDJSON, line, read_json, required_model, wants_stream

__all__ = ["ModelOperations"]

_CHUNK = 1 << 20
_TAIL = 4096  # bytes of a relayed answer kept to read its last line
# Which targets an operation skipped and why (OpenAI-compatible nodes have no Ollama API).
SKIPPED_HEADER = "X-Neurons-Skipped"
Announce = Callable[[list[NodeView]], None]


class ModelOperations:
    # (path, handler method, HTTP methods), mounted by the control plane.
    ROUTES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
        ("/api/pull", "pull", ("POST",)),
        ("/api/create", "create", ("POST",)),
        ("/api/push", "push", ("POST",)),
        ("/api/copy", "copy", ("POST",)),
        ("/api/delete", "delete", ("DELETE",)),
        ("/api/blobs/{digest}", "blob_exists", ("HEAD",)),
        ("/api/blobs/{digest}", "blob_upload", ("POST",)),
    )

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.monitor = gateway.monitor
        self.http = gateway.http

    # -- target selection -------------------------------------------------------------------

    def _all(self, request: Request) -> list[NodeView]:
        nodes = self.gateway.targets(request, default=self.monitor.routable())
        if not nodes:
            raise NoNodeAvailableError("no healthy neuron is registered")
        return nodes

    def _holders(self, request: Request, model: str) -> list[NodeView]:
        holders = [n for n in self.monitor.routable() if n.has(model)]
        nodes = self.gateway.targets(request, default=holders)
        if not nodes:
            raise ModelNotFoundError(f"model '{model}' not found")
        return nodes

    # -- routes -----------------------------------------------------------------------------

    async def pull(self, request: Request) -> Response:
        return await self._run(request, "POST", "/api/pull", lambda body: self._all(request))

    async def create(self, request: Request) -> Response:
        return await self._run(request, "POST", "/api/create", lambda body: self._all(request))

    async def push(self, request: Request) -> Response:
        def first_holder(body: dict[str, Any]) -> list[NodeView]:
            return self._holders(request, required_model(body))[:1]

        return await self._run(request, "POST", "/api/push", first_holder)

    async def copy(self, request: Request) -> Response:
        def holders(body: dict[str, Any]) -> list[NodeView]:
            source = body.get("source")
            if not isinstance(source, str) or not source:
                raise ModelNotFoundError("model '' not found")
            return self._holders(request, source)

        return await self._run(request, "POST", "/api/copy", holders, streams=False)

    async def delete(self, request: Request) -> Response:
        def holders(body: dict[str, Any]) -> list[NodeView]:
            return self._holders(request, required_model(body))

        return await self._run(request, "DELETE", "/api/delete", holders, streams=False)

    async def _run(
        self,
        request: Request,
        method: str,
        path: str,
        choose: Callable[[dict[str, Any]], list[NodeView]],
        *,
        streams: bool = True,
    ) -> Response:
        clock = Clock()
        try:
            body = await read_json(request)
            nodes, skipped = _without_openai(choose(body), path)
        except NeuronsError as exc:
            return self._error(exc, clock)
        payload = await request.body()
        announce = self._announcer(path, body)
        if len(nodes) == 1 and not skipped:
            return await self._forward(nodes[0], method, path, payload, clock, announce)
        if streams and wants_stream(body):
            headers = {OVERHEAD_HEADER: clock.overhead_ms(), SKIPPED_HEADER: "; ".join(skipped)}
            return StreamingResponse(
                self._merged(nodes, method, path, payload, announce, skipped),
                headers=headers,
                media_type=NDJSON,
            )
        results = await clock.wait(
            asyncio.gather(*(self._call(n, method, path, payload) for n in nodes))
        )
        self.monitor.note_inventory_changed()
        announce([n for n, (_, msg) in zip(nodes, results, strict=True) if not msg])
        failed = [(n, status, msg) for n, (status, msg) in zip(nodes, results, strict=True) if msg]
        if failed:
            status = failed[0][1]
            message = "; ".join([*(f"{n.name}: {msg}" for n, _, msg in failed), *skipped])
            return self._json({"error": message}, clock, status)
        said = {SKIPPED_HEADER: "; ".join(skipped)} if skipped else {}
        if streams:
            answer = self._json({"status": "success"}, clock)
            answer.headers.update(said)
            return answer
        return Response(status_code=200, headers={OVERHEAD_HEADER: clock.overhead_ms(), **said})

    async def _forward(
        self,
        node: NodeView,
        method: str,
        path: str,
        payload: bytes,
        clock: Clock,
        announce: Announce | None = None,
    ) -> Response:
        request = self.http.build_request(method, node.url + path, content=payload)
        try:
            response = await clock.wait(self.http.send(request, stream=True))
        except httpx.TransportError as exc:
            self.monitor.report_failure(node, f"{node.name}: {exc}")
            return self._json({"error": f"{node.name} is unreachable: {exc}"}, clock, 502)
        headers = {NODE_HEADER: node.name, OVERHEAD_HEADER: clock.overhead_ms()}

        async def relay() -> AsyncIterator[bytes]:
            tail = b""
            try:
                async for chunk in response.aiter_raw():
                    tail = (tail + chunk)[-_TAIL:]
                    yield chunk
            except httpx.HTTPError as exc:
                yield b"\n" + line({"error": f"{node.name} stopped mid-stream: {exc}"})
            else:
                if announce is not None and _succeeded(path, response.status_code, tail):
                    announce([node])
            finally:
                await response.aclose()
                self.monitor.note_inventory_changed()

        return StreamingResponse(
            relay(),
            response.status_code,
            headers,
            media_type=response.headers.get("content-type"),
        )

    async def _call(
        self, node: NodeView, method: str, path: str, payload: bytes
    ) -> tuple[int, str | None]:
        """Run the operation on one node without streaming: (status, error or None)."""
        body = json.loads(payload)
        if isinstance(body, dict) and path in ("/api/pull", "/api/create", "/api/push"):
            payload = json.dumps({**body, "stream": False}).encode()
        try:
            response = await self.http.request(method, node.url + path, content=payload)
        except httpx.TransportError as exc:
            self.monitor.report_failure(node, f"{node.name}: {exc}")
            return 502, f"unreachable ({exc})"
        if response.status_code >= 400:
            return response.status_code, error_message(response.content, response.reason_phrase)
        return response.status_code, None

    async def _merged(
        self,
        nodes: list[NodeView],
        method: str,
        path: str,
        payload: bytes,
        announce: Announce,
        skipped: Sequence[str] = (),
    ) -> AsyncIterator[bytes]:
        """Every node's progress lines as they come, tagged with the node's name (a skipped
        node's reason first)."""
        for reason in skipped:
            name, _, status = reason.partition(": ")
            yield line({"status": status, "node": name})
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        errors: dict[str, str] = {}

        async def one(node: NodeView) -> None:
            try:
                async with self.http.stream(method, node.url + path, content=payload) as resp:
                    if resp.status_code >= 400:
                        body = await resp.aread()
                        errors[node.name] = error_message(body, f"HTTP {resp.status_code}")
                        return
                    async for raw in resp.aiter_lines():
                        if not raw.strip():
                            continue
                        item = json.loads(raw)
                        if isinstance(item, dict) and item.get("error"):
                            errors[node.name] = str(item["error"])
                            continue
                        await queue.put(line({**item, "node": node.name}))
            except (httpx.HTTPError, json.JSONDecodeError) as exc:
                errors[node.name] = f"{type(exc).__name__}: {exc}"
            finally:
                await queue.put(None)

        tasks = [asyncio.create_task(one(n)) for n in nodes]
        try:
            remaining = len(tasks)
            while remaining:
                item = await queue.get()
                if item is None:
                    remaining -= 1
                else:
                    yield item
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.monitor.note_inventory_changed()
        announce([n for n in nodes if n.name not in errors])
        if errors:
            yield line({"error": "; ".join(f"{name}: {msg}" for name, msg in errors.items())})
        else:
            yield line({"status": "success"})

    def _announcer(self, path: str, body: dict[str, Any]) -> Announce:
        """What to announce once the operation succeeded on some nodes (nothing for push)."""

        def announce(nodes: list[NodeView]) -> None:
            names = [n.name for n in nodes]
            if not names:
                return
            if path == "/api/delete":
                self.monitor.emit(MODEL_DELETED, _model(body, "model", "name"), nodes=names)
            elif path == "/api/copy":
                self.monitor.emit(MODEL_CREATED, _model(body, "destination"), operation="copy",
                                  source=_model(body, "source"), nodes=names)  # fmt: skip
            elif path in ("/api/pull", "/api/create"):
                operation = path.rsplit("/", 1)[-1]
                model = _model(body, "model", "name")
                self.monitor.emit(MODEL_CREATED, model, operation=operation, nodes=names)

        return announce

    # -- blobs ------------------------------------------------------------------------------

    def _blob_targets(self, request: Request) -> tuple[str, list[NodeClient]]:
        """The checked digest from the path, and a client for each target node."""
        digest = normalize_digest(request.path_params["digest"])
        nodes, _ = _without_openai(self._all(request), "/api/blobs")
        return digest, [NodeClient(n.url, name=n.name, client=self.http) for n in nodes]

    async def blob_exists(self, request: Request) -> Response:
        """200 only if every target node has the blob (so a client uploads when any lacks it)."""
        clock = Clock()
        try:
            digest, clients = self._blob_targets(request)
        except NeuronsError as exc:
            return self._error(exc, clock)
        found = await clock.wait(
            asyncio.gather(*(c.has_blob(digest) for c in clients), return_exceptions=True)
        )
        status = 200 if all(f is True for f in found) else 404
        return Response(status_code=status, headers={OVERHEAD_HEADER: clock.overhead_ms()})

    async def blob_upload(self, request: Request) -> Response:
        clock = Clock()
        try:
            digest, clients = self._blob_targets(request)
        except NeuronsError as exc:
            return self._error(exc, clock)
        fd, name = tempfile.mkstemp(prefix="neurons-blob-")
        path = Path(name)
        try:
            sha = hashlib.sha256()
            with os.fdopen(fd, "wb") as handle:
                async for chunk in request.stream():
                    sha.update(chunk)
                    handle.write(chunk)
            actual = "sha256:" + sha.hexdigest()
            if actual != digest:
                raise DigestMismatchError(f'digest mismatch, expected "{digest}", got "{actual}"')
            await clock.wait(asyncio.gather(*(c.push_blob(digest, path) for c in clients)))
        except NeuronsError as exc:
            return self._error(exc, clock)
        finally:
            path.unlink(missing_ok=True)
        return Response(status_code=201, headers={OVERHEAD_HEADER: clock.overhead_ms()})

    # -- helpers ----------------------------------------------------------------------------

    def _json(self, data: Any, clock: Clock, status: int = 200) -> Response:
        return self.gateway.json_response(data, clock, status)

    def _error(self, exc: NeuronsError, clock: Clock) -> Response:
        return self.gateway.error_response(exc, clock)


def _without_openai(nodes: list[NodeView], path: str) -> tuple[list[NodeView], list[str]]:
    """The nodes with Ollama's API, and ``"name: why"`` for each OpenAI-compatible node the
    operation skips; a 400 when that leaves none."""
    kept = [n for n in nodes if n.kind != OPENAI]
    skipped = [f"{n.name}: {skip_reason(path)}" for n in nodes if n.kind == OPENAI]
    if not kept and skipped:
        raise InvalidRequestError("; ".join(skipped))
    return kept, skipped


def _model(body: dict[str, Any], *fields: str) -> str:
    """The model a request names in the first of ``fields`` it has, as nodes list it."""
    for field in fields:
        value = body.get(field)
        if isinstance(value, str) and value:
            return canonical_name(value)
    return ""


def _succeeded(path: str, status: int, tail: bytes) -> bool:
    """Whether a relayed answer says the operation succeeded: 200, and for the streaming
    operations a last line ``{"status": "success"}`` (a failure ends with an error line)."""
    if status != 200:
        return False
    if path in ("/api/copy", "/api/delete"):
        return True
    last = tail.rstrip().rsplit(b"\n", 1)[-1]
    try:
        final = json.loads(last)
    except ValueError:
        return False
    return isinstance(final, dict) and final.get("status") == "success" and not final.get("error")
