"""Seed 000's ``NetworkManager`` over the real network.

The seed's sketch keeps neurons in a list and prints; here each name does its real job:

- ``add_neuron`` registers a node (a URL, or a running :class:`NeuronProcess`) in the store,
  finds out whether it is an embedded neuron or an Ollama server, and probes it;
- ``connect_neurons`` probes every node and builds its inventory, so the gateway can route to
  it (nodes are connected through the control plane, not to each other);
- ``synchronize_neurons`` makes the models on the nodes match the declared placements by
  copying blobs from a node that has a model to nodes that should;
- ``manage_state`` runs one health pass (state transitions, breakers, inventories) and returns
  every node's state.

The control plane and the CLI both use this class, so both see one network.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import urlparse

import httpx

from neurons.auth.node_tokens import NodeTokens, node_http_client
from neurons.auth.sealing import Sealer
from neurons.config import Settings
from neurons.errors import InvalidRequestError
from neurons.network.health import PROBE_TIMEOUT_S, HealthMonitor
from neurons.network.openai_inventory import OPENAI
from neurons.network.routing import NodeView
from neurons.network.sync import SyncProgress, SyncReport, synchronize
from neurons.store import NODE_KINDS, Store

__all__ = ["NetworkManager", "detect_kind", "node_name_for"]


class HasURL(Protocol):
    @property
    def url(self) -> str: ...


def node_name_for(url: str) -> str:
    """A default node name from its address: ``http://10.0.0.5:11434`` → ``10.0.0.5-11434``."""
    parsed = urlparse(url)
    return f"{parsed.hostname}-{parsed.port or (443 if parsed.scheme == 'https' else 80)}"


def check_url(url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise InvalidRequestError(f"a node URL must look like http://host:port, not {url!r}")
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment:
        raise InvalidRequestError(f"a node URL has no path, query or fragment: {url!r}")
    return url.rstrip("/")


async def detect_kind(http: httpx.AsyncClient, url: str) -> str:
    """``embedded`` when the node answers our extension route; ``openai`` when it has no
    ``/api/version`` but lists ``/v1/models`` (Ollama has both); else ``ollama`` (also for a
    node that cannot be reached now)."""
    try:
        response = await http.get(url + "/api/neuron/status", timeout=PROBE_TIMEOUT_S)
        if response.status_code == 200:
            return "embedded"
        version = await http.get(url + "/api/version", timeout=PROBE_TIMEOUT_S)
        if version.status_code == 404:
            models = await http.get(url + "/v1/models", timeout=PROBE_TIMEOUT_S)
            if models.status_code == 200 and isinstance(models.json().get("data"), list):
                return OPENAI
    except (httpx.HTTPError, ValueError, AttributeError):
        pass
    return "ollama"


class NetworkManager:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        http: httpx.AsyncClient | None = None,
        tokens: NodeTokens | None = None,
    ) -> None:
        self.store = store
        self.settings = settings  # the caller's: library code never reads the environment
        self._own_http = http is None
        # With a client of its own it also makes the tokens that client sends; a caller that
        # brings a client (the control plane) brings the tokens it was built on.
        self.tokens = tokens or NodeTokens()
        self.sealer = Sealer(self.settings.resolved_secret_key_file)
        self.http = http or node_http_client(self.tokens, self.settings.node_timeout_s)
        self.monitor = HealthMonitor(
            store,
            self.http,
            interval_s=self.settings.health_interval_s,
            breaker_failures=self.settings.breaker_failures,
            breaker_cooldown_s=self.settings.breaker_cooldown_s,
            tokens=self.tokens,
            sealer=self.sealer,
        )

    async def aclose(self) -> None:
        await self.monitor.stop()
        if self._own_http:
            await self.http.aclose()

    @property
    def neurons(self) -> list[NodeView]:
        return self.monitor.ordered()

    # -- the seed's four verbs ---------------------------------------------------------------

    async def add_neuron(
        self,
        neuron: str | HasURL,
        *,
        name: str | None = None,
        labels: Mapping[str, str] | None = None,
        priority: int = 0,
        kind: str | None = None,
        token: str | None = None,
    ) -> dict[str, Any]:
        """Register a node by URL (or anything with a ``url``, like a NeuronProcess) and probe
        it; the answer describes the node as the monitor now sees it. ``token``: the node
        token it requires, kept sealed in the store and sent on every call."""
        url = check_url(neuron if isinstance(neuron, str) else neuron.url)
        if kind is not None and kind not in NODE_KINDS:
            raise InvalidRequestError(f"node kind must be one of {', '.join(NODE_KINDS)}")
        token = (token or "").strip() or None
        sealed = None if token is None else await asyncio.to_thread(self.sealer.seal, token)
        self.tokens.set(url, token)  # detect_kind already needs it
        kind = kind or await detect_kind(self.http, url)
        record = await asyncio.to_thread(
            functools.partial(
                self.store.nodes.add,
                name or node_name_for(url),
                url,
                kind,
                labels,
                priority,
                token_sealed=sealed,
            )
        )
        await self.monitor.refresh_registry()
        view = self.monitor.views[record.id]
        await self.monitor.probe(view)
        return self.monitor.describe(view)

    async def remove_neuron(self, name: str) -> None:
        await asyncio.to_thread(self.store.nodes.remove, name)
        await self.monitor.refresh_registry()

    async def connect_neurons(self) -> dict[str, str]:
        """Probe every node and read its inventory; the answer maps node name → state."""
        await self.monitor.check_all()
        return {v.name: str(v.state) for v in self.neurons}

    async def synchronize_neurons(
        self,
        model: str | None = None,
        progress: Callable[[SyncProgress], None] | None = None,
    ) -> SyncReport:
        """Copy models so every declared placement (or just ``model``'s) holds."""
        report = await synchronize(
            self.store, self.http, model=model, progress=progress, publish=self.monitor.publish
        )
        self.monitor.note_inventory_changed()
        return report

    async def manage_state(self) -> list[dict[str, Any]]:
        """One health pass; every node's state, breaker, inventory and load."""
        await self.monitor.check_all()
        return [self.monitor.describe(v) for v in self.neurons]

    # -- more than the seed ------------------------------------------------------------------

    async def drain(self, name: str, drain: bool = True) -> dict[str, Any]:
        return self.monitor.describe(await self.monitor.drain(name, drain))

    def status(self) -> dict[str, Any]:
        """The network as the monitor last saw it (no probing)."""
        views = self.neurons
        models = sorted({m for v in views for m in v.models})
        return {
            "nodes": [self.monitor.describe(v) for v in views],
            "healthy": sum(1 for v in views if v.state.routable),
            "total": len(views),
            "models": {m: [v.name for v in views if m in v.models] for m in models},
            "routing_policy": self.settings.routing_policy,
        }
