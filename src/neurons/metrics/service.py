"""The control plane's metrics service: one Prometheus registry per app (tests run several
control planes in one process, and the global registry would mix them), and the views built
on it.

- ``/metrics``: Prometheus text. Names carry a ``neurons:`` prefix and follow vLLM's and
  llama.cpp's conventions. Kept here: HTTP requests by route, method and status and their
  end-to-end latency (:class:`~neurons.api.metrics.RequestMetricsMiddleware`); inferences by
  node, model, route and status, time to first token, time per output token, tokens and
  gateway retries (:mod:`neurons.metrics.inference`); per-key requests, tokens and 429s
  (:mod:`neurons.metrics.keys`). Read at scrape time: node state, breaker, slots, in flight,
  queued and busy slots (from the health monitor), and jobs by kind and status (the store).
- ``/api/ai/metrics/summary`` and its stream: the live window (rates, percentiles) with the
  nodes and the jobs under way, for the dashboard and ``neurons top``.
- ``/api/ai/metrics/models``: seed 001's ModelMetrics per model and node.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import Table, func, select

from neurons.metrics.inference import InferenceRecorder
from neurons.metrics.keys import KeyMetrics
from neurons.network.local_models import LOCAL_NODE
from neurons.network.states import BreakerState, NodeState
from neurons.store import Store
from neurons.store.engine import read_connection
from neurons.store.finetune import jobs_table
from neurons.store.learning import runs_table
from neurons.store.optimization import sessions_table

__all__ = ["CURRENT_S", "LATENCY_BUCKETS", "MetricsService"]

# Management calls take milliseconds, generations seconds to minutes: buckets for both.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
CURRENT_S = 10  # "now" in a summary: the rates of the last this many seconds
_JOB_TABLES: tuple[tuple[str, Table], ...] = (
    ("optimization", sessions_table),
    ("fine_tuning", jobs_table),
    ("learning", runs_table),
)
# Shown at zero when no job has them, so a dashboard's series do not come and go.
_JOB_STATUSES = ("pending", "running", "completed", "failed", "cancelled")
_UNDER_WAY = ("pending", "running")


class MetricsService:
    """The app's registry and what reads it. ``state`` is ``app.state``: the lifespan puts
    the network and the store there after this is built."""

    def __init__(self, state: Any) -> None:
        self.state = state
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
        self.inference = InferenceRecorder(self.registry)
        self.keys = KeyMetrics(self.registry)
        self.collector = _PlaneCollector(state)
        self.registry.register(self.collector)
        # Set (from any thread) when the plane starts to drain: the summary streams end.
        self.streams_ended = threading.Event()

    async def render(self) -> bytes:
        """The text of one scrape; the store is read off the event loop first."""
        await self.collector.refresh_jobs()
        return generate_latest(self.registry)

    # -- the JSON views ---------------------------------------------------------------------

    async def summary(self, window_s: int = 300, step_s: int | None = None) -> dict[str, Any]:
        """The live view: rates now, a series over ``window_s``, nodes and jobs under way."""
        window = self.inference.window
        now = self.inference.clock()
        window_s = max(10, min(window_s, window.span_s))
        step_s = step_s or max(1, window_s // 60)
        current = window.stats(now - CURRENT_S, now)
        book = self.inference.book.entries.values()
        return {
            "now": now,
            "window_s": window_s,
            "step_s": step_s,
            "current": {
                k: current[k]
                for k in ("requests_per_s", "error_rate", "tokens_per_s", "p50_ms", "p95_ms")
            },
            "since_start": {
                "requests": sum(m.inference_count for m in book),
                "errors": sum(m.error_count for m in book),
                "prompt_tokens": sum(m.prompt_tokens for m in book),
                "completion_tokens": sum(m.completion_tokens for m in book),
            },
            "series": window.series(now, window_s, step_s),
            "nodes": [_node(view) for view in self._views()],
            "jobs": await self._jobs_under_way(),
        }

    def models(self, model: str | None = None) -> list[dict[str, Any]]:
        """Seed 001's ModelMetrics per model (and per node), with each copy's digest; the
        control plane's own embedding model (seed 001's module) among them once loaded."""
        monitor = getattr(getattr(self.state, "network", None), "monitor", None)
        digest_of = None if monitor is None else monitor.digest_of
        report = self.inference.book.report(digest_of, model)
        local = getattr(self.state, "inference", None)
        loaded = None if local is None else local.loaded
        if local is not None and loaded is not None and (model is None or local.serves(model)):
            numbers = loaded.metrics.to_dict()
            node = {"node": LOCAL_NODE, "digest": loaded.digest, **numbers}
            entry = {"model": local.name, **numbers, "digests": [loaded.digest], "nodes": [node]}
            report = sorted([*report, entry], key=lambda e: str(e["model"]))
        return report

    def _views(self) -> list[Any]:
        network = getattr(self.state, "network", None)
        return list(network.neurons) if network is not None else []

    async def _jobs_under_way(self) -> list[dict[str, Any]]:
        store: Store | None = getattr(self.state, "store", None)
        if store is None:
            return []
        return await asyncio.to_thread(_jobs_under_way, store)


def _node(view: Any) -> dict[str, Any]:
    return {
        "name": view.name,
        "state": str(view.state),
        "breaker": str(view.breaker.state),
        "slots": view.slots,
        "slots_busy": min(view.in_flight, view.slots),
        "in_flight": view.in_flight,
        "queued": max(0, view.in_flight - view.slots),
        "requests": view.requests,
        "failures": view.failures,
        "latency_ms": None if view.latency_ms is None else round(view.latency_ms, 2),
        "loaded": sorted(view.loaded),
    }


def _jobs_under_way(store: Store) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = []
    with read_connection(store.engine) as conn:
        for kind, table in _JOB_TABLES:
            rows = conn.execute(
                select(table).where(table.c.status.in_(_UNDER_WAY)).order_by(table.c.id)
            ).mappings()
            jobs.extend({"kind": kind, **_job_line(kind, row)} for row in rows)
    return jobs


def _job_line(kind: str, row: Any) -> dict[str, Any]:
    """A job's id, a name a person knows it by, its status and how far it is."""
    if kind == "optimization":
        name = f"{row['model_name']} ({row['objective']})"
        progress = f"trial {row['current_iteration']}"
    elif kind == "fine_tuning":
        name = str(row["target_model_name"])
        phase = row["current_phase"] or "-"
        progress = f"{phase} {_percent(row['progress'])}".strip()
    else:
        name = f"{row['mode']} on {row['dataset']}"
        progress = f"round {row['current_round']}/{row['total_rounds']}"
    return {"id": row["id"], "name": name, "status": row["status"], "progress": progress}


def _percent(progress: Any) -> str:
    try:
        value = json.loads(progress) if isinstance(progress, str) else progress
    except ValueError:
        return ""
    if isinstance(value, int | float):
        return f"{float(value):.0f}%"
    return ""


class _PlaneCollector:
    """The network and the jobs, read at scrape time."""

    def __init__(self, state: Any) -> None:
        self.state = state
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
        busy = GaugeMetricFamily(
            "neurons:node_slots_busy",
            "A node's slots running a request the gateway sent (in flight, up to its slots).",
            labels=["node"],
        )
        in_flight = GaugeMetricFamily(
            "neurons:node_in_flight", "Requests the gateway has open on a node.", labels=["node"]
        )
        queued = GaugeMetricFamily(
            "neurons:node_requests_queued",
            "Requests open on a node beyond its slots: waiting in its queue.",
            labels=["node"],
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
            busy.add_metric([view.name], min(view.in_flight, view.slots))
            in_flight.add_metric([view.name], view.in_flight)
            queued.add_metric([view.name], max(0, view.in_flight - view.slots))
            sent.add_metric([view.name], view.requests)
            failed.add_metric([view.name], view.failures)
        yield from (node_state, breaker, slots, busy, in_flight, queued, sent, failed)
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
