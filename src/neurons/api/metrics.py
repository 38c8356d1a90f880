"""The control plane's ``/metrics``: the network as the health monitor sees it, the jobs in the
store, and the requests this app answered, in Prometheus text (issue 21's first step).

Names carry a ``neurons:`` prefix and follow vLLM's and llama.cpp's conventions
(``e2e_request_latency_seconds``, ``requests_total``). Each app has a registry of its own
(``app.state.metrics``): tests run several control planes in one process, and the global
registry would mix them. The network and the jobs are read at scrape time by a collector;
only the request counter and the latency histogram are kept by this module, by
:class:`RequestMetricsMiddleware`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import Table, func, select
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from neurons.network.states import BreakerState, NodeState
from neurons.store import Store
from neurons.store.engine import read_connection
from neurons.store.finetune import jobs_table
from neurons.store.learning import runs_table
from neurons.store.optimization import sessions_table

__all__ = ["ControlPlaneMetrics", "RequestMetricsMiddleware"]

# Label for a request no route matched: raw paths as labels would grow without bound.
OTHER_ROUTE = "other"
# Management calls take milliseconds, generations seconds to minutes: buckets for both.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_JOB_TABLES: tuple[tuple[str, Table], ...] = (
    ("optimization", sessions_table),
    ("fine_tuning", jobs_table),
    ("learning", runs_table),
)
# Shown at zero when no job has them, so a dashboard's series do not come and go.
_JOB_STATUSES = ("pending", "running", "completed", "failed", "cancelled")


class ControlPlaneMetrics:
    """The app's registry: the request metrics and the collector of the network and jobs."""

    def __init__(self, state: Any) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "neurons:requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "neurons:e2e_request_latency_seconds",
            "Time from a request's arrival to the end of its response (streams included).",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.collector = _PlaneCollector(state)
        self.registry.register(self.collector)

    async def render(self) -> bytes:
        """The text of one scrape; the store is read off the event loop first."""
        await self.collector.refresh_jobs()
        return generate_latest(self.registry)


class _PlaneCollector:
    def __init__(self, state: Any) -> None:
        self.state = state  # app.state: the lifespan puts the network and the store there
        self.jobs: dict[tuple[str, str], int] = {}

    async def refresh_jobs(self) -> None:
        store: Store | None = getattr(self.state, "store", None)
        if store is not None:
            self.jobs = await asyncio.to_thread(_count_jobs, store)

    def collect(self) -> Iterator[Metric]:
        network = getattr(self.state, "network", None)
        views = list(network.neurons) if network is not None else []
        node_state = GaugeMetricFamily(
            "neurons:node_state", "1 for the state a node is in, else 0.", labels=["node", "state"]
        )
        breaker = GaugeMetricFamily(
            "neurons:breaker_state",
            "1 for the state a node's circuit breaker is in, else 0.",
            labels=["node", "state"],
        )
        slots = GaugeMetricFamily(
            "neurons:node_slots", "Requests a node runs at once.", labels=["node"]
        )
        in_flight = GaugeMetricFamily(
            "neurons:node_in_flight", "Requests the gateway has open on a node.", labels=["node"]
        )
        sent = CounterMetricFamily(
            "neurons:node_requests",
            "Requests the gateway finished on a node (since this control plane started).",
            labels=["node"],
        )
        failed = CounterMetricFamily(
            "neurons:node_failures",
            "Requests that failed for a node's fault (they feed its breaker).",
            labels=["node"],
        )
        for view in views:
            for state in NodeState:
                node_state.add_metric([view.name, str(state)], float(view.state is state))
            for position in BreakerState:
                breaker.add_metric(
                    [view.name, str(position)], float(view.breaker.state is position)
                )
            slots.add_metric([view.name], view.slots)
            in_flight.add_metric([view.name], view.in_flight)
            sent.add_metric([view.name], view.requests)
            failed.add_metric([view.name], view.failures)
        yield from (node_state, breaker, slots, in_flight, sent, failed)
        jobs = GaugeMetricFamily(
            "neurons:jobs", "Jobs in the store, by kind and status.", labels=["kind", "status"]
        )
        for (kind, status), count in sorted(self.jobs.items()):
            jobs.add_metric([kind, status], count)
        yield jobs


def _count_jobs(store: Store) -> dict[tuple[str, str], int]:
    counts = {(kind, status): 0 for kind, _ in _JOB_TABLES for status in _JOB_STATUSES}
    with read_connection(store.engine) as conn:
        for kind, table in _JOB_TABLES:
            query = select(table.c.status, func.count()).group_by(table.c.status)
            for status, count in conn.execute(query):
                counts[(kind, status)] = count
    return counts


class RequestMetricsMiddleware:
    """Counts each request by its route's template and times it until its response ends."""

    def __init__(self, app: ASGIApp, metrics: ControlPlaneMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the app raises before a response

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = _route_template(scope)
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)


def _route_template(scope: Scope) -> str:
    """The matched route's path template: the router leaves the route in the scope."""
    route = scope.get("route")
    if route is not None:
        return str(getattr(route, "path", OTHER_ROUTE))
    # Refused before routing (no key, a body too large): find the route it was meant for.
    # Only refusals and unknown paths come here, so the walk costs nothing on the usual path.
    app = scope.get("app")
    for candidate in getattr(getattr(app, "router", None), "routes", ()):
        match, _ = candidate.matches(scope)
        if match is not Match.NONE:
            return str(getattr(candidate, "path", OTHER_ROUTE))
    return OTHER_ROUTE
