"""A learning run's report: accuracy per round per node, and who taught whom, round by round.

:func:`build_report` reads it all from the run's stored events (what the dashboard's learning
view reads too, ``dashboard/static/js/views/jobs_learning.js``):

- the per-node accuracy comes from each ``round`` event: ``knowledge`` (distill: each node's
  validation accuracy, what teachers are chosen by), ``members`` (ensemble: each member's test
  accuracy, beside the ensemble's); federated and centralized runs have one global model, so
  their series are its test and validation accuracy;
- the teacher–student edges come from the lessons: each ``taught`` event (distill) is one
  lesson from ``teacher`` to the node it names; each ``learned`` event of kind
  ``collaboration`` (ensemble) is a node learning from its peers' weighted predictions. A
  distill run whose pairs formed but gave no lesson yet shows the round events' ``pairs``.

:func:`render_png` (matplotlib, Agg) and :func:`render_html` (one page, inline SVG, no
script) draw the same two panels.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from neurons.learning.choices import FEDERATED_MODES
from neurons.store.learning import LearningEvent

__all__ = ["Edge", "RunReport", "build_report", "render_html", "render_png"]

_COLORS = (
    "#0f6cbd",
    "#d13438",
    "#13a10e",
    "#ca5010",
    "#8764b8",
    "#038387",
    "#c239b3",
    "#986f0b",
    "#4f6bed",
    "#69797e",
)

_GRAPHS = 48  # round graphs drawn in HTML: the latest ones


@dataclass(frozen=True)
class Edge:
    """In ``round``, ``teacher`` taught ``student`` ``lessons`` times (0: paired only);
    ``gain`` is the student's knowledge after minus before, summed over the lessons."""

    round: int
    teacher: str
    student: str
    lessons: int
    gain: float


@dataclass(frozen=True)
class RunReport:
    run: dict[str, Any]
    measure: str  # what the series are: "validation accuracy", "test accuracy"
    series: dict[str, list[tuple[int, float]]]  # name -> (round, accuracy), rounds ascending
    edges: list[Edge] = field(default_factory=list)
    note: str = ""

    @property
    def title(self) -> str:
        run = self.run
        nodes = run["config"].get("nodes")
        return (
            f"Learning run {run['run_id']}: {run['mode']} on {run['dataset']}, {nodes} nodes, "
            f"{run['status']}, round {run['current_round']}/{run['total_rounds']}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "measure": self.measure,
            "series": {k: [list(p) for p in v] for k, v in self.series.items()},
            "edges": [asdict(e) for e in self.edges],
            "note": self.note,
        }


def build_report(run: dict[str, Any], events: Sequence[LearningEvent]) -> RunReport:
    """The report of ``run`` (its ``to_dict()``) from all its events, in order."""
    rounds: dict[int, dict[str, Any]] = {}
    lessons: list[tuple[int, LearningEvent]] = []
    done = 0  # the last round finished: an event without a round belongs to the next one
    for event in events:
        payload = event.payload
        if event.kind == "round":
            done = int(payload["round"])
            rounds[done] = payload  # a round done again after a resume replaces the dropped one
        elif event.kind == "resumed":
            done = int(payload["round"])
        elif event.kind in ("taught", "learned"):
            lessons.append((event.round or int(payload.get("round") or done + 1), event))
    ordered = sorted(rounds.items())
    mode = str(run["mode"])
    per_node = {"distill": "knowledge", "ensemble": "members"}.get(mode)
    series: dict[str, list[tuple[int, float]]] = {}
    if per_node is not None:
        for number, payload in ordered:
            for node, value in sorted(payload.get(per_node, {}).items(), key=_by_node):
                series.setdefault(node, []).append((number, float(value)))
        if mode == "ensemble":
            series["ensemble"] = _points(ordered, "ensemble_accuracy")
    else:
        series["global model · test"] = _points(ordered, "test_accuracy")
        series["global model · validation"] = _points(ordered, "val_accuracy")
    edges = _edges(mode, ordered, lessons)
    return RunReport(
        run=run,
        measure="validation accuracy" if mode == "distill" else "accuracy",
        series={k: v for k, v in series.items() if v},
        edges=edges,
        note=_NOTES.get(mode, _NOTES["federated"] if mode in FEDERATED_MODES else ""),
    )


_NOTES = {
    "distill": "Each node's knowledge level (its validation accuracy). An edge is a teacher "
    "taking a student on: lessons given that round, and the student's gain.",
    "ensemble": "Each member's test accuracy and the ensemble's. From round 2 each node learns "
    "from its peers' knowledge-weighted predictions: an edge per peer.",
    "federated": "One global model shared by every node: its accuracy is every node's. "
    "Nobody teaches anybody; the server aggregates the nodes' weights each round.",
    "centralized": "One model on all the data, the yardstick; no nodes, nothing to teach.",
}


def _points(ordered: list[tuple[int, dict[str, Any]]], key: str) -> list[tuple[int, float]]:
    return [(n, float(p[key])) for n, p in ordered if isinstance(p.get(key), (int, float))]


def _node_key(name: str) -> tuple[int, str]:
    """``node-2`` before ``node-10``; other names after the numbered ones."""
    tail = name.rsplit("-", 1)[-1]
    return (int(tail) if tail.isdigit() else 1 << 30, name)


def _by_node(item: tuple[str, Any]) -> tuple[int, str]:
    return _node_key(item[0])


def _edges(
    mode: str, ordered: list[tuple[int, dict[str, Any]]], lessons: list[tuple[int, LearningEvent]]
) -> list[Edge]:
    found: dict[tuple[int, str, str], list[float]] = {}
    for number, event in lessons:
        payload, student = event.payload, str(event.node_id or event.payload.get("node_id"))
        gain = float(payload.get("knowledge_level", 0)) - float(payload.get("knowledge_before", 0))
        if event.kind == "taught" and payload.get("teacher"):
            found.setdefault((number, str(payload["teacher"]), student), []).append(gain)
        elif payload.get("event") == "collaboration":
            for peer in payload.get("peers", []):
                found.setdefault((number, str(peer), student), []).append(gain)
    if mode == "distill" and not found:
        for number, payload in ordered:
            for teacher, student in payload.get("pairs", []):
                found.setdefault((number, str(teacher), str(student)), [])
    return [
        Edge(number, teacher, student, len(gains), round(sum(gains), 4))
        for (number, teacher, student), gains in sorted(found.items())
    ]


def _nodes(report: RunReport) -> list[str]:
    names = {e.teacher for e in report.edges} | {e.student for e in report.edges}
    return sorted(names, key=_node_key)


# -- PNG ----------------------------------------------------------------------------------


def render_png(report: RunReport, path: Path) -> None:
    """Both panels as one PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    pairs = sorted({(e.teacher, e.student) for e in report.edges})
    height = 3.6 + (0.25 * len(pairs) + 1.2 if pairs else 0.8)
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(9, height), height_ratios=[3.6, height - 3.6], layout="constrained"
    )
    for index, (name, points) in enumerate(report.series.items()):
        color = _COLORS[index % len(_COLORS)]
        top.plot(*zip(*points, strict=True), marker="o", markersize=3, label=name, color=color)
    top.set(xlabel="round", ylabel=report.measure, ylim=(0, 1), title=report.title)
    top.title.set_fontsize(10)
    top.xaxis.set_major_locator(MaxNLocator(integer=True))
    top.grid(alpha=0.3)
    top.legend(fontsize=8, loc="lower right", ncols=2)
    if pairs:
        rows = {pair: i for i, pair in enumerate(pairs)}
        xs = [e.round for e in report.edges]
        ys = [rows[(e.teacher, e.student)] for e in report.edges]
        sizes = [20 + 30 * min(e.lessons, 5) for e in report.edges]
        bottom.scatter(xs, ys, s=sizes, color=_COLORS[0], alpha=0.7)
        bottom.set_yticks(range(len(pairs)), [f"{t} → {s}" for t, s in pairs], fontsize=8)
        bottom.set(xlabel="round", title="Who taught whom, per round (dot size: lessons)")
        bottom.set_xlim(top.get_xlim())
        bottom.set_ylim(-0.6, len(pairs) - 0.4)
        bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
        bottom.grid(alpha=0.3)
    else:
        bottom.axis("off")
        bottom.text(0.5, 0.5, "Nobody taught anybody in this run.", ha="center", va="center")
    bottom.title.set_fontsize(10)
    figure.savefig(path, format="png", dpi=110)
    plt.close(figure)


# -- HTML ---------------------------------------------------------------------------------


def render_html(report: RunReport) -> str:
    """One self-contained page: the accuracy chart and one small graph per round, as SVG."""
    title = html.escape(report.title)
    recorded = {n for points in report.series.values() for n, _ in points}
    rounds = sorted(recorded | {e.round for e in report.edges})[-_GRAPHS:]
    graphs = "".join(_round_graph(report, number) for number in rounds) if report.edges else ""
    if not graphs:
        graphs = "<p>Nobody taught anybody in this run.</p>"
    elif len(recorded) > len(rounds):
        graphs += f"<p>The latest {len(rounds)} rounds; every lesson is in the table.</p>"
    rows = "".join(
        f'<tr data-pair="{html.escape(e.teacher)}→{html.escape(e.student)}" '
        f'data-round="{e.round}"><td>{e.round}</td><td>{html.escape(e.teacher)} → '
        f"{html.escape(e.student)}</td><td>{e.lessons}</td><td>{e.gain * 100:+.1f} pts</td></tr>"
        for e in report.edges
    )
    table = (
        "<table><thead><tr><th>Round</th><th>Teacher → student</th><th>Lessons</th>"
        f"<th>Student gained</th></tr></thead><tbody>{rows}</tbody></table>"
        if rows
        else ""
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 2em; color: #242424; }}
.graphs {{ display: flex; flex-wrap: wrap; gap: 8px; }}
.graphs figure {{ margin: 0; text-align: center; font-size: 12px; }}
table {{ border-collapse: collapse; margin-top: 1em; }}
td, th {{ padding: 2px 10px; border-bottom: 1px solid #ddd; text-align: left; }}
</style></head><body>
<h1>{title}</h1>
<h2>Accuracy per round{", per node" if report.run["mode"] in ("distill", "ensemble") else ""}</h2>
{_accuracy_svg(report)}
<p>{html.escape(report.note)}</p>
<h2>Who taught whom, round by round</h2>
<div class="graphs">{graphs}</div>
{table}
</body></html>
"""


def _accuracy_svg(report: RunReport, width: int = 720, height: int = 300) -> str:
    left, right, top, bottom = 48, 170, 12, 36
    numbers = [n for points in report.series.values() for n, _ in points] or [1]
    first, last = min(numbers), max(max(numbers), min(numbers) + 1)

    def x(n: float) -> float:
        return left + (n - first) / (last - first) * (width - left - right)

    def y(v: float) -> float:
        return top + (1 - v) * (height - top - bottom)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="accuracy per round">'
    ]
    for tick in (0, 0.25, 0.5, 0.75, 1):
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
            f'stroke="#e0e0e0"/><text x="{left - 6}" y="{y(tick) + 4:.1f}" font-size="11" '
            f'text-anchor="end">{tick:.0%}</text>'
        )
    for n in sorted(set(numbers)) if len(set(numbers)) <= 20 else range(first, last + 1, 5):
        parts.append(
            f'<text x="{x(n):.1f}" y="{height - bottom + 16}" font-size="11" '
            f'text-anchor="middle">{n}</text>'
        )
    parts.append(
        f'<text x="{(left + width - right) / 2}" y="{height - 4}" font-size="11" '
        f'text-anchor="middle">round</text>'
    )
    for index, (name, points) in enumerate(report.series.items()):
        color, label = _COLORS[index % len(_COLORS)], html.escape(name)
        line = " ".join(f"{x(n):.1f},{y(v):.1f}" for n, v in points)
        dots = "".join(
            f'<circle cx="{x(n):.1f}" cy="{y(v):.1f}" r="2.5" fill="{color}">'
            f"<title>{label}, round {n}: {v:.1%}</title></circle>"
            for n, v in points
        )
        parts.append(
            f'<g data-series="{label}"><polyline points="{line}" fill="none" '
            f'stroke="{color}" stroke-width="1.8"/>{dots}'
            f'<text x="{width - right + 10}" y="{top + 14 + 16 * index}" font-size="12" '
            f'fill="{color}">{label}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _round_graph(report: RunReport, number: int, size: int = 170) -> str:
    """Round ``number``'s teacher → student arrows between the nodes set on a circle."""
    nodes = _nodes(report)
    centre, radius = size / 2, size / 2 - 28
    where = {
        node: (
            centre + radius * math.cos(2 * math.pi * i / len(nodes) - math.pi / 2),
            centre + radius * math.sin(2 * math.pi * i / len(nodes) - math.pi / 2),
        )
        for i, node in enumerate(nodes)
    }
    marker = f"arrow-{number}"
    parts = [
        f'<figure data-round="{number}"><svg xmlns="http://www.w3.org/2000/svg" '
        f'width="{size}" height="{size}"><defs><marker id="{marker}" viewBox="0 0 10 10" '
        f'refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse">'
        f'<path d="M 0 0 L 10 5 L 0 10 z" fill="{_COLORS[0]}"/></marker></defs>'
    ]
    for edge in (e for e in report.edges if e.round == number):
        (x1, y1), (x2, y2) = where[edge.teacher], where[edge.student]
        length = math.hypot(x2 - x1, y2 - y1) or 1
        dx, dy = (x2 - x1) / length * 13, (y2 - y1) / length * 13  # stop at the circles
        parts.append(
            f'<line x1="{x1 + dx:.1f}" y1="{y1 + dy:.1f}" x2="{x2 - dx:.1f}" y2="{y2 - dy:.1f}" '
            f'stroke="{_COLORS[0]}" stroke-width="{1 + min(edge.lessons, 4)}" '
            f'marker-end="url(#{marker})"><title>{html.escape(edge.teacher)} → '
            f"{html.escape(edge.student)}: {edge.lessons} lessons</title></line>"
        )
    for node, (cx, cy) in where.items():
        short = html.escape(node.rsplit("-", 1)[-1])
        parts.append(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="12" fill="#fff" stroke="#616161"/>'
            f'<text x="{cx:.1f}" y="{cy + 4:.1f}" font-size="11" text-anchor="middle">'
            f"{short}</text>"
        )
    parts.append(f"</svg><figcaption>round {number}</figcaption></figure>")
    return "".join(parts)
