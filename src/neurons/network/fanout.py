"""Model operations through the gateway's Ollama API: targeted at named nodes or fanned
out to many, over the one operations layer (:mod:`neurons.network.operations`), which picks
the nodes and runs them; this module answers as Ollama would.

A request names its nodes with ``?node=a,b`` or the ``X-Neurons-Node`` header; without one,
``pull``, ``create`` and blob uploads go to every node that takes new models, and
``copy``/``delete`` to the nodes that hold the model (404 when none does, as Ollama answers).
One target is a plain byte-for-byte forward. Several targets run at once: streamed progress
lines carry a ``node`` field and the stream ends with ``{"status": "success"}`` only if every
node succeeded, else with an ``{"error": ...}`` line naming the nodes that failed; a
non-streamed answer is the first failure's status with every failure named.

Blob uploads are spooled to a temp file and hashed first (a wrong digest is refused before
any node sees a byte), then pushed to each node that lacks the blob.

Skipped nodes (OpenAI-compatible, draining, offline: the layer's table) are named with their
reason in an ``X-Neurons-Skipped`` header, and as a progress line in a stream; an operation
whose only targets were skipped is a 400 (OpenAI-compatible nodes only) or a 503.

A relayed single answer counts as a success, to be announced, only once its last line says
``"status": "success"``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from neurons.client import NodeClient
from neurons.errors import DigestMismatchError, ModelNotFoundError, NeuronsError
from neurons.network.gateway import NODE_HEADER, OVERHEAD_HEADER, Clock, Gateway
from neurons.network.operations import Operation, OperationResult, Operations, Selection
from neurons.network.routing import NodeView
from neurons.ollama.names import normalize_digest
from neurons.ollama.wire import NDJSON, line, read_json, required_model, wants_stream

__all__ = ["ModelOperations"]

_CHUNK = 1 << 20
_TAIL = 4096  # bytes of a relayed answer kept to read its last line
# Which targets an operation skipped and why (the operations layer's reasons).
SKIPPED_HEADER = "X-Neurons-Skipped"


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
        self.operations = Operations.on_monitor(gateway.monitor, gateway.http)

    # -- routes -----------------------------------------------------------------------------

    async def pull(self, request: Request) -> Response:
        return await self._run(request, Operation.PULL)

    async def create(self, request: Request) -> Response:
        return await self._run(request, Operation.CREATE)

    async def push(self, request: Request) -> Response:
        return await self._run(request, Operation.PUSH)

    async def copy(self, request: Request) -> Response:
        return await self._run(request, Operation.COPY)

    async def delete(self, request: Request) -> Response:
        return await self._run(request, Operation.DELETE)

    def _named(self, request: Request) -> list[str]:
        """The nodes the request names (``?node=a,b``, the header), by name; 404 for one
        the network does not know."""
        return [view.name for view in self.gateway.targets(request, default=[])]

    async def _select(
        self, request: Request, operation: Operation
    ) -> tuple[dict[str, Any], Selection]:
        """The request's body and the nodes it reaches (:mod:`neurons.network.operations`);
        Ollama's own errors for a body without its model."""
        body = await read_json(request)
        if operation is Operation.COPY:
            source = body.get("source")
            if not isinstance(source, str) or not source:
                raise ModelNotFoundError("model '' not found")
        elif operation.on_holders:
            required_model(body)
        model = operation.subject(body)
        selection = await self.operations.select(operation, model, self._named(request))
        if operation is Operation.PUSH:  # one copy is enough to push; the others stay quiet
            selection.targets, selection.settled = selection.targets[:1], []
        return body, selection

    async def _run(self, request: Request, operation: Operation) -> Response:
        clock = Clock()
        try:
            body, selection = await clock.wait(self._select(request, operation))
        except NeuronsError as exc:
            return self._error(exc, clock)
        if len(selection.targets) == 1 and not selection.settled:
            view = self.monitor.find(selection.targets[0].name)
            if view is not None:
                payload = await request.body()
                return await self._forward(view, operation, body, payload, clock)
        skipped = "; ".join(f"{r.node}: {r.skipped}" for r in selection.skipped)
        if operation.streams and wants_stream(body):
            headers = {OVERHEAD_HEADER: clock.overhead_ms(), SKIPPED_HEADER: skipped}
            return StreamingResponse(
                self._merged(operation, body, selection), headers=headers, media_type=NDJSON
            )
        result = await clock.wait(self.operations.run(operation, body, selection=selection))
        if result.failed:
            return self._json({"error": result.summary()}, clock, result.status)
        said = {SKIPPED_HEADER: skipped} if skipped else {}
        if operation.streams:
            answer = self._json({"status": "success"}, clock)
            answer.headers.update(said)
            return answer
        return Response(status_code=200, headers={OVERHEAD_HEADER: clock.overhead_ms(), **said})

    async def _forward(
        self,
        node: NodeView,
        operation: Operation,
        body: dict[str, Any],
        payload: bytes,
        clock: Clock,
    ) -> Response:
        """One target: its answer byte for byte (Ollama's own statuses and stream)."""
        path = operation.path
        request = self.http.build_request(operation.method, node.url + path, content=payload)
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
                if _succeeded(operation, response.status_code, tail):
                    self.operations.announce(operation, body, [node.name])
            finally:
                await response.aclose()
                self.monitor.note_inventory_changed()

        return StreamingResponse(
            relay(),
            response.status_code,
            headers,
            media_type=response.headers.get("content-type"),
        )

    async def _merged(
        self, operation: Operation, body: dict[str, Any], selection: Selection
    ) -> AsyncIterator[bytes]:
        """Every node's progress lines as they come, tagged with the node's name (a skipped
        node's reason first), then one line for the whole: success, or every failure."""
        for skipped in selection.skipped:
            yield line({"status": skipped.skipped, "node": skipped.node})
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()

        def progress(node: str, item: dict[str, Any]) -> None:
            queue.put_nowait(line({**item, "node": node}))

        async def run() -> OperationResult:
            try:
                return await self.operations.run(
                    operation, body, selection=selection, progress=progress
                )
            finally:
                queue.put_nowait(None)

        task = asyncio.create_task(run())
        try:
            while (item := await queue.get()) is not None:
                yield item
            result = await task
        finally:  # the client went away: stop the nodes' streams too
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if result.failed:
            yield line({"error": result.summary(skips=False)})
        else:
            yield line({"status": "success"})

    # -- blobs ------------------------------------------------------------------------------

    async def _blob_targets(self, request: Request) -> tuple[str, list[NodeClient]]:
        """The checked digest from the path, and a client for each target node."""
        digest = normalize_digest(request.path_params["digest"])
        selection = await self.operations.select(Operation.BLOBS, "", self._named(request))
        nodes = selection.targets
        return digest, [NodeClient(n.url, name=n.name, client=self.http) for n in nodes]

    async def blob_exists(self, request: Request) -> Response:
        """200 only if every target node has the blob (so a client uploads when any lacks it)."""
        clock = Clock()
        try:
            digest, clients = await self._blob_targets(request)
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
            digest, clients = await self._blob_targets(request)
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


def _succeeded(operation: Operation, status: int, tail: bytes) -> bool:
    """Whether a relayed answer says the operation succeeded: 200, and for the streaming
    operations a last line ``{"status": "success"}`` (a failure ends with an error line)."""
    if status != 200:
        return False
    if not operation.streams:
        return True
    last = tail.rstrip().rsplit(b"\n", 1)[-1]
    try:
        final = json.loads(last)
    except ValueError:
        return False
    return isinstance(final, dict) and final.get("status") == "success" and not final.get("error")
