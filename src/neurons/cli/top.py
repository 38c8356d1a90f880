"""``neurons top``: a live view of the network in the manner of htop, drawn from the control
plane's ``GET /api/ai/metrics/summary``.

The drawing is pure functions from that summary to rich renderables (:func:`render` and the
parts it stacks), so tests render them to text; the command only fetches and repaints. The
server is found as the Ollama-style commands find it (see :mod:`neurons.cli.metrics_view`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

import typer
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from neurons.cli.metrics_view import (
    PlaneAPI,
    fmt_count,
    fmt_ms,
    fmt_rate,
    plane_call,
    slot_bar,
    sparkline,
)
from neurons.cli.ollama_client import reaching, resolve_host
from neurons.cli.ollama_style import HostOption
from neurons.errors import NeuronsError

__all__ = [
    "error_view",
    "header",
    "jobs_panel",
    "nodes_table",
    "render",
    "top",
    "traffic_panel",
]

WINDOW_S = 60  # the sparklines' span: a minute reads at a glance, as in nvtop
SPARK_WIDTH = 40

STATE_STYLES = {
    "online": "green",
    "degraded": "yellow",
    "draining": "cyan",
    "offline": "red",
    "unknown": "dim",
}
BREAKER_STYLES = {"closed": "green", "half_open": "yellow", "open": "bold red"}
JOB_STYLES = {"running": "green", "pending": "yellow"}


def _styled(value: str | None, styles: dict[str, str]) -> Text:
    text = value or "-"
    return Text(text, style=styles.get(text, ""))


def header(summary: dict[str, Any], url: str) -> Text:
    """One line: which plane, how many nodes are up, when this frame was taken."""
    nodes = summary.get("nodes") or []
    up = sum(1 for n in nodes if n.get("state") in ("online", "degraded"))
    now = summary.get("now")
    stamp = time.strftime("%H:%M:%S", time.localtime(now)) if now is not None else "-"
    line = Text("neurons top", style="bold")
    line.append(f"  {url}  ")
    line.append(f"{up}/{len(nodes)} node(s) up", style="green" if up == len(nodes) else "yellow")
    line.append(f"  at {stamp}", style="dim")
    return line


def traffic_panel(summary: dict[str, Any]) -> Panel:
    """Current rates and latency percentiles beside sparklines of the window's series, and
    the totals since the plane started."""
    current = summary.get("current") or {}
    series = summary.get("series") or []
    totals = summary.get("since_start") or {}
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(justify="right")
    grid.add_column()
    grid.add_row(
        "requests/s",
        fmt_rate(current.get("requests_per_s")),
        Text(sparkline([p.get("requests_per_s") for p in series], SPARK_WIDTH), style="cyan"),
    )
    grid.add_row(
        "tokens/s",
        fmt_rate(current.get("tokens_per_s"), 1),
        Text(sparkline([p.get("tokens_per_s") for p in series], SPARK_WIDTH), style="magenta"),
    )
    rate = current.get("error_rate")
    grid.add_row(
        "error rate",
        Text("-" if rate is None else f"{rate * 100:.1f}%", style="red" if rate else ""),
        "",
    )
    grid.add_row(
        "latency", f"p50 {fmt_ms(current.get('p50_ms'))}", f"p95 {fmt_ms(current.get('p95_ms'))}"
    )
    errors = int(totals.get("errors") or 0)
    since = Text("since start: ", style="dim")
    since.append(f"{fmt_count(totals.get('requests'))} requests, ")
    since.append(f"{fmt_count(errors)} errors", style="red" if errors else "")
    since.append(
        f", {fmt_count(totals.get('prompt_tokens'))} prompt + "
        f"{fmt_count(totals.get('completion_tokens'))} completion tokens"
    )
    step = summary.get("step_s")
    # The sparklines keep their last SPARK_WIDTH points, which may be less than the window.
    shown = min(len(series), SPARK_WIDTH) * step if step else summary.get("window_s", WINDOW_S)
    span = f"sparklines: last {shown} s" + (f" by {step} s" if step else "")
    return Panel(Group(grid, since), title="traffic (now: last 10 s)", subtitle=span)


def nodes_table(nodes: list[dict[str, Any]]) -> Table:
    """One row per node: health, breaker, slot use as a bar, queue and the models loaded."""
    table = Table(title=f"{len(nodes)} node(s)", expand=True)
    table.add_column("node", no_wrap=True)
    table.add_column("state")
    table.add_column("breaker")
    table.add_column("slots", no_wrap=True)
    for column in ("in flight", "queued", "requests", "failures", "latency"):
        table.add_column(column, justify="right")
    table.add_column("loaded", ratio=1)
    for node in nodes:
        failures = int(node.get("failures") or 0)
        table.add_row(
            node.get("name", "?"),
            _styled(node.get("state"), STATE_STYLES),
            _styled(node.get("breaker"), BREAKER_STYLES),
            slot_bar(int(node.get("slots_busy") or 0), int(node.get("slots") or 0)),
            fmt_count(node.get("in_flight")),
            Text(fmt_count(node.get("queued")), style="yellow" if node.get("queued") else ""),
            fmt_count(node.get("requests")),
            Text(fmt_count(failures), style="red" if failures else ""),
            fmt_ms(node.get("latency_ms")),
            ", ".join(node.get("loaded") or []) or Text("-", style="dim"),
        )
    if not nodes:
        table.add_row(Text("no nodes registered (neurons node add URL)", style="dim"))
    return table


def jobs_panel(jobs: list[dict[str, Any]]) -> Panel:
    """Pending and running jobs of every kind (learning, fine-tuning, optimization)."""
    if not jobs:
        return Panel(Text("no pending or running jobs", style="dim"), title="jobs")
    table = Table.grid(padding=(0, 2))
    for _ in range(4):
        table.add_column()
    for job in jobs:
        table.add_row(
            job.get("kind") or "-",
            str(job.get("id") or "-")[:12],
            job.get("name") or "-",
            _styled(job.get("status"), JOB_STYLES),
        )
    return Panel(table, title=f"jobs ({len(jobs)})")


def render(summary: dict[str, Any], url: str, interval: float | None = None) -> Group:
    """One whole frame; ``interval`` adds the live view's footer."""
    parts: list[RenderableType] = [
        header(summary, url),
        traffic_panel(summary),
        nodes_table(summary.get("nodes") or []),
        jobs_panel(summary.get("jobs") or []),
    ]
    if interval is not None:
        parts.append(Text(f"refresh every {interval:g} s; Ctrl-C quits", style="dim"))
    return Group(*parts)


def error_view(url: str, message: str, interval: float) -> Panel:
    """What the live view shows while the plane cannot be read; it keeps retrying."""
    body = Text(message, style="red")
    body.append(f"\n\nretrying every {interval:g} s; Ctrl-C quits", style="dim")
    return Panel(body, title=f"neurons top: {url}", border_style="red")


async def _frame(api: PlaneAPI, url: str, interval: float) -> RenderableType:
    try:
        with reaching(url):
            summary = await api.metrics_summary(WINDOW_S)
    except NeuronsError as exc:
        return error_view(url, str(exc), interval)
    return render(summary, url, interval)


async def _watch(url: str, interval: float, console: Console) -> None:
    api = PlaneAPI.connect(url)
    try:
        waiting = Text(f"connecting to {url} ...", style="dim")
        with Live(waiting, console=console, screen=True, auto_refresh=False) as live:
            while True:
                live.update(await _frame(api, url, interval), refresh=True)
                await asyncio.sleep(interval)
    finally:
        await api.aclose()


def top(
    interval: Annotated[
        float, typer.Option("--interval", "-n", min=0.2, help="Seconds between refreshes.")
    ] = 2.0,
    once: Annotated[
        bool, typer.Option("--once", help="Print one frame and exit (for scripts).")
    ] = False,
    host: HostOption = None,
) -> None:
    """Live view of the network: nodes, slots, traffic, latency, tokens/s and jobs."""
    url = resolve_host(host)
    if once:
        # An unreachable plane raises here: main prints it and exits 1, as the other
        # commands that talk to a server do.
        summary = plane_call(url, lambda api: api.metrics_summary(WINDOW_S))
        Console().print(render(summary, url))
        return
    try:
        asyncio.run(_watch(url, interval, Console()))
    except KeyboardInterrupt:
        pass  # quitting is what Ctrl-C is for here, so exit 0 as htop does
