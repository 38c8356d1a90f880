"""``neurons models``: the model library and model operations on the nodes.

The same :class:`~neurons.library.service.LibraryService` as the REST API, run in-process
against the state directory: nodes are the ones ``neurons up`` registered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn
from rich.table import Table

from neurons.cli.common import JsonFlag, emit, run_with_store
from neurons.cli.metrics_view import fetch_model_metrics, model_stats_table
from neurons.cli.ollama_client import resolve_host
from neurons.cli.ollama_style import HostOption
from neurons.config import Settings

__all__ = ["models_app"]

models_app = typer.Typer(help="Browse the model library; pull, copy and delete models on nodes.")

NodeOption = Annotated[str | None, typer.Option("--node", help="A node name (default: all).")]
StatsOption = Annotated[Path | None, typer.Option(help="Host stats JSON (else measured).")]
GpuOption = Annotated[Path | None, typer.Option(help="GPU stats JSON (else measured).")]


def _run(
    call: Callable[[Any], Awaitable[dict[str, Any]]],
    host_stats: Path | None = None,
    gpu_stats: Path | None = None,
) -> dict[str, Any]:
    from neurons.library.service import LibraryService

    overrides: dict[str, Any] = {}
    if host_stats is not None:
        overrides["host_stats"] = host_stats
    if gpu_stats is not None:
        overrides["gpu_stats"] = gpu_stats
    return run_with_store(LibraryService, call, Settings(**overrides))


def _gb(value: int | float | None) -> str:
    return "-" if value is None else f"{value / 1e9:.1f} GB"


def _model_table(title: str, rows: list[dict[str, Any]], extra: str | None = None) -> Table:
    table = Table(title=title)
    for column in ("name", "size", "params class", "file", "context", "score", "source", "nodes"):
        table.add_column(column)
    if extra:
        table.add_column(extra)
    for row in rows:
        cells = [
            row["name"],
            row["size"],
            row["size_class"],
            _gb(row["file_size_bytes"]),
            f"{row['context_length']:,}",
            f"{row['performance_score']:.2f}",
            row["performance_source"],
            ", ".join(row["nodes"]) or "-",
        ]
        if extra:
            cells.append(str(row.get(extra.replace(" ", "_"), "")))
        table.add_row(*cells)
    return table


@models_app.command("library")
def library(
    category: Annotated[str | None, typer.Option(help="Only this category.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Every library model by category."""
    data = _run(lambda s: s.get_library(category))
    if as_json:
        emit(data)
        return
    console = Console()
    for name, rows in data["categories"].items():
        if rows:
            console.print(_model_table(f"{name} ({len(rows)})", rows))


@models_app.command("search")
def search(
    query: Annotated[str, typer.Argument(help="Words to look for.")] = "",
    category: Annotated[str | None, typer.Option()] = None,
    size: Annotated[str | None, typer.Option(help="tiny|small|medium|large|huge")] = None,
    min_performance: Annotated[float | None, typer.Option(min=0.0, max=1.0)] = None,
    max_parameters: Annotated[str | None, typer.Option(help="e.g. 7B or 7e9")] = None,
    installed: Annotated[bool | None, typer.Option("--installed/--not-installed")] = None,
    page: Annotated[int, typer.Option(min=1)] = 1,
    page_size: Annotated[int, typer.Option(min=1, max=200)] = 20,
    as_json: JsonFlag = False,
) -> None:
    """Search names, descriptions and capabilities."""
    data = _run(
        lambda s: s.search(
            query,
            category=category,
            size=size,
            min_performance=min_performance,
            max_parameters=max_parameters,
            installed=installed,
            page=page,
            page_size=page_size,
        )
    )
    if as_json:
        emit(data)
        return
    title = f"{data['count']} models match '{query}'" if query else f"{data['count']} models"
    Console().print(_model_table(title, data["results"], "relevance score"))


@models_app.command("recommend")
def recommend(
    task_type: Annotated[str, typer.Argument(help="code_generation, chat, math, vision, ...")],
    preferred_size: Annotated[str | None, typer.Option(help="tiny|small|medium|large|huge")] = None,
    node: NodeOption = None,
    scope: Annotated[str, typer.Option(help="host, node or network")] = "host",
    limit: Annotated[int, typer.Option(min=1, max=50)] = 5,
    host_stats: StatsOption = None,
    gpu_stats: GpuOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Ranked models for a task on this host, a node, or the network."""
    data = _run(
        lambda s: s.recommendations(
            task_type, preferred_size=preferred_size, node=node, scope=scope, limit=limit
        ),
        host_stats,
        gpu_stats,
    )
    if as_json:
        emit(data)
        return
    info = data["system_info"]
    table = Table(
        title=f"{task_type} on {', '.join(info['targets'])}: "
        f"{info['available_memory_gb']} GB RAM free, GPU {info['gpu_memory_gb']} GB"
    )
    for column in ("#", "model", "confidence", "quality", "tokens/s", "installed"):
        table.add_column(column)
    for rank, item in enumerate(data["recommendations"], 1):
        table.add_row(
            str(rank),
            item["model_name"],
            f"{item['confidence_score']:.2f}",
            f"{item['expected_performance']:.2f}",
            str(item["estimated_tokens_per_second"]),
            "yes" if item["installed"] else "no",
        )
    console = Console()
    console.print(table)
    for rank, item in enumerate(data["recommendations"], 1):
        console.print(f"{rank}. {item['model_name']}: {item['reasoning']}")
        console.print(f"   trade-offs: {item['trade_offs']}")
        console.print(f"   alternatives: {', '.join(item['alternatives']) or '-'}")


@models_app.command("compat")
def compat(
    model: Annotated[str, typer.Argument(help="A library model name.")],
    node: NodeOption = None,
    num_ctx: Annotated[int | None, typer.Option(min=1)] = None,
    host_stats: StatsOption = None,
    gpu_stats: GpuOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Does MODEL fit here (or on --node), and how fast will it run?"""
    data = _run(lambda s: s.compatibility(model, node=node, num_ctx=num_ctx), host_stats, gpu_stats)
    if as_json:
        emit(data)
        return
    result = data["compatibility"]
    console = Console()
    table = Table(title=f"{data['model_name']} on {data['target']}", show_header=False)
    table.add_row("compatibility score", f"{result['compatibility_score']:.2f}")
    for part, status in result["hardware_compatibility"].items():
        table.add_row(part, status)
    estimate = result["memory_estimate"]
    if estimate:
        table.add_row("memory at num_ctx " + str(estimate["num_ctx"]), _gb(estimate["total_bytes"]))
    table.add_row("performance", result["performance_estimate"])
    console.print(table)
    for warning in result["warnings"]:
        console.print(f"warning: {warning}")
    for advice in result["recommendations"]:
        console.print(f"advice: {advice}")


@models_app.command("compare")
def compare(
    models: Annotated[list[str], typer.Argument(help="Two or more model names.")],
    node: NodeOption = None,
    host_stats: StatsOption = None,
    gpu_stats: GpuOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Compare models side by side."""
    data = _run(lambda s: s.compare(models, node=node), host_stats, gpu_stats)
    if as_json:
        emit(data)
        return
    table = Table(title=f"compared on {data['target']}")
    table.add_column("")
    for name in data["models"]:
        table.add_column(name)
    for row, values in data["comparison_table"].items():
        table.add_row(row, *(str(values[name]) for name in data["models"]))
    console = Console()
    console.print(table)
    for line in data["recommendations"]:
        console.print(f"- {line}")


@models_app.command("list")
def list_models(as_json: JsonFlag = False) -> None:
    """Models installed on the nodes."""
    data = _run(lambda s: s.installed())
    if as_json:
        emit(data)
        return
    table = Table(title=f"{data['count']} installed models")
    for column in ("name", "size", "quantization", "nodes", "in catalog"):
        table.add_column(column)
    for model in data["models"]:
        table.add_row(
            model["name"],
            _gb(model["installed_on"][0]["size_bytes"]),
            model["quantization"],
            ", ".join(model["nodes"]),
            "yes" if model["in_catalog"] else "no",
        )
    Console().print(table)


@models_app.command("stats")
def stats(
    model: Annotated[str | None, typer.Option("--model", help="Only this model.")] = None,
    host: HostOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Inferences, errors, latency and tokens per model and node, from the control plane
    (since it started; --host as in `neurons list`)."""
    models = fetch_model_metrics(resolve_host(host), model)
    if as_json:
        emit({"models": models})
        return
    Console().print(model_stats_table(models))


def _outcome(data: dict[str, Any], as_json: bool, said: Callable[[str], str]) -> None:
    """Print a model operation's answer: the nodes it succeeded on, then each node it failed
    on or skipped (on stderr). Exit 1 when it failed on any node."""
    per_node = data["per_node"]
    if as_json:
        emit(data)
    else:
        typer.echo(said(", ".join(n["node"] for n in per_node if n["ok"])))
        for entry in per_node:
            if not entry["ok"]:
                why = entry["skipped"] or f"failed: {entry['error']}"
                typer.echo(f"{entry['node']}: {why}", err=True)
    if any(not n["ok"] and n["skipped"] is None for n in per_node):
        raise typer.Exit(1)


@models_app.command("pull")
def pull(
    model: str,
    node: NodeOption = None,
    insecure: Annotated[bool, typer.Option(help="Plain-HTTP registry.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Pull MODEL onto a node (or every online node), with a progress bar."""
    with Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), disable=as_json
    ) as bar:
        tasks: dict[str, Any] = {}

        def progress(node_name: str, item: dict[str, Any]) -> None:
            key = f"{node_name}:{item.get('digest') or item.get('status')}"
            if key not in tasks:
                tasks[key] = bar.add_task(f"{node_name}: {item.get('status', '')}", total=None)
            if item.get("total"):
                bar.update(tasks[key], total=item["total"], completed=item.get("completed", 0))

        data = _run(lambda s: s.pull(model, node=node, insecure=insecure, progress=progress))
    _outcome(data, as_json, lambda done: f"pulled {model} onto {done}")


@models_app.command("rm")
def rm(model: str, node: NodeOption = None, as_json: JsonFlag = False) -> None:
    """Delete MODEL from a node (or from every node that holds it)."""
    data = _run(lambda s: s.delete(model, node=node))
    _outcome(data, as_json, lambda done: f"deleted {data['model']} from {done}")


@models_app.command("cp")
def cp(source: str, destination: str, node: NodeOption = None, as_json: JsonFlag = False) -> None:
    """Copy SOURCE to DESTINATION on the nodes that hold it."""
    data = _run(lambda s: s.copy(source, destination, node=node))
    _outcome(data, as_json, lambda done: f"copied {source} to {destination} on {done}")


@models_app.command("create")
def create(
    name: str,
    modelfile: Annotated[Path, typer.Option("--file", "-f", exists=True, dir_okay=False)],
    node: NodeOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Create NAME from a Modelfile whose FROM names a model the nodes hold."""
    text = modelfile.read_text(encoding="utf-8")
    data = _run(lambda s: s.create(name, text, node=node))
    _outcome(data, as_json, lambda done: f"created {name} on {done}")


@models_app.command("evaluate")
def evaluate(
    model: str,
    node: NodeOption = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N items.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Measure MODEL's quality and speed on a node; the library then uses the measurement."""
    data = _run(lambda s: s.evaluate(model, node=node, limit=limit))
    if as_json:
        emit(data)
        return
    speed = data["tokens_per_second"]
    typer.echo(
        f"{data['model']} on {data['node']}: score {data['score']:.2f} on "
        f"{data['items']} items of {data['evaluation_set']}"
        + (f", {speed:g} tokens/s" if speed else "")
    )
