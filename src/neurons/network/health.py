"""The live view of the network: every registered node's state, breaker and inventory.

The store is the registry (the CLI may add or remove nodes while the control plane runs); the
monitor re-reads it on every pass, probes each node with cheap calls (``/api/version``, then
``/api/ps`` and ``/api/tags`` for its inventory, and ``/api/neuron/status`` on embedded
neurons for their slot count; an OpenAI-compatible node, ``/v1/models``), and applies the
transition tables of :mod:`neurons.network.states`. What each copy of a model can do comes
with its ``/api/tags`` entry (embedded neurons, recent Ollama); an older Ollama lists it only
in ``/api/show``, which is read once per model digest and cached. The gateway reports what
real requests saw (passive detection), which feeds the breakers between probes.

With a ``publish`` callable (the control plane's event bus) the monitor announces a node
coming up (``node.up``), going offline (``node.down``) and its breaker moving
(``node.breaker``); :meth:`HealthMonitor.emit` is also how the model operations and sync
announce theirs. Without one (the CLI, tests) nothing is announced.

Everything here runs on one event loop; views are mutated only from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from neurons.auth.node_tokens import NodeTokens
from neurons.auth.sealing import Sealer
from neurons.errors import NeuronsError, NodeNotFoundError, NoNodeAvailableError
from neurons.events.kinds import NODE_BREAKER, NODE_DOWN, NODE_UP
from neurons.network.openai_inventory import OPENAI, tags_of
from neurons.network.routing import NodeView
from neurons.network.states import (
    BreakerState,
    CircuitBreaker,
    NodeEvent,
    NodeState,
    next_node_state,
)
from neurons.network.versions import PS, supports
from neurons.ollama.names import canonical_name
from neurons.store import NodeRecord, Store
from neurons.store.engine import utc_now

if TYPE_CHECKING:
    from neurons.events.bus import Publish

__all__ = ["PROBE_TIMEOUT_S", "HealthMonitor"]

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 3.0
# Failed probes in a row after which a degraded node counts as offline.
OFFLINE_AFTER_PROBES = 2


class HealthMonitor:
    def __init__(
        self,
        store: Store,
        http: httpx.AsyncClient,
        *,
        interval_s: float = 5.0,
        breaker_failures: int = 3,
        breaker_cooldown_s: float = 10.0,
        tokens: NodeTokens | None = None,
        sealer: Sealer | None = None,
        publish: Publish | None = None,
    ) -> None:
        self.store = store
        # Where the network's events go (the event bus's publish); None announces nothing.
        # Called on the event loop: the bus hands each event to its writer, never blocking.
        self.publish = publish
        self.http = http
        # The nodes' tokens, unsealed from the registry; the shared httpx client sends them
        # when it is built on this object (node_http_client), the gateway's aiohttp path asks.
        self.tokens = tokens or NodeTokens()
        self.sealer = sealer
        self._unsealed: dict[str, str] = {}
        self.interval_s = interval_s
        self.breaker_failures = breaker_failures
        self.breaker_cooldown_s = breaker_cooldown_s
        self.views: dict[str, NodeView] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        # Registry reads and state changes, one at a time: a registry snapshot taken before a
        # drain must not be applied after it (it would resume the node), nor a probe's write
        # land after the drain's.
        self._lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()  # the loop keeps only weak refs
        # Node id -> digest -> the capabilities its /api/show listed (None: it lists none).
        self._shown: dict[str, dict[str, tuple[str, ...] | None]] = {}
        # Node name -> the manifests last recorded in the store (written only on a change).
        self._manifests: dict[str, list[dict[str, Any]]] = {}

    # -- registry ---------------------------------------------------------------------------

    async def refresh_registry(self) -> None:
        """Bring the views in line with the store: new nodes appear, removed ones go."""
        async with self._lock:
            await self._refresh_registry()

    async def _refresh_registry(self) -> None:
        records = await asyncio.to_thread(self.store.nodes.list)
        seen: set[str] = set()
        for record in records:
            seen.add(record.id)
            self.tokens.set(record.url, self._token(record))
            view = self.views.get(record.id)
            if view is None:
                self.views[record.id] = self._new_view(record)
            else:
                view.name, view.url, view.kind = record.name, record.url.rstrip("/"), record.kind
                view.labels, view.priority = dict(record.labels), record.priority
                # Drained or resumed from another process (the CLI writes the store).
                if record.status == NodeState.DRAINING and view.state != NodeState.DRAINING:
                    view.state = NodeState.DRAINING
                elif record.status != NodeState.DRAINING and view.state == NodeState.DRAINING:
                    view.state = NodeState.UNKNOWN
        for gone in set(self.views) - seen:
            del self.views[gone]
            self._shown.pop(gone, None)

    def _token(self, record: NodeRecord) -> str | None:
        """The record's token in the clear (kept per sealed value: unsealing costs)."""
        sealed = record.token_sealed
        if sealed is None or self.sealer is None:
            return None
        token = self._unsealed.get(sealed)
        if token is None:
            try:
                token = self._unsealed[sealed] = self.sealer.unseal(sealed)
            except NeuronsError as exc:  # a wrong key file: the node is then unauthorized
                log.warning("node %s: %s", record.name, exc)
                return None
        return token

    def _new_view(self, record: NodeRecord) -> NodeView:
        state = NodeState.DRAINING if record.status == NodeState.DRAINING else NodeState.UNKNOWN
        view = NodeView(
            id=record.id,
            name=record.name,
            url=record.url.rstrip("/"),
            kind=record.kind,
            labels=dict(record.labels),
            priority=record.priority,
            state=state,
            breaker=CircuitBreaker(self.breaker_failures, self.breaker_cooldown_s),
            slots=_label_slots(record.labels) or 1,
        )

        def breaker_moved(old: BreakerState, new: BreakerState) -> None:
            self.emit(NODE_BREAKER, view.name, node_id=view.id, state=str(new),
                      error=view.last_error, **{"from": str(old)})  # fmt: skip

        view.breaker.on_change = breaker_moved
        return view

    def emit(self, kind: str, subject: str, **payload: Any) -> None:
        """Announce an event through ``publish``, if there is one; never raises (an event
        is not worth a failed probe or request). Payloads hold public fields only."""
        if self.publish is None:
            return
        try:
            self.publish(kind, subject, **payload)
        except Exception:
            log.exception("announcing %s %s failed", kind, subject)

    def ordered(self) -> list[NodeView]:
        """All views, most preferred first (priority, then name), as the store lists them."""
        return sorted(self.views.values(), key=lambda v: (-v.priority, v.name))

    def find(self, name_or_id: str) -> NodeView | None:
        for view in self.views.values():
            if name_or_id in (view.id, view.name):
                return view
        return None

    def routable(self) -> list[NodeView]:
        """Nodes that may take a request now: routable state and a breaker that lets it."""
        return [v for v in self.ordered() if v.state.routable and v.breaker.available()]

    def eligible(self, model: str) -> list[NodeView]:
        return [v for v in self.routable() if v.has(model)]

    def targets(self, model: str, nodes: Sequence[str] | None = None) -> list[NodeView]:
        """Where to create something built on ``model``: the nodes named (404 for an unknown
        one), else every healthy node holding it (503 when there is none)."""
        if nodes:
            views = []
            for name in nodes:
                view = self.find(name)
                if view is None:
                    raise NodeNotFoundError(f"no node named '{name}'")
                views.append(view)
            return views
        holders = self.eligible(model)
        if not holders:
            raise NoNodeAvailableError(f"no healthy node holds {model}")
        return holders

    # -- probes -----------------------------------------------------------------------------

    async def check_all(self) -> None:
        """One pass: re-read the registry, probe every node at once."""
        await self.refresh_registry()
        await asyncio.gather(*(self.probe(v) for v in list(self.views.values())))

    async def _record_manifests(self, view: NodeView, tags: dict[str, Any]) -> None:
        """Keep the node's model manifests (name, digest, size) in the store when they change,
        so state snapshots hold them, whichever process takes the snapshot."""
        manifests = manifests_of(tags)
        if self._manifests.get(view.name) == manifests:
            return
        record = {"url": view.url, "models": manifests, "seen_at": utc_now().isoformat()}
        try:
            await asyncio.to_thread(self.store.kv.set, MANIFESTS_KEY + view.name, record)
        except Exception:  # a locked database must not fail the probe: try on the next one
            log.exception("could not record %s's model manifests", view.name)
            return
        self._manifests[view.name] = manifests

    async def probe(self, view: NodeView) -> bool:
        started = time.perf_counter()
        try:
            if view.kind == OPENAI:  # no Ollama API: /v1/models is its inventory, all served
                tags = tags_of(await self._get(view, "/v1/models"))
                latency_ms = (time.perf_counter() - started) * 1000
                reported, results = None, [tags, tags]
                view.served = {canonical_name(n): n for n in _served_names(tags)}
            else:
                version = await self._get(view, "/api/version")
                latency_ms = (time.perf_counter() - started) * 1000
                reported = str(version.get("version") or "") or None
                # An Ollama older than /api/ps (0.1.38) is asked only what it knows.
                ps = self._get(view, "/api/ps") if supports(reported, PS) else _no_models()
                calls = [ps, self._get(view, "/api/tags")]
                if view.kind == "embedded":
                    calls.append(self._get(view, "/api/neuron/status"))
                results = await asyncio.gather(*calls)
        except (httpx.HTTPError, ValueError) as exc:
            has_token = self.tokens.token(view.url) is not None
            await self._probe_failed(view, _probe_error(view, exc, has_token))
            return False
        view.version = reported  # what the gateway's version bridge goes by
        view.loaded = frozenset(_names(results[0]))
        view.models = frozenset(_names(results[1]))
        await self._record_manifests(view, results[1])
        unlisted = self._listed_capabilities(view, results[1])
        if view.kind == OPENAI:  # it has no /api/show: unknown, and the node refuses
            unlisted = []
        label_slots = _label_slots(view.labels)
        if label_slots:
            view.slots = label_slots
        elif len(results) > 2 and isinstance(results[2].get("slots"), int):
            view.slots = max(1, results[2]["slots"])
        view.observe_latency(latency_ms)
        view.consecutive_probe_failures = 0
        view.last_error = None
        if view.breaker.state is BreakerState.HALF_OPEN:
            view.breaker.record_success()  # the probe was the trial: the node answers again
        await self._transition(view, NodeEvent.PROBE_OK, seen=True)
        if unlisted:  # after the transition: a slow /api/show must not hold up the state
            await self._shown_capabilities(view, unlisted)
        return True

    def _listed_capabilities(self, view: NodeView, tags: dict[str, Any]) -> list[_Unlisted]:
        """Set the view's capabilities from the ``/api/tags`` entries and the ``/api/show``
        cache; return the models whose capabilities only ``/api/show`` can tell."""
        cache = self._shown.get(view.id, {})
        kept: dict[str, tuple[str, ...] | None] = {}  # drops digests the node no longer has
        found: dict[str, tuple[str, ...]] = {}
        unlisted: list[_Unlisted] = []
        for item in _entries(tags):
            name = str(item.get("name") or item.get("model"))
            key, digest = canonical_name(name), str(item.get("digest") or name)
            listed = _capability_list(item)
            if listed is not None:
                found[key] = listed
            elif digest in cache:
                kept[digest] = shown = cache[digest]
                if shown is not None:
                    found[key] = shown
            else:
                unlisted.append(_Unlisted(key, name, digest))
        self._shown[view.id] = kept
        view.capabilities = found
        return unlisted

    async def _shown_capabilities(self, view: NodeView, unlisted: list[_Unlisted]) -> None:
        """Read ``/api/show`` for each unlisted model at once. A failed call is tried again on
        the next probe; until then the capabilities stay unknown, which excludes nothing."""
        answers = await asyncio.gather(*(self._show(view, u.name) for u in unlisted))
        cache = self._shown.setdefault(view.id, {})
        found = dict(view.capabilities)
        for model, answer in zip(unlisted, answers, strict=True):
            if answer is not None:
                cache[model.digest] = shown = _capability_list(answer)
                if shown is not None:
                    found[model.key] = shown
        view.capabilities = found

    async def _show(self, view: NodeView, name: str) -> dict[str, Any] | None:
        try:
            response = await self.http.post(
                view.url + "/api/show", json={"model": name}, timeout=PROBE_TIMEOUT_S
            )
            return _object(response, "/api/show")
        except (httpx.HTTPError, ValueError) as exc:
            log.debug("node %s: /api/show %s failed: %s", view.name, name, exc)
            return None

    async def _get(self, view: NodeView, path: str) -> dict[str, Any]:
        response = await self.http.get(view.url + path, timeout=PROBE_TIMEOUT_S)
        return _object(response, path)

    async def _probe_failed(self, view: NodeView, error: str) -> None:
        view.consecutive_probe_failures += 1
        view.last_error = error
        if view.breaker.state is BreakerState.HALF_OPEN:
            view.breaker.record_failure()
        event = (
            NodeEvent.PROBES_EXHAUSTED
            if view.consecutive_probe_failures >= OFFLINE_AFTER_PROBES
            else NodeEvent.PROBE_FAILED
        )
        await self._transition(view, event, seen=False, detail={"error": error})

    async def _transition(
        self,
        view: NodeView,
        event: NodeEvent,
        *,
        seen: bool,
        detail: dict[str, Any] | None = None,
    ) -> None:
        async with self._lock:
            await self._apply(view, event, seen=seen, detail=detail)

    async def _apply(
        self,
        view: NodeView,
        event: NodeEvent,
        *,
        seen: bool,
        detail: dict[str, Any] | None = None,
    ) -> None:
        new = next_node_state(view.state, event)
        old, view.state = view.state, new
        if new != old:
            self._announce(view, old, new, event, detail)
        try:
            if new != old:
                log.info("node %s: %s -> %s (%s)", view.name, old, new, event)
                await asyncio.to_thread(
                    self.store.nodes.record_event,
                    view.id,
                    str(new),
                    {"from": str(old), "event": str(event), **(detail or {})},
                )
            if new != old or seen:
                await asyncio.to_thread(self.store.nodes.set_status, view.id, str(new), seen)
        except NeuronsError as exc:  # removed from the registry meanwhile
            log.debug("could not record %s for %s: %s", event, view.name, exc)

    def _announce(
        self,
        view: NodeView,
        old: NodeState,
        new: NodeState,
        event: NodeEvent,
        detail: dict[str, Any] | None,
    ) -> None:
        """node.up when a node starts taking requests again, node.down when it goes offline;
        the moves in between (degraded, draining, resumed) are in the node's own events."""
        if new.routable and not old.routable:
            kind = NODE_UP
        elif new is NodeState.OFFLINE:
            kind = NODE_DOWN
        else:
            return
        fields = {"from": str(old), "to": str(new), "event": str(event), **(detail or {})}
        self.emit(kind, view.name, node_id=view.id, url=view.url, **fields)

    async def drain(self, name_or_id: str, drain: bool = True) -> NodeView:
        """Take a node out of routing (it keeps its models and finishes open requests), or
        put it back; persisted, so the CLI and the control plane agree."""
        async with self._lock:
            await self._refresh_registry()
            record = await asyncio.to_thread(self.store.nodes.get, name_or_id)
            view = self.views[record.id]
            await self._apply(view, NodeEvent.DRAIN if drain else NodeEvent.RESUME, seen=False)
        if not drain:
            await self.probe(view)
        return view

    # -- passive detection (reported by the gateway) ---------------------------------------

    def report_success(self, view: NodeView, first_byte_ms: float | None = None) -> None:
        view.requests += 1
        view.breaker.record_success()
        if first_byte_ms is not None:
            view.observe_latency(first_byte_ms)

    def report_failure(self, view: NodeView, error: str) -> None:
        """A request failed for the node's fault: feed the breaker and probe it soon."""
        view.requests += 1
        view.failures += 1
        view.last_error = error
        before = view.breaker.state
        view.breaker.record_failure()
        if view.breaker.state is BreakerState.OPEN and before is not BreakerState.OPEN:
            log.warning("node %s: breaker open after %s", view.name, error)
            with contextlib.suppress(RuntimeError):
                task = asyncio.get_running_loop().create_task(self._record_breaker(view, error))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
        self._wake.set()

    async def _record_breaker(self, view: NodeView, error: str) -> None:
        with contextlib.suppress(NeuronsError):
            await asyncio.to_thread(
                self.store.nodes.record_event, view.id, "breaker_open", {"error": error}
            )

    def note_inventory_changed(self) -> None:
        """Models were created, pulled, copied or deleted: re-read inventories now."""
        self._wake.set()

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            self._wake.clear()
            try:
                await self.check_all()
            except Exception:  # a health pass must never end the loop
                log.exception("health pass failed")

    # -- reporting --------------------------------------------------------------------------

    def digest_of(self, node: str, model: str) -> str | None:
        """The digest ``node`` last listed for ``model`` (its version), if any."""
        wanted = canonical_name(model)
        for manifest in self._manifests.get(node, ()):
            if canonical_name(str(manifest.get("name") or "")) == wanted:
                return str(manifest.get("digest") or "") or None
        return None

    def describe(self, view: NodeView) -> dict[str, Any]:
        return {
            "id": view.id,
            "name": view.name,
            "url": view.url,
            "kind": view.kind,
            "labels": view.labels,
            "priority": view.priority,
            "state": str(view.state),
            "breaker": str(view.breaker.state),
            "version": view.version,
            "models": sorted(view.models),
            "capabilities": {m: list(c) for m, c in sorted(view.capabilities.items())},
            "loaded": sorted(view.loaded),
            "slots": view.slots,
            "in_flight": view.in_flight,
            "latency_ms": None if view.latency_ms is None else round(view.latency_ms, 2),
            "requests": view.requests,
            "failures": view.failures,
            "last_error": view.last_error,
            "has_token": self.tokens.token(view.url) is not None,
        }


@dataclass(frozen=True)
class _Unlisted:
    """A model whose ``/api/tags`` entry does not list its capabilities."""

    key: str  # canonical name
    name: str  # as the node lists it
    digest: str  # the cache key (the name when the node gives no digest)


def _probe_error(view: NodeView, exc: Exception, has_token: bool) -> str:
    if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code == 401:
        return (
            f"the node refused the control plane (401): it wants a node token, and the one "
            f"registered is {'wrong' if has_token else 'missing'}; register it again with "
            f"`neurons node rm {view.name}` and `neurons node add {view.url} --name "
            f"{view.name} --token T`"
        )
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


def _object(response: httpx.Response, path: str) -> dict[str, Any]:
    response.raise_for_status()
    data = response.json()
    if not isinstance(data, dict):
        raise ValueError(f"{path} answered {type(data).__name__}, not an object")
    return data


def _entries(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The model entries of ``/api/tags`` or ``/api/ps`` that have a name."""
    entries: list[dict[str, Any]] = []
    for item in payload.get("models") or []:
        if isinstance(item, dict):
            name = item.get("name") or item.get("model")
            if isinstance(name, str) and name:
                entries.append(item)
    return entries


async def _no_models() -> dict[str, Any]:
    """``/api/ps`` for a node too old to have it: nothing known to be loaded."""
    return {"models": []}


MANIFESTS_KEY = "node_manifests/"  # + node name: what the node's /api/tags last listed


def manifests_of(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The model manifests of a ``/api/tags`` answer, by name: name, digest and size.

    >>> manifests_of({"models": [{"name": "b:1", "digest": "d2", "size": 2},
    ...                          {"model": "a", "digest": "d1", "size": 1, "details": {}}]})
    [{'name': 'a:latest', 'digest': 'd1', 'size': 1}, {'name': 'b:1', 'digest': 'd2', 'size': 2}]
    """
    found = [
        {
            "name": canonical_name(str(item.get("name") or item.get("model"))),
            "digest": str(item.get("digest") or ""),
            "size": int(item.get("size") or 0),
        }
        for item in _entries(payload)
    ]
    return sorted(found, key=lambda entry: entry["name"])


def _names(payload: dict[str, Any]) -> list[str]:
    return [canonical_name(str(i.get("name") or i.get("model"))) for i in _entries(payload)]


def _served_names(payload: dict[str, Any]) -> list[str]:
    """The names as the node spells them (an OpenAI-compatible node's own model ids)."""
    return [str(i.get("name") or i.get("model")) for i in _entries(payload)]


def _capability_list(payload: dict[str, Any]) -> tuple[str, ...] | None:
    """``capabilities`` as the node lists them; None when it lists none (Ollama omits the
    field when empty, and an older Ollama's /api/tags never has it)."""
    listed = payload.get("capabilities")
    if not isinstance(listed, list) or not listed:
        return None
    return tuple(str(c) for c in listed)


def _label_slots(labels: dict[str, str]) -> int | None:
    """A ``slots=N`` label overrides what the node reports (real Ollama reports nothing)."""
    try:
        value = int(labels.get("slots", ""))
    except ValueError:
        return None
    return value if value >= 1 else None
