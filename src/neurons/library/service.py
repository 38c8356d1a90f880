"""The library's one code path for the REST API and the CLI: catalog + nodes + measurements +
hardware, answered in the seed's response shapes (without the ``success`` envelope, which the
edges add)."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import httpx

from neurons.auth.node_tokens import NodeTokens, node_http_client
from neurons.auth.sealing import Sealer
from neurons.client import NodeClient
from neurons.config import Settings
from neurons.errors import InvalidRequestError, ModelNotFoundError, NodeError, NotFoundError
from neurons.hardware.inventory import HardwareInventory
from neurons.library import advice
from neurons.library.catalog import load_catalog
from neurons.library.discovery import discover
from neurons.library.evaluation import evaluate_model
from neurons.library.performance import Measurement
from neurons.library.search import Library, parse_parameter_count
from neurons.modelfile.convert import to_create_request
from neurons.modelfile.parser import parse
from neurons.network.operations import Operation, OperationResult, Operations, Progress
from neurons.ollama.names import canonical_name
from neurons.store import NodeRecord, Store

if TYPE_CHECKING:
    from neurons.network.health import HealthMonitor

__all__ = ["LibraryService"]

SCOPES = ("host", "node", "network")


def _is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LibraryService:
    """``monitor``: the control plane's health monitor, whose live node views model
    operations then go by (as the gateway's do); without one (the CLI), the store's records."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        http: httpx.AsyncClient | None = None,
        monitor: HealthMonitor | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self._own_http = http is None
        if http is None:  # in-process (the CLI): send the registry's node tokens too
            sealer = Sealer(settings.resolved_secret_key_file)
            tokens = NodeTokens.from_records(store.nodes.list(), sealer)
            http = node_http_client(tokens, settings.node_timeout_s)
        self._http = http
        self._host: HardwareInventory | None = None
        self.operations = (
            Operations.on_store(store, http)
            if monitor is None
            else Operations.on_monitor(monitor, http)
        )

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    # -- nodes and hardware -----------------------------------------------------------------

    async def _records(self, online_only: bool = True) -> list[NodeRecord]:
        records = await asyncio.to_thread(self.store.nodes.list)
        if online_only:
            records = [r for r in records if r.status != "offline"]
        return records

    def _client(self, record: NodeRecord) -> NodeClient:
        return NodeClient(record.url, name=record.name, client=self._http)

    async def _node(self, name: str) -> NodeRecord:
        return await asyncio.to_thread(self.store.nodes.get, name)

    async def host_inventory(self) -> HardwareInventory:
        if self._host is None:
            settings = self.settings
            self._host = await asyncio.to_thread(
                HardwareInventory.collect,
                settings.host_stats,
                settings.gpu_stats,
                disk_path=settings.home,
                bandwidth=True,
            )
        return self._host

    async def node_inventory(self, record: NodeRecord) -> HardwareInventory:
        if record.kind == "embedded":
            response = await self._http.get(record.url + "/api/neuron/hardware", timeout=30.0)
            if response.status_code == 200:
                return HardwareInventory.model_validate(response.json())
        if _is_loopback(record.url):
            return await self.host_inventory()
        raise NodeError(f"the hardware of node '{record.name}' is unknown (not a neurons node)")

    async def _targets(self, node: str | None, scope: str) -> list[tuple[str, HardwareInventory]]:
        if scope not in SCOPES:
            raise InvalidRequestError(f"unknown scope '{scope}' (one of {', '.join(SCOPES)})")
        if node is not None or scope == "node":
            if node is None:
                raise InvalidRequestError("scope 'node' needs a node name")
            record = await self._node(node)
            return [(record.name, await self.node_inventory(record))]
        if scope == "network":
            targets = []
            for record in await self._records():
                try:
                    targets.append((record.name, await self.node_inventory(record)))
                except (NodeError, httpx.HTTPError):
                    continue
            if not targets:
                raise NodeError("no node of the network reports its hardware")
            return targets
        return [("host", await self.host_inventory())]

    # -- the library ------------------------------------------------------------------------

    async def library(self) -> Library:
        catalog = load_catalog()
        clients = [self._client(r) for r in await self._records()]
        found = await discover(clients, {m.name for m in catalog})
        latest = await asyncio.to_thread(self.store.evaluations.latest)
        measured = {
            name: Measurement(
                model=name,
                node=r.node,
                score=r.score,
                tokens_per_second=r.tokens_per_second,
                items=r.items,
                measured_at=r.created_at,
            )
            for name, r in latest.items()
        }
        return Library(catalog, found.copies, found.local_models, measured)

    async def get_library(self, category: str | None = None) -> dict[str, Any]:
        library = await self.library()
        grouped = library.by_category(category)
        return {
            "categories": {c: [e.summary() for e in entries] for c, entries in grouped.items()},
            "count": len(library.entries()),
        }

    async def search(
        self,
        query: str = "",
        *,
        category: str | None = None,
        size: str | None = None,
        min_performance: float | None = None,
        max_parameters: str | None = None,
        installed: bool | None = None,
        page: int = 1,
        page_size: int = 20,
    ) -> dict[str, Any]:
        library = await self.library()
        found = library.search(
            query,
            category=category,
            size=size,
            min_performance=min_performance,
            max_parameters=parse_parameter_count(max_parameters),
            installed=installed,
            page=page,
            page_size=page_size,
        )
        filters = {
            key: value
            for key, value in {
                "category": category,
                "size": size,
                "min_performance": min_performance,
                "max_parameters": max_parameters,
                "installed": installed,
            }.items()
            if value is not None
        }
        return {
            "query": query,
            "filters": filters,
            "results": [
                {**entry.summary(), "category": entry.model.categories[0], "relevance_score": score}
                for entry, score in found.results
            ],
            "count": found.count,
            "page": found.page,
            "page_size": found.page_size,
        }

    async def model_details(self, model_name: str) -> dict[str, Any]:
        return (await self.library()).get(model_name).details()

    async def recommendations(
        self,
        task_type: str,
        *,
        preferred_size: str | None = None,
        node: str | None = None,
        scope: str = "host",
        limit: int = 5,
    ) -> dict[str, Any]:
        library = await self.library()
        targets = await self._targets(node, scope)
        best: dict[str, dict[str, Any]] = {}
        for label, inventory in targets:
            for item in advice.recommend(
                library.entries(), inventory, task_type, preferred_size=preferred_size, limit=50
            ):
                item["target"] = label
                known = best.get(item["model_name"])
                if known is None or item["confidence_score"] > known["confidence_score"]:
                    best[item["model_name"]] = item
        ranked = sorted(best.values(), key=lambda r: (-r["confidence_score"], r["model_name"]))
        ranked = ranked[:limit]
        for item in ranked:
            item["alternatives"] = [r["model_name"] for r in ranked if r is not item][:3] or item[
                "alternatives"
            ]
        label, inventory = targets[0]
        return {
            "task_type": task_type,
            "preferred_size": preferred_size,
            "scope": "node" if node else scope,
            "system_info": _system_info(inventory, [t for t, _ in targets]),
            "recommendations": ranked,
        }

    async def compatibility(
        self, model_name: str, *, node: str | None = None, num_ctx: int | None = None
    ) -> dict[str, Any]:
        if num_ctx is not None and num_ctx < 1:
            raise InvalidRequestError("num_ctx must be at least 1")
        entry = (await self.library()).get(model_name)
        (label, inventory), *_ = await self._targets(node, "node" if node else "host")
        result = advice.compatibility(entry, inventory, num_ctx=num_ctx)
        return {
            "model_name": entry.name,
            "target": label,
            "system_info": _system_info(inventory, [label]),
            "compatibility": result.to_dict(),
        }

    async def compare(
        self, models: list[str], *, node: str | None = None, num_ctx: int | None = None
    ) -> dict[str, Any]:
        names = [m.strip() for m in models if m.strip()]
        if len(names) < 2:
            raise InvalidRequestError("compare needs at least two models, e.g. models=a,b")
        library = await self.library()
        missing = [n for n in names if _missing(library, n)]
        if missing:
            raise ModelNotFoundError(f"not in the library: {', '.join(missing)}")
        (label, inventory), *_ = await self._targets(node, "node" if node else "host")
        result = advice.compare([library.get(n) for n in names], inventory, num_ctx=num_ctx)
        result["target"] = label
        return result

    # -- operations on nodes ----------------------------------------------------------------

    async def installed(self) -> dict[str, Any]:
        library = await self.library()
        models = [e.details() for e in library.entries() if e.installed_on]
        return {"models": sorted(models, key=lambda m: m["name"]), "count": len(models)}

    async def _operate(
        self,
        operation: Operation,
        body: dict[str, Any],
        node: str | None,
        progress: Progress | None = None,
    ) -> OperationResult:
        """Run ``operation`` on ``node``, or on the nodes the operations layer picks
        (:mod:`neurons.network.operations`); an error only when no node succeeded, else the
        answer's ``per_node`` says what failed and what was skipped, and why."""
        named = [node] if node is not None else []
        result = await self.operations.run(operation, body, named=named, progress=progress)
        result.raise_unless_any_succeeded()
        return result

    async def pull(
        self,
        model: str,
        *,
        node: str | None = None,
        insecure: bool = False,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        body = {"model": model, "insecure": insecure}
        result = await self._operate(Operation.PULL, body, node, progress)
        return {"model": model, "results": result.results(), "per_node": _per_node(result)}

    async def delete(self, model: str, *, node: str | None = None) -> dict[str, Any]:
        name = canonical_name(model)
        result = await self._operate(Operation.DELETE, {"model": name}, node)
        return {"model": name, "deleted_from": result.succeeded, "per_node": _per_node(result)}

    async def copy(
        self, source: str, destination: str, *, node: str | None = None
    ) -> dict[str, Any]:
        body = {"source": source, "destination": destination}
        result = await self._operate(Operation.COPY, body, node)
        return {
            "source": source,
            "destination": destination,
            "nodes": result.succeeded,
            "per_node": _per_node(result),
        }

    async def create(
        self,
        name: str,
        modelfile: str,
        *,
        node: str | None = None,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Create ``name`` from Modelfile text. Over the API nothing is read from this
        machine's disk: FROM names a model or an ``@sha256:`` blob the node holds."""
        body, _ = to_create_request(parse(modelfile), name, local_files=False)
        result = await self._operate(Operation.CREATE, body, node, progress)
        return {"model": name, "results": result.results(), "per_node": _per_node(result)}

    async def evaluate(
        self, model: str, *, node: str | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        name = canonical_name(model)
        library = await self.library()
        entry = library.get(name)
        holders = [c.node for c in entry.installed_on]
        if node is None:
            if not holders:
                raise NotFoundError(f"model '{name}' is not installed on any node: pull it first")
            node = holders[0]
        record = await self._node(node)
        embedding = "completion" not in entry.capabilities
        result = await evaluate_model(self._client(record), name, embedding=embedding, limit=limit)
        digest = next((c.digest for c in entry.installed_on if c.node == record.name), None)
        saved = await asyncio.to_thread(
            self.store.evaluations.add,
            model=name,
            node=record.name,
            evaluation_set=result.evaluation_set,
            items=result.items,
            score=result.score,
            tokens_per_second=result.tokens_per_second,
            digest=digest,
            details=result.details,
        )
        return {
            "model": name,
            "node": record.name,
            "evaluation_set": result.evaluation_set,
            "items": result.items,
            "score": result.score,
            "tokens_per_second": result.tokens_per_second,
            "measured_at": saved.created_at,
            "details": result.details,
        }


def _per_node(result: OperationResult) -> list[dict[str, Any]]:
    """Each node's outcome, in the operations layer's one shape."""
    return [r.to_dict() for r in result.nodes]


def _missing(library: Library, name: str) -> bool:
    try:
        library.get(name)
    except ModelNotFoundError:
        return True
    return False


def _system_info(inventory: HardwareInventory, targets: list[str]) -> dict[str, Any]:
    host = inventory.host
    return {
        "targets": targets,
        "available_memory_gb": round(host.memory.usable_bytes / 1e9, 2),
        "total_memory_gb": round(host.memory.total_bytes / 1e9, 2),
        "cpu_cores": host.cpu.physical_cores,
        "gpu_available": bool(inventory.gpus),
        "gpu_memory_gb": round(inventory.gpu_memory_bytes / 1e9, 2),
    }
