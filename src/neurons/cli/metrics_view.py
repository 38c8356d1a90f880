"""What ``neurons top`` and ``neurons models stats`` share: the two metrics reads of the
control plane's management API, the small text gauges (sparkline, slot bar, numbers) and the
per-model table.

The control plane is reached as the Ollama-style commands reach it (``--host``,
``NEURONS_HOST``, ``OLLAMA_HOST``, else the configured plane; ``NEURONS_API_KEY`` as a Bearer
key), so a refused connection says the same thing and exits 1 through ``neurons.cli.main``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from rich.table import Table
from rich.text import Text

from neurons.cli.ollama_client import OllamaAPI, call_with
from neurons.errors import ModelNotFoundError, NeuronsError

__all__ = [
    "BLOCKS",
    "PlaneAPI",
    "fetch_model_metrics",
    "fmt_count",
    "fmt_ms",
    "fmt_rate",
    "model_stats_table",
    "plane_call",
    "slot_bar",
    "sparkline",
]

T = TypeVar("T")
BLOCKS = "▁▂▃▄▅▆▇█"
SUMMARY_PATH = "/api/ai/metrics/summary"
MODELS_PATH = "/api/ai/metrics/models"


class PlaneAPI(OllamaAPI):
    """The Ollama-style client plus the management API's two metrics reads."""

    async def metrics_summary(self, window_s: int = 60) -> dict[str, Any]:
        data: dict[str, Any] = await self._get(SUMMARY_PATH, {"window_s": window_s})
        return data

    async def model_metrics(self, model: str | None = None) -> list[dict[str, Any]]:
        params = {} if model is None else {"model": model}
        data = await self._get(MODELS_PATH, params)
        models: list[dict[str, Any]] = data.get("models") or []
        return models

    async def _get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            data: dict[str, Any] = await self._json("GET", path, params=params)
        except ModelNotFoundError as exc:
            # FastAPI's own 404 means the route is missing, not a model: an older plane, or
            # --host pointing at a node or an Ollama server.
            if str(exc) != "Not Found":
                raise
            raise NeuronsError(
                f"{self.url} has no {path}: is it a neurons control plane (not a node), "
                "and as new as this CLI?"
            ) from exc
        return data


def plane_call(url: str, work: Callable[[PlaneAPI], Awaitable[T]]) -> T:
    """:func:`neurons.cli.ollama_client.call_with` :class:`PlaneAPI`."""
    return call_with(PlaneAPI, url, work)


def fetch_model_metrics(url: str, model: str | None = None) -> list[dict[str, Any]]:
    return plane_call(url, lambda api: api.model_metrics(model))


# -- gauges ---------------------------------------------------------------------------------


def sparkline(values: Sequence[float | None], width: int = 30) -> str:
    """The last ``width`` values as block characters scaled to their maximum. Zero is the
    lowest block and any activity at least the second, so a quiet tick never looks idle;
    a missing point is a blank.

    >>> sparkline([0, 1, 2, 4, None])
    '▁▃▅█ '
    >>> sparkline([0, 0])
    '▁▁'
    """
    tail = list(values)[-width:] if width > 0 else []
    top = max((v for v in tail if v is not None), default=0.0)
    out = []
    for value in tail:
        if value is None:
            out.append(" ")
        elif value <= 0 or top <= 0:
            out.append(BLOCKS[0])
        else:
            out.append(BLOCKS[max(1, round(value / top * (len(BLOCKS) - 1)))])
    return "".join(out)


def slot_bar(busy: int, total: int, width: int = 10) -> Text:
    """``████░░░░░░ 2/5``: busy slots over all, coloured by how full the node is.

    >>> slot_bar(2, 4, width=4).plain
    '██░░ 2/4'
    """
    if total <= 0:
        return Text("-", style="dim")
    busy = max(0, min(busy, total))
    filled = round(busy / total * width)
    share = busy / total
    style = "red" if share >= 1 else "yellow" if share >= 0.5 else "green"
    bar = Text("█" * filled, style=style)
    bar.append("░" * (width - filled), style="dim")
    bar.append(f" {busy}/{total}")
    return bar


def fmt_ms(value: float | None) -> str:
    """Milliseconds, ``-`` when there is nothing to measure.

    >>> fmt_ms(None), fmt_ms(12.345), fmt_ms(2500)
    ('-', '12.3 ms', '2.50 s')
    """
    if value is None:
        return "-"
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.1f} ms"


def fmt_rate(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def fmt_count(value: int | float | None) -> str:
    return "-" if value is None else f"{int(value):,}"


def _error_rate(errors: int, total: int) -> Text:
    if not total:
        return Text("-", style="dim")
    rate = errors / total
    return Text(f"{rate * 100:.1f}%", style="red" if rate > 0 else "")


def _short_digest(digest: str | None) -> str:
    if not digest:
        return "-"
    return digest.removeprefix("sha256:")[:12]


# -- neurons models stats -------------------------------------------------------------------


def model_stats_table(models: list[dict[str, Any]]) -> Table:
    """One row per model and node; a model served by several nodes gets its total first."""
    table = Table(title=f"{len(models)} model(s) since the control plane started")
    table.add_column("model", no_wrap=True)
    table.add_column("node", no_wrap=True)
    table.add_column("digest", no_wrap=True, min_width=12)
    # Short headers keep the eleven columns inside an 80-column terminal's worth of numbers.
    for column in ("count", "errors", "err %", "avg latency", "tok/s", "prompt", "compl."):
        table.add_column(column, justify="right")

    def cells(entry: dict[str, Any]) -> list[str | Text]:
        count = int(entry.get("inference_count") or 0)
        errors = int(entry.get("error_count") or 0)
        latency = entry.get("average_latency")
        return [
            fmt_count(count),
            Text(fmt_count(errors), style="red" if errors else ""),
            _error_rate(errors, count),
            fmt_ms(None if latency is None or not count else latency * 1000),
            fmt_rate(entry.get("tokens_per_s"), 1),
            fmt_count(entry.get("prompt_tokens")),
            fmt_count(entry.get("completion_tokens")),
        ]

    for model in models:
        nodes: list[dict[str, Any]] = model.get("nodes") or []
        if len(nodes) != 1:
            digests = model.get("digests") or []
            digest = (
                f"{len(digests)} versions"
                if len(digests) > 1
                else _short_digest(digests[0] if digests else None)
            )
            table.add_row(Text(model["model"], style="bold"), "(all)", digest, *cells(model))
        for node in nodes:
            table.add_row(
                model["model"], node["node"], _short_digest(node.get("digest")), *cells(node)
            )
    return table
