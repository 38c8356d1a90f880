"""Model operations on many nodes: the one layer both the management API
(:class:`~neurons.library.service.LibraryService`, the CLI) and the gateway's Ollama API
(:mod:`neurons.network.fanout`) go through.

**Which nodes an operation reaches** (:meth:`Operations.select`): ``pull``, ``create`` and blob
uploads go to every node, ``copy``, ``delete`` and ``push`` to the nodes that hold the model
(read live from each node's ``/api/tags``, so a model made a moment ago counts), or to the
nodes the caller names (the node itself then says whether it holds the model). Before that,
each node's kind and state decide, the same for both callers::

    node                      pull create copy blobs push   delete
    kind openai               skipped (no Ollama API)       skipped
    offline                   skipped (its last error)      skipped
    breaker open              skipped (its last error)      skipped
    draining                  skipped: takes no new models  reached (retiring a node
                                                            starts by draining it)
    online, degraded, unknown reached                       reached

A skipped node is never silently dropped: it is in the result with its reason. For ``copy``,
``delete`` and ``push`` only a skipped node that holds the model (or whose inventory is not
known here) is listed. An unknown state is a node nobody has probed yet (a registry the CLI
reads without a control plane running): it is tried, and if it is down that is its result.

**What each node did** is one :class:`NodeResult`, and the whole operation one
:class:`OperationResult`. The nodes run at once; a node failing never stops the others.
Each caller words the aggregate in its own API: the Ollama API answers the first failure's
status with every failure named (as one server would fail), the management API answers its
envelope with the per-node details, and fails only when no node succeeded.

With a health monitor (the control plane), a pull, create or copy that succeeded on some
nodes is announced as ``model.created`` and a delete as ``model.deleted``, a node that cannot
be reached feeds its breaker, and inventories are re-read at once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import httpx

from neurons.client import error_message, node_error
from neurons.errors import (
    InvalidRequestError,
    ModelNotFoundError,
    NeuronsError,
    NodeNotFoundError,
    NoNodeAvailableError,
)
from neurons.events.kinds import MODEL_CREATED, MODEL_DELETED
from neurons.network.openai_inventory import OPENAI, skip_reason
from neurons.network.states import NodeState
from neurons.ollama.names import canonical_name

if TYPE_CHECKING:
    from neurons.network.health import HealthMonitor
    from neurons.network.routing import NodeView
    from neurons.store import NodeRecord, Store

__all__ = [
    "Candidate",
    "NodeResult",
    "Operation",
    "OperationResult",
    "Operations",
    "Progress",
    "Selection",
    "choose",
]

# A progress line of one node's stream, as it arrives: (node name, the line).
Progress = Callable[[str, dict[str, Any]], None]
# A skip the caller could not have avoided (an OpenAI-compatible node) is a bad request; one
# the network's state caused (draining, offline) means no node is available now.
_REFUSED, _UNAVAILABLE = 400, 503
_UNREACHABLE = 502


class Operation(StrEnum):
    PULL = "pull"
    CREATE = "create"
    PUSH = "push"
    COPY = "copy"
    DELETE = "delete"
    BLOBS = "blobs"

    @property
    def path(self) -> str:
        return f"/api/{self.value}"

    @property
    def method(self) -> str:
        return "DELETE" if self is Operation.DELETE else "POST"

    @property
    def on_holders(self) -> bool:
        """Whether it acts on the nodes that hold a model rather than on every node."""
        return self in (Operation.PUSH, Operation.COPY, Operation.DELETE)

    @property
    def streams(self) -> bool:
        """Whether a node answers it with NDJSON progress lines when asked to stream."""
        return self in (Operation.PULL, Operation.CREATE, Operation.PUSH)

    def subject(self, body: Mapping[str, Any]) -> str:
        """The model the request acts on (for ``copy``, the source), as the request names it."""
        for name in ("source",) if self is Operation.COPY else ("model", "name"):
            value = body.get(name)
            if isinstance(value, str) and value:
                return value
        return ""


@dataclass(frozen=True)
class Candidate:
    """A registered node as target selection sees it, from the health monitor's live view or
    from the store's record (the CLI, with no monitor running)."""

    name: str
    url: str
    kind: str
    state: str = NodeState.UNKNOWN
    # Canonical names the node is known to hold; None where that is not known here.
    models: frozenset[str] | None = None
    breaker_open: bool = False
    last_error: str | None = None

    @classmethod
    def of_view(cls, view: NodeView) -> Candidate:
        known = view.state is not NodeState.UNKNOWN
        return cls(view.name, view.url, view.kind, str(view.state),
                   view.models if known else None, not view.breaker.available(),
                   view.last_error)  # fmt: skip

    @classmethod
    def of_record(cls, record: NodeRecord) -> Candidate:
        return cls(record.name, record.url.rstrip("/"), record.kind, record.status)

    def why_not(self, operation: Operation) -> tuple[str, int] | None:
        """Why ``operation`` skips this node (its reason and status), or None."""
        if self.kind == OPENAI:
            return skip_reason(operation.path), _REFUSED
        if self.state == NodeState.OFFLINE:
            return f"skipped: offline ({self.last_error or 'its health probes fail'})", _UNAVAILABLE
        if self.breaker_open:
            return f"skipped: its breaker is open ({self.last_error})", _UNAVAILABLE
        if self.state == NodeState.DRAINING and operation is not Operation.DELETE:
            return "skipped: draining (a draining node takes only deletes)", _UNAVAILABLE
        return None


@dataclass(frozen=True)
class NodeResult:
    """What one operation did on one node. ``status`` is the node's HTTP status (502 when it
    could not be reached; for a skipped node, what the skip alone would answer)."""

    node: str
    ok: bool
    status: int
    error: str | None = None
    skipped: str | None = None  # why the operation passed the node over

    @classmethod
    def success(cls, node: str, status: int = 200) -> NodeResult:
        return cls(node, True, status)

    @classmethod
    def failure(cls, node: str, status: int, error: str) -> NodeResult:
        return cls(node, False, status, error=error)

    @classmethod
    def skip(cls, node: str, reason: str, status: int) -> NodeResult:
        return cls(node, False, status, skipped=reason)

    def word(self) -> str:
        """One word or line for the node: ``success``, the skip reason, or the failure."""
        if self.ok:
            return "success"
        return self.skipped or f"failed: {self.error}"

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "ok": self.ok, "status": self.status,
                "error": self.error, "skipped": self.skipped}  # fmt: skip


@dataclass
class OperationResult:
    operation: Operation
    model: str
    nodes: list[NodeResult] = field(default_factory=list)

    @property
    def succeeded(self) -> list[str]:
        return [r.node for r in self.nodes if r.ok]

    @property
    def failed(self) -> list[NodeResult]:
        return [r for r in self.nodes if not r.ok and r.skipped is None]

    @property
    def skipped(self) -> list[NodeResult]:
        return [r for r in self.nodes if r.skipped is not None]

    @property
    def status(self) -> int:
        """200, or the first failure's status (what one Ollama server would have answered)."""
        failed = self.failed
        return failed[0].status if failed else 200

    def summary(self, *, skips: bool = True) -> str:
        """``"node: error"`` for each failure (and ``"node: skipped: why"`` for each skip)."""
        lines = [f"{r.node}: {r.error}" for r in self.failed]
        if skips:
            lines += [f"{r.node}: {r.skipped}" for r in self.skipped]
        return "; ".join(lines)

    def raise_unless_any_succeeded(self) -> None:
        """The management API's rule: an error (the first failure's, in the library's error
        classes) only when no node succeeded; else the per-node details say what failed."""
        failed = self.failed
        if self.succeeded or not failed:
            return
        first = failed[0]
        message = (first.error or "") if len(failed) == 1 else self.summary(skips=False)
        raise node_error(first.node, first.status, message)

    def results(self) -> dict[str, str]:
        """Node -> :meth:`NodeResult.word` (the seed's ``results`` map)."""
        return {r.node: r.word() for r in self.nodes}

    def to_dict(self) -> dict[str, Any]:
        return {
            "operation": str(self.operation),
            "model": self.model,
            "succeeded": self.succeeded,
            "nodes": [r.to_dict() for r in self.nodes],
        }


@dataclass
class Selection:
    """The nodes an operation will run on, and the nodes already settled: skipped, or failed
    while their inventory was read."""

    operation: Operation
    model: str
    targets: list[Candidate]
    settled: list[NodeResult] = field(default_factory=list)

    @property
    def skipped(self) -> list[NodeResult]:
        return [r for r in self.settled if r.skipped is not None]


def choose(
    candidates: Sequence[Candidate],
    operation: Operation,
    model: str = "",
    named: Sequence[str] = (),
) -> Selection:
    """The selection rule (module docstring), on candidates whose inventory is known where
    the operation needs it. Raises when nothing is left to run on: 404 for an unknown named
    node or a model no node holds, 400 when only OpenAI-compatible nodes were left, else 503.
    """
    pool = list(candidates)
    if named:
        by_name = {c.name: c for c in candidates}
        missing = [n for n in named if n not in by_name]
        if missing:
            raise NodeNotFoundError(f"no node named {missing[0]!r}")
        pool = [by_name[n] for n in named]
    holders = operation.on_holders and not named
    wanted = canonical_name(model) if model else ""
    targets: list[Candidate] = []
    skipped: list[NodeResult] = []
    relevant: list[NodeResult] = []  # skips that explain why nothing is left
    for node in pool:
        known_holder = node.models is not None and wanted in node.models
        why = node.why_not(operation)
        if why is not None:
            if not holders or node.models is None or known_holder:
                skipped.append(NodeResult.skip(node.name, *why))
            if not holders or known_holder:
                relevant.append(skipped[-1])
        elif not holders or known_holder:
            targets.append(node)
    if not targets:
        _nothing_left(operation, model, relevant, skipped)
    return Selection(operation, model, targets, skipped)


def _nothing_left(
    operation: Operation, model: str, relevant: list[NodeResult], skipped: list[NodeResult]
) -> None:
    said = "; ".join(f"{r.node}: {r.skipped}" for r in relevant or skipped)
    if relevant:
        if all(r.status == _REFUSED for r in relevant):
            raise InvalidRequestError(said)
        raise NoNodeAvailableError(said)
    if operation.on_holders:
        raise ModelNotFoundError(f"model '{model}' not found" + (f" ({said})" if said else ""))
    raise NoNodeAvailableError("no healthy node is registered: start one with `neurons up`")


class Operations:
    """Runs model operations on the nodes ``nodes()`` lists, over ``http`` (which sends each
    node its token). ``monitor``, when there is one, hears what happened."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        nodes: Callable[[], Awaitable[Sequence[Candidate]]],
        *,
        monitor: HealthMonitor | None = None,
    ) -> None:
        self.http = http
        self._nodes = nodes
        self.monitor = monitor

    @classmethod
    def on_monitor(cls, monitor: HealthMonitor, http: httpx.AsyncClient) -> Operations:
        """The control plane's: the monitor's live views."""

        async def views() -> list[Candidate]:
            return [Candidate.of_view(v) for v in monitor.ordered()]

        return cls(http, views, monitor=monitor)

    @classmethod
    def on_store(cls, store: Store, http: httpx.AsyncClient) -> Operations:
        """Without a control plane (the CLI): the registry's records and their last state."""

        async def records() -> list[Candidate]:
            return [Candidate.of_record(r) for r in await asyncio.to_thread(store.nodes.list)]

        return cls(http, records)

    # -- selection --------------------------------------------------------------------------

    async def select(
        self, operation: Operation, model: str = "", named: Sequence[str] = ()
    ) -> Selection:
        """:func:`choose` on the current nodes, with the inventory of each node that may hold
        ``model`` read live first (copy, delete and push on nodes nobody named)."""
        candidates = list(await self._nodes())
        failed: list[NodeResult] = []
        if operation.on_holders and not named:
            asked = [c for c in candidates if c.why_not(operation) is None]
            read = await asyncio.gather(*(self._inventory(c) for c in asked))
            held = {c.name: r for c, r in zip(asked, read, strict=True) if isinstance(r, frozenset)}
            failed = [r for r in read if isinstance(r, NodeResult)]
            gone = {f.node for f in failed}
            candidates = [
                replace(c, models=held[c.name]) if c.name in held else c
                for c in candidates
                if c.name not in gone
            ]
        try:
            selection = choose(candidates, operation, model, named)
        except NeuronsError:
            if not failed:
                raise
            selection = Selection(operation, model, [])  # those that failed are the answer
        selection.settled = [*failed, *selection.settled]
        return selection

    async def _inventory(self, node: Candidate) -> frozenset[str] | NodeResult:
        """The names ``node`` holds, or its failure when it cannot tell."""
        try:
            response = await self.http.get(node.url + "/api/tags")
            if response.status_code >= 400:
                message = error_message(response.content, response.reason_phrase)
                return NodeResult.failure(node.name, response.status_code, message)
            entries = response.json().get("models") or []
        except httpx.TransportError as exc:
            return self._unreachable(node, exc)
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            return NodeResult.failure(node.name, _UNREACHABLE, f"unreadable /api/tags ({exc})")
        names = (e.get("name") or e.get("model") for e in entries if isinstance(e, dict))
        return frozenset(canonical_name(str(n)) for n in names if n)

    # -- running ----------------------------------------------------------------------------

    async def run(
        self,
        operation: Operation,
        body: Mapping[str, Any],
        *,
        named: Sequence[str] = (),
        progress: Progress | None = None,
        selection: Selection | None = None,
    ) -> OperationResult:
        """Run ``operation`` with the Ollama request ``body`` on every selected node at once
        (``selection``, else :meth:`select` now). ``progress`` hears each node's progress
        lines of a streaming operation as they arrive."""
        if selection is None:
            selection = await self.select(operation, operation.subject(body), named)
        ran = await asyncio.gather(
            *(self._on_node(t, operation, body, progress) for t in selection.targets),
            return_exceptions=True,
        )
        results = [
            r if isinstance(r, NodeResult) else _crashed(t.name, r)
            for t, r in zip(selection.targets, ran, strict=True)
        ]
        outcome = OperationResult(operation, selection.model, [*results, *selection.settled])
        if self.monitor is not None:
            self.monitor.note_inventory_changed()
        self.announce(operation, body, outcome.succeeded)
        return outcome

    async def _on_node(
        self,
        node: Candidate,
        operation: Operation,
        body: Mapping[str, Any],
        progress: Progress | None,
    ) -> NodeResult:
        url = node.url + operation.path
        try:
            if not operation.streams:
                response = await self.http.request(operation.method, url, json=dict(body))
                if response.status_code >= 400:
                    message = error_message(response.content, response.reason_phrase)
                    return NodeResult.failure(node.name, response.status_code, message)
                return NodeResult.success(node.name, response.status_code)
            # Streamed from the node even when nobody watches: a long pull then keeps sending,
            # where a single answer would sit silent past the read timeout.
            payload = {**body, "stream": True}
            async with self.http.stream(operation.method, url, json=payload) as response:
                if response.status_code >= 400:
                    message = error_message(await response.aread(), response.reason_phrase)
                    return NodeResult.failure(node.name, response.status_code, message)
                async for raw in response.aiter_lines():
                    if not raw.strip():
                        continue
                    item = json.loads(raw)
                    if isinstance(item, dict) and item.get("error"):
                        # The status line already said 200: the failure is the node's own.
                        return NodeResult.failure(node.name, 500, str(item["error"]))
                    if progress is not None:
                        progress(node.name, item)
                return NodeResult.success(node.name, response.status_code)
        except httpx.TransportError as exc:
            return self._unreachable(node, exc)
        except (httpx.HTTPError, ValueError) as exc:
            return NodeResult.failure(node.name, _UNREACHABLE, f"{type(exc).__name__}: {exc}")

    def _unreachable(self, node: Candidate, exc: Exception) -> NodeResult:
        error = f"unreachable ({exc or type(exc).__name__})"
        if self.monitor is not None:
            view = self.monitor.find(node.name)
            if view is not None:
                self.monitor.report_failure(view, f"{node.name}: {exc}")
        return NodeResult.failure(node.name, _UNREACHABLE, error)

    def announce(self, operation: Operation, body: Mapping[str, Any], nodes: list[str]) -> None:
        """Tell the monitor's event bus what succeeded where (nothing for push and blobs)."""
        if self.monitor is None or not nodes:
            return
        emit = self.monitor.emit
        if operation is Operation.DELETE:
            emit(MODEL_DELETED, _model(body, "model", "name"), nodes=nodes)
        elif operation is Operation.COPY:
            emit(MODEL_CREATED, _model(body, "destination"), operation="copy",
                 source=_model(body, "source"), nodes=nodes)  # fmt: skip
        elif operation in (Operation.PULL, Operation.CREATE):
            emit(MODEL_CREATED, _model(body, "model", "name"), operation=str(operation),
                 nodes=nodes)  # fmt: skip


def _crashed(node: str, exc: BaseException) -> NodeResult:
    """A node's run raised something unforeseen: its result, not the whole operation's."""
    if isinstance(exc, asyncio.CancelledError):
        raise exc
    return NodeResult.failure(node, 500, f"{type(exc).__name__}: {exc}")


def _model(body: Mapping[str, Any], *fields: str) -> str:
    """The model a request names in the first of ``fields`` it has, as nodes list it."""
    for name in fields:
        value = body.get(name)
        if isinstance(value, str) and value:
            return canonical_name(value)
    return ""
