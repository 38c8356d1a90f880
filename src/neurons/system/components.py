"""The control plane's components: thin adapters that build the services the routes use and
start and stop them as :class:`~neurons.system.core.Component` s. Each puts what it builds on
``app.state`` under the names the routes read (``store``, ``auth``, ``network``, ...).

:func:`control_plane_components` lists them in registration order, which is also the start
order (each depends only on earlier ones)::

    store → events → auth → persistence → node_clients → [neuron] → network
          → health_monitor → plugins → library → gateway
          → optimization → fine_tuning → learning

and the reverse is the stop order: the job services checkpoint their work first (learning,
fine-tuning, optimization), while the nodes they talk to are still there; persistence takes
the shutdown snapshot once they have; the event bus stores what was published and the store
closes last.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
from starlette.datastructures import State

from neurons.auth.node_tokens import NodeTokens, node_http_client
from neurons.auth.sealing import Sealer
from neurons.auth.service import AuthService
from neurons.auth.store_limiter import limiter_for
from neurons.config import Settings
from neurons.errors import ConfigError
from neurons.events import EventBus
from neurons.finetune.service import FineTuningService
from neurons.learning.service import LearningService
from neurons.library.service import LibraryService
from neurons.network.bounds import Bounds
from neurons.network.fanout import ModelOperations
from neurons.network.gateway import Gateway, upstream_session
from neurons.network.gateway_openai import OpenAIGateway
from neurons.network.manager import NetworkManager
from neurons.network.routing import RoutingPolicy
from neurons.optimize.service import OptimizationService
from neurons.persistence import PersistenceService
from neurons.plugins.loader import PluginHost, default_host
from neurons.store import Store, open_store
from neurons.system.core import Component
from neurons.system.inference import InferenceComponent

__all__ = [
    "AuthComponent",
    "EventsComponent",
    "FineTuningComponent",
    "GatewayComponent",
    "HealthMonitorComponent",
    "LearningComponent",
    "LibraryComponent",
    "NetworkComponent",
    "NodeClientsComponent",
    "NodeSpec",
    "OptimizationComponent",
    "PersistenceComponent",
    "PluginsComponent",
    "StoreComponent",
    "control_plane_components",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeSpec:
    """A node to register at start-up."""

    name: str
    url: str
    kind: str  # "embedded" | "ollama"
    token: str | None = field(default=None, repr=False)  # the node token it requires


def control_plane_components(
    state: State,
    settings: Settings,
    nodes: Sequence[NodeSpec],
    neurons: Sequence[Component] = (),
) -> list[Component]:
    """The control plane's components, in registration order. ``neurons`` are components
    running the nodes in ``nodes`` (``neurons up``'s embedded neuron): the network starts
    after them and stops before them."""
    store = StoreComponent(state, settings)
    events = EventsComponent(state, store)
    clients = NodeClientsComponent(settings)
    network = NetworkComponent(state, settings, nodes, store, events, clients, neurons)
    monitor = HealthMonitorComponent(network)
    plugins = PluginsComponent(state)
    fine_tuning = FineTuningComponent(state, settings, store, events, monitor)
    return [
        store,
        events,
        AuthComponent(state, settings, store),
        PersistenceComponent(state, settings, store, events),
        clients,
        *neurons,
        network,
        monitor,
        plugins,
        LibraryComponent(state, settings, store, clients, monitor),
        *([InferenceComponent(state, settings)] if settings.inference else []),
        GatewayComponent(state, settings, monitor, clients, plugins),
        OptimizationComponent(state, settings, store, events, monitor),
        fine_tuning,
        LearningComponent(state, settings, store, events, fine_tuning=fine_tuning),
    ]


class StoreComponent(Component):
    """The database (migrated on open); closed last."""

    name = "store"
    store: Store

    def __init__(self, state: State, settings: Settings) -> None:
        self.state = state
        self.url = settings.resolved_database_url

    async def start(self) -> None:
        self.store = await asyncio.to_thread(open_store, self.url)
        self.state.store = self.store

    async def stop(self) -> None:
        self.store.close()

    def metrics(self) -> dict[str, Any]:
        return {"database": self.url.split(":", 1)[0]}  # the dialect; a URL may hold a password


class EventsComponent(Component):
    """The event bus (``/api/ai/events``); stopped after everything that publishes."""

    name = "events"
    bus: EventBus

    def __init__(self, state: State, store: StoreComponent) -> None:
        self.state = state
        self.store = store
        self.depends_on = (store.name,)

    async def start(self) -> None:
        self.bus = EventBus(self.store.store)
        self.state.events = self.bus

    async def stop(self) -> None:
        await asyncio.to_thread(self.bus.close)  # stores the events still handed over

    def metrics(self) -> dict[str, Any]:
        return {"subscribers": self.bus.subscribers}


class AuthComponent(Component):
    """API keys: refuses to start when serving beyond loopback without keys."""

    name = "auth"
    auth: AuthService

    def __init__(self, state: State, settings: Settings, store: StoreComponent) -> None:
        self.state = state
        self.settings = settings
        self.store = store
        self.depends_on = (store.name,)

    async def start(self) -> None:
        auth = AuthService(
            self.store.store,
            self.settings.resolved_master_key,
            limiter_for(self.store.store, self.settings.rate_limits),
        )
        auth.check_exposure(self.settings.host, self.settings.insecure)
        auth.start()
        self.auth = self.state.auth = auth

    async def stop(self) -> None:
        await self.auth.aclose()  # writes the keys' usage counters

    def metrics(self) -> dict[str, Any]:
        return {"keys_required": self.auth.enabled}


class PersistenceComponent(Component):
    """State snapshots every ``snapshot_interval_s``, and one at shutdown."""

    name = "persistence"
    persistence: PersistenceService

    def __init__(
        self, state: State, settings: Settings, store: StoreComponent, events: EventsComponent
    ) -> None:
        self.state = state
        self.settings = settings
        self.store = store
        self.events = events
        self.depends_on = (store.name, events.name)

    async def start(self) -> None:
        self.persistence = PersistenceService(
            self.store.store, self.settings, publish=self.events.bus.publish
        )
        self.state.persistence = self.persistence
        self.persistence.start()

    async def stop(self) -> None:
        # Started early, so stopped late: the snapshot holds what the job services left.
        await self.persistence.aclose()

    def metrics(self) -> dict[str, Any]:
        return {
            "interval_s": self.settings.snapshot_interval_s,
            "max_versions": self.settings.snapshot_max_versions,
            "path": str(self.settings.resolved_snapshot_path),
        }


class NodeClientsComponent(Component):
    """Pooled keep-alive connections to the nodes, sending each node its token: httpx for
    the services, aiohttp for the gateway's request path. No limit on a whole answer
    (generations are long), but a node silent for ``node_timeout_s`` fails the call."""

    name = "node_clients"
    tokens: NodeTokens
    sealer: Sealer
    http: httpx.AsyncClient
    session: aiohttp.ClientSession

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def start(self) -> None:
        self.tokens = NodeTokens()
        self.sealer = Sealer(self.settings.resolved_secret_key_file)
        self.http = node_http_client(self.tokens, self.settings.node_timeout_s)
        self.session = upstream_session(self.settings.node_timeout_s)

    async def stop(self) -> None:
        await self.session.close()
        await self.http.aclose()

    def metrics(self) -> dict[str, Any]:
        return {"read_timeout_s": self.settings.node_timeout_s}


class NetworkComponent(Component):
    """The node registry: the start-up nodes (tokens sealed), the real Ollama at
    ``ollama_base_url`` when it answers, and the :class:`NetworkManager` over them."""

    name = "network"
    network: NetworkManager

    def __init__(
        self,
        state: State,
        settings: Settings,
        nodes: Sequence[NodeSpec],
        store: StoreComponent,
        events: EventsComponent,
        clients: NodeClientsComponent,
        neurons: Sequence[Component] = (),
    ) -> None:
        self.state = state
        self.settings = settings
        self.nodes = list(nodes)
        self.store = store
        self.events = events
        self.clients = clients
        self.depends_on = (store.name, events.name, clients.name, *(n.name for n in neurons))

    async def start(self) -> None:
        store, clients = self.store.store, self.clients
        for spec in self.nodes:
            sealed = None if spec.token is None else clients.sealer.seal(spec.token)
            store.nodes.upsert(spec.name, spec.url, spec.kind, token_sealed=sealed)
        url = self.settings.ollama_base_url
        if url and await _answers(clients.http, url):
            store.nodes.upsert("ollama", url, "ollama")
            log.info("joined the real Ollama at %s", url)
        self.network = NetworkManager(store, self.settings, clients.http, clients.tokens)
        self.network.monitor.publish = self.events.bus.publish  # node up/down, breakers, ...
        self.state.network = self.network

    async def stop(self) -> None:
        await self.network.aclose()

    def metrics(self) -> dict[str, Any]:
        views = self.network.neurons
        return {"nodes": len(views), "kinds": dict(Counter(v.kind for v in views))}


class HealthMonitorComponent(Component):
    """Probes every node before the gateway opens, then every ``health_interval_s``."""

    name = "health_monitor"

    def __init__(self, network: NetworkComponent) -> None:
        self.network = network
        self.depends_on = (network.name,)

    async def start(self) -> None:
        monitor = self.network.network.monitor
        await monitor.check_all()
        monitor.start()

    async def stop(self) -> None:
        await self.network.network.monitor.stop()

    def metrics(self) -> dict[str, Any]:
        views = self.network.network.neurons
        return {
            "interval_s": self.network.network.monitor.interval_s,
            "states": dict(Counter(str(v.state) for v in views)),
            "routable": sum(1 for v in views if v.state.routable),
        }


class PluginsComponent(Component):
    """Installed plugins (entry points): routing policies and more; one that fails to load
    is listed with its error, and the rest work."""

    name = "plugins"
    host: PluginHost

    def __init__(self, state: State) -> None:
        self.state = state

    async def start(self) -> None:
        self.host = self.state.plugins = default_host()

    async def stop(self) -> None:
        pass  # plugins hold nothing of their own to close

    def metrics(self) -> dict[str, Any]:
        statuses = Counter(info.status for info in self.host.infos())
        return {"loaded": statuses["loaded"], "failed": statuses["failed"]}


class LibraryComponent(Component):
    """Seed 002's model library (``/api/ai/ollama/models``)."""

    name = "library"

    def __init__(
        self,
        state: State,
        settings: Settings,
        store: StoreComponent,
        clients: NodeClientsComponent,
        monitor: HealthMonitorComponent,
    ) -> None:
        self.state = state
        self.settings = settings
        self.store = store
        self.clients = clients
        self.monitor = monitor
        # After the first health pass: model operations go by the monitor's views, as the
        # gateway's do.
        self.depends_on = (store.name, clients.name, monitor.name)

    async def start(self) -> None:
        monitor = self.monitor.network.network.monitor
        self.state.library = LibraryService(
            self.store.store, self.settings, self.clients.http, monitor
        )

    async def stop(self) -> None:
        pass  # the node clients it uses are closed by their own component


class GatewayComponent(Component):
    """The Ollama API and the OpenAI API routed across the nodes. Healthy while one node is
    routable. Nothing to stop: in-flight requests are drained before components stop."""

    name = "gateway"
    gateway: Gateway

    def __init__(
        self,
        state: State,
        settings: Settings,
        monitor: HealthMonitorComponent,
        clients: NodeClientsComponent,
        plugins: PluginsComponent,
    ) -> None:
        self.state = state
        self.settings = settings
        self.monitor = monitor
        self.clients = clients
        self.plugins = plugins
        self.depends_on = (monitor.name, clients.name, plugins.name)

    async def start(self) -> None:
        settings, clients = self.settings, self.clients
        bounds = Bounds.from_settings(settings)
        self.gateway = Gateway(
            self.monitor.network.network.monitor,
            clients.http,
            clients.session,
            _routing_policy(self.plugins.host, settings.routing_policy),
            attempts=settings.gateway_attempts,
            sticky_prefix_chars=settings.sticky_prefix_chars,
            bounds=bounds,
        )
        metrics = getattr(self.state, "metrics", None)
        if metrics is not None:  # None: metrics are off, the request path records nothing
            self.gateway.recorder = metrics.inference
        # The plane's own embedding model (seed 001), answered without a node; None when off.
        self.gateway.local = getattr(self.state, "inference", None)
        self.state.gateway = self.gateway
        self.state.model_ops = ModelOperations(self.gateway)
        self.state.openai = OpenAIGateway(self.gateway, bounds)

    async def stop(self) -> None:
        pass

    def health(self) -> dict[str, Any]:
        routable = len(self.gateway.monitor.routable())
        return {"ok": routable > 0, "routable_nodes": routable}

    def metrics(self) -> dict[str, Any]:
        views = self.gateway.monitor.ordered()
        return {
            "routing_policy": self.settings.routing_policy,
            "requests": sum(v.requests for v in views),
            "failures": sum(v.failures for v in views),
            "in_flight": sum(v.in_flight for v in views),
        }


# The job services' stops wait for their runs' checkpoints within deadlines of their own
# (the jobs runtime's, 60-70 s) and then give the leases back; cut short, the leases would be
# left to expire before the next control plane could resume the work.
_JOBS_STOP_S = 120.0


class _JobsComponent(Component):
    """A kind of background work: at start its runtime's supervisor adopts what a previous
    process left running (now, and every third of the lease); at stop the runs here
    checkpoint and give their lease back, for the next control plane to resume at once.
    A subclass only builds its service."""

    stop_timeout_s = _JOBS_STOP_S
    service: OptimizationService | FineTuningService | LearningService

    def __init__(
        self,
        state: State,
        settings: Settings,
        store: StoreComponent,
        events: EventsComponent,
        monitor: HealthMonitorComponent | None = None,
    ) -> None:
        self.state = state
        self.settings = settings
        self.store = store
        self.events = events
        self.monitor = monitor
        needs = (store.name, events.name)
        self.depends_on = needs if monitor is None else (*needs, monitor.name)

    @property
    def network(self) -> NetworkManager:
        assert self.monitor is not None, f"{self.name} needs the health monitor"
        return self.monitor.network.network

    def build(self) -> OptimizationService | FineTuningService | LearningService:
        raise NotImplementedError

    async def start(self) -> None:
        self.service = self.build()
        setattr(self.state, self.name, self.service)
        self.service.start_supervisor()

    async def stop(self) -> None:
        await self.service.aclose()


class OptimizationComponent(_JobsComponent):
    """Parameter optimization sessions (they run trials on the nodes)."""

    name = "optimization"

    def build(self) -> OptimizationService:
        publish = self.events.bus.publish
        return OptimizationService(self.store.store, self.settings, self.network, publish=publish)


class FineTuningComponent(_JobsComponent):
    """Fine-tuning jobs (they deploy to the nodes); each worker here writes a checkpoint at
    stop."""

    name = "fine_tuning"
    service: FineTuningService

    def build(self) -> FineTuningService:
        publish = self.events.bus.publish
        return FineTuningService(self.store.store, self.settings, self.network, publish=publish)


class LearningComponent(_JobsComponent):
    """Distributed-learning runs (no node needed) and LLM teaching jobs (through the
    fine-tuning jobs, so it starts after them and stops first); at stop runs end after their
    current round's checkpoint."""

    name = "learning"

    def __init__(
        self,
        state: State,
        settings: Settings,
        store: StoreComponent,
        events: EventsComponent,
        *,
        fine_tuning: FineTuningComponent,
    ) -> None:
        super().__init__(state, settings, store, events)
        self.fine_tuning = fine_tuning
        self.depends_on = (*self.depends_on, fine_tuning.name)

    def build(self) -> LearningService:
        return LearningService(
            self.store.store,
            self.settings,
            publish=self.events.bus.publish,
            fine_tuning=self.fine_tuning.service,
        )


def _routing_policy(plugins: PluginHost, name: str) -> RoutingPolicy:
    policies = plugins.routing_policies()
    if name not in policies:
        raise ConfigError(
            f"unknown routing policy {name!r}; installed: {', '.join(sorted(policies))}"
        )
    return policies[name]()


async def _answers(client: httpx.AsyncClient, url: str) -> bool:
    try:
        response = await client.get(url.rstrip("/") + "/api/version", timeout=2.0)
    except httpx.HTTPError:
        return False
    return response.status_code == 200
