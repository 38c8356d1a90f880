"""``neurons node`` and ``neurons network``: the node registry, live health, placements, sync.

Both run the same :class:`~neurons.network.manager.NetworkManager` as the control plane,
in-process against the state directory: a node added here is routed to by a running control
plane within one health interval.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn
from rich.table import Table

from neurons.cli.common import JsonFlag, emit
from neurons.config import Settings
from neurons.errors import InvalidRequestError

__all__ = ["network_app", "node_app", "parse_labels"]

node_app = typer.Typer(help="Register, remove, list and probe nodes (neurons or Ollama servers).")
network_app = typer.Typer(help="The network as a whole: health, model placements, model sync.")

LabelOption = Annotated[
    list[str] | None, typer.Option("--label", "-l", help="A label key=value (repeatable).")
]
T = TypeVar("T")

if TYPE_CHECKING:
    from neurons.network.manager import NetworkManager


def parse_labels(pairs: list[str] | None) -> dict[str, str]:
    labels: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidRequestError(f"a label is key=value, not {pair!r}")
        labels[key.strip()] = value.strip()
    return labels


def _run(call: Callable[[NetworkManager], Awaitable[T]]) -> T:
    from neurons.network.manager import NetworkManager
    from neurons.store import open_store

    settings = Settings()
    store = open_store(settings.resolved_database_url)

    async def main() -> T:
        manager = NetworkManager(store, settings)
        try:
            return await call(manager)
        finally:
            await manager.aclose()

    try:
        return asyncio.run(main())
    finally:
        store.close()


def _node_table(nodes: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for column in ("name", "url", "kind", "state", "version", "models", "loaded", "slots", "ms"):
        table.add_column(column)
    for node in nodes:
        latency = node.get("latency_ms")
        table.add_row(
            node["name"],
            node["url"],
            node["kind"],
            node["state"],
            node.get("version") or "-",
            ", ".join(node.get("models") or []) or "-",
            ", ".join(node.get("loaded") or []) or "-",
            str(node.get("slots", "-")),
            "-" if latency is None else f"{latency:.1f}",
        )
    return table


# -- neurons node ---------------------------------------------------------------------------


@node_app.command("add")
def add(
    url: Annotated[str, typer.Argument(help="Base URL, e.g. http://10.0.0.5:11434.")],
    name: Annotated[str | None, typer.Option(help="Node name (default: host-port).")] = None,
    label: LabelOption = None,
    priority: Annotated[int, typer.Option(help="Higher tiers take traffic first.")] = 0,
    kind: Annotated[
        str | None,
        typer.Option(
            help="embedded | ollama | openai (an OpenAI-compatible server, --token its API key);"
            " default: detected."
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            help="The node token the node requires (serve-node --token); kept sealed in the "
            "store and sent on every call to it."
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Register a node and probe it once."""
    labels = parse_labels(label)
    node = _run(
        lambda m: m.add_neuron(
            url, name=name, labels=labels, priority=priority, kind=kind, token=token
        )
    )
    if as_json:
        emit({"node": node})
        return
    Console().print(_node_table([node], "node added"))


@node_app.command("rm")
def remove(name: Annotated[str, typer.Argument(help="Node name or id.")]) -> None:
    """Remove a node from the registry (the node itself keeps running)."""
    _run(lambda m: m.remove_neuron(name))
    typer.echo(f"removed {name}")


@node_app.command("ls")
def list_nodes(as_json: JsonFlag = False) -> None:
    """The registry as stored (no probing): labels, priority, last known state."""
    from neurons.store import open_store

    store = open_store(Settings().resolved_database_url)
    try:
        records = store.nodes.list()
    finally:
        store.close()
    rows: list[dict[str, Any]] = [
        {
            "name": r.name,
            "url": r.url,
            "kind": r.kind,
            "labels": r.labels,
            "priority": r.priority,
            "has_token": r.has_token,
            "status": r.status,
            "last_seen_at": r.last_seen_at,
        }
        for r in records
    ]
    if as_json:
        emit({"nodes": rows})
        return
    table = Table(title=f"{len(rows)} node(s)")
    for column in ("name", "url", "kind", "labels", "priority", "status", "last seen"):
        table.add_column(column)
    for row in rows:
        labels = ",".join(f"{k}={v}" for k, v in row["labels"].items()) or "-"
        seen = row["last_seen_at"]
        table.add_row(
            row["name"],
            row["url"],
            row["kind"],
            labels,
            str(row["priority"]),
            row["status"],
            "-" if seen is None else seen.strftime("%Y-%m-%d %H:%M:%S"),
        )
    Console().print(table)


@node_app.command("status")
def node_status(
    name: Annotated[str | None, typer.Argument(help="One node (default: all).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Probe nodes now: state, version, models present and loaded, slots, latency."""

    async def probe(manager: NetworkManager) -> list[dict[str, Any]]:
        nodes = await manager.manage_state()
        if name is None:
            return nodes
        chosen = [n for n in nodes if name in (n["name"], n["id"])]
        if not chosen:
            from neurons.errors import NodeNotFoundError

            raise NodeNotFoundError(f"no node with id or name {name!r}")
        return chosen

    nodes = _run(probe)
    if as_json:
        emit({"nodes": nodes})
        return
    Console().print(_node_table(nodes, "nodes"))
    for node in nodes:
        if node.get("last_error"):
            typer.echo(f"{node['name']}: {node['last_error']}")


@node_app.command("drain")
def drain(name: Annotated[str, typer.Argument(help="Node name or id.")]) -> None:
    """Stop routing new requests to a node (it keeps its models)."""
    node = _run(lambda m: m.drain(name, True))
    typer.echo(f"{node['name']}: {node['state']}")


@node_app.command("resume")
def resume(name: Annotated[str, typer.Argument(help="Node name or id.")]) -> None:
    """Route to a drained node again (after it answers a probe)."""
    node = _run(lambda m: m.drain(name, False))
    typer.echo(f"{node['name']}: {node['state']}")


# -- neurons network ------------------------------------------------------------------------


@network_app.command("status")
def network_status(as_json: JsonFlag = False) -> None:
    """Probe every node; show the nodes, which model is where, and the placements."""

    async def gather(manager: NetworkManager) -> dict[str, Any]:
        await manager.manage_state()
        status = manager.status()
        placements = await asyncio.to_thread(manager.store.placements.list)
        status["placements"] = [p.to_dict() for p in placements]
        return status

    status = _run(gather)
    if as_json:
        emit(status)
        return
    console = Console()
    console.print(_node_table(status["nodes"], f"{status['healthy']}/{status['total']} healthy"))
    models = Table(title="models")
    models.add_column("model")
    models.add_column("nodes")
    for model, nodes in status["models"].items():
        models.add_row(model, ", ".join(nodes))
    console.print(models)
    if status["placements"]:
        placements = Table(title="placements (desired state)")
        for column in ("model", "labels", "replicas"):
            placements.add_column(column)
        for p in status["placements"]:
            labels = ",".join(f"{k}={v}" for k, v in (p.get("labels") or {}).items()) or "-"
            placements.add_row(p["model"], labels, str(p.get("replicas") or "-"))
        console.print(placements)


@network_app.command("place")
def place(
    model: Annotated[str, typer.Argument(help="Model name, e.g. smollm2:135m.")],
    label: LabelOption = None,
    replicas: Annotated[int | None, typer.Option(help="At least this many nodes.")] = None,
) -> None:
    """Declare where a model should be (applied by ``neurons network sync``)."""
    labels = parse_labels(label)

    async def save(manager: NetworkManager) -> dict[str, Any]:
        placement = await asyncio.to_thread(
            manager.store.placements.set, model, labels or None, replicas
        )
        return placement.to_dict()

    typer.echo(json.dumps(_run(save)))


@network_app.command("unplace")
def unplace(model: Annotated[str, typer.Argument(help="Model name.")]) -> None:
    """Forget a model's placement (copies already made stay)."""

    async def forget(manager: NetworkManager) -> None:
        await asyncio.to_thread(manager.store.placements.remove, model)

    _run(forget)
    typer.echo(f"placement of {model} removed")


@network_app.command("sync")
def sync(
    model: Annotated[str | None, typer.Argument(help="Only this model (default: all).")] = None,
    label: LabelOption = None,
    replicas: Annotated[int | None, typer.Option(help="At least this many nodes.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Copy models between nodes until every placement holds.

    With MODEL and --label/--replicas, the placement is declared first (as ``place``).
    """
    labels = parse_labels(label)
    if (labels or replicas) and model is None:
        raise InvalidRequestError("--label and --replicas need a MODEL")
    console = Console(stderr=True)
    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        console=console,
        disable=as_json,
    )
    tasks: dict[tuple[str, str, str], TaskID] = {}

    def on_progress(event: Any) -> None:
        key = (event.target, event.model, event.digest or "")
        if event.total is not None and event.digest:
            if key not in tasks:
                label_text = f"{event.model} → {event.target} {event.digest[7:19]}"
                tasks[key] = bars.add_task(label_text, total=event.total)
            bars.update(tasks[key], completed=event.completed or 0)
        elif not as_json:
            console.print(f"{event.target}: {event.model}: {event.status}")

    async def run(manager: NetworkManager) -> dict[str, Any]:
        if model is not None and (labels or replicas):
            await asyncio.to_thread(manager.store.placements.set, model, labels or None, replicas)
        await manager.connect_neurons()
        with bars:
            report = await manager.synchronize_neurons(model, on_progress)
        return report.to_dict()

    report = _run(run)
    if as_json:
        emit({"report": report})
        return
    table = Table(title=f"sync finished in {report.get('seconds', 0):.1f}s")
    for column in ("model", "from", "to", "blobs copied", "bytes", "seconds"):
        table.add_column(column)
    for t in report.get("transfers", []):
        table.add_row(
            t["model"],
            t["source"],
            t["target"],
            str(len(t["copied"])),
            f"{t['bytes_copied'] / 1e6:.1f} MB",
            f"{t['seconds']:.2f}",
        )
    Console().print(table)
    for problem in report.get("problems", []):
        typer.echo(f"problem: {problem}", err=True)
    if report.get("problems"):
        raise typer.Exit(1)
