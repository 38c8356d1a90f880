"""A session's convergence as a PNG: what ``neurons optimize run`` and ``plot`` write.

The left panel has one point per completed trial (its ``overall_score``; the baseline is
drawn apart) and the best score so far as a step line; pruned and failed trials are marked on
the x axis, since they have no score. A ``balance_quality_speed`` session gets a second panel:
quality against tokens/s for every completed trial, its Pareto front joined up, and the knee
(the configuration the session picked) highlighted.

Drawn with matplotlib's object API on the Agg canvas (a ``Figure`` of our own, never pyplot),
so nothing global changes and two threads may draw at once.

Importing this module imports matplotlib (about half a second): the CLI imports it only
when it draws. The input is :meth:`~neurons.optimize.service.OptimizationService.details`' answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from neurons.errors import InvalidRequestError

__all__ = ["plot_convergence", "png_path"]

_POINT = "#1f77b4"
_BEST = "#d62728"
_BASELINE = "#7f7f7f"
_PRUNED = "#ff7f0e"
_FAILED = "#000000"
_KNEE = "#2ca02c"


def png_path(path: Path | str) -> Path:
    """``path`` when it ends in ``.png``, else :class:`InvalidRequestError` (400)."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InvalidRequestError(
            f"the convergence plot is a PNG; give a path ending in .png, not {str(path)!r}"
        )
    return path


def plot_convergence(details: Mapping[str, Any], path: Path) -> Path:
    """Draw the session in ``details`` to ``path`` (a ``.png``; parent folders are made);
    the path written. :class:`InvalidRequestError` for another suffix."""
    path = png_path(path)
    multi = details.get("objective") == "balance_quality_speed"
    figure = Figure(figsize=(13.0 if multi else 8.0, 5.0), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2 if multi else 1, squeeze=False)[0]
    _convergence(axes[0], details)
    if multi:
        _pareto(axes[1], details)
    figure.suptitle(_title(details))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def _title(details: Mapping[str, Any]) -> str:
    session = details.get("session_id")
    head = f"session {session}: " if session is not None else ""
    return (
        f"{head}{details.get('model_name', '?')}, {details.get('objective', '?')} "
        f"by {details.get('strategy', '?')}"
    )


def _rows(details: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    trials = details.get("trials") or []
    return [t for t in trials if isinstance(t, Mapping)]


def _convergence(ax: Axes, details: Mapping[str, Any]) -> None:
    rows = _rows(details)
    history: Sequence[Mapping[str, Any]] = details.get("convergence") or []
    if not history:  # older answers, or a caller that built its own: derive it from the rows
        best = float("-inf")
        derived = []
        for row in rows:
            if row.get("state") == "complete" and row.get("overall_score") is not None:
                best = max(best, float(row["overall_score"]))
                derived.append(
                    {"trial": row["trial"], "overall_score": row["overall_score"], "best": best}
                )
        history = derived
    baseline = {row["trial"] for row in rows if row.get("baseline")}
    plain = [h for h in history if h["trial"] not in baseline]
    based = [h for h in history if h["trial"] in baseline]
    if plain:
        ax.scatter(
            [h["trial"] for h in plain],
            [h["overall_score"] for h in plain],
            color=_POINT,
            s=28,
            zorder=3,
            label="trial score",
        )
    if based:
        ax.scatter(
            [h["trial"] for h in based],
            [h["overall_score"] for h in based],
            color=_BASELINE,
            marker="D",
            s=40,
            zorder=3,
            label="baseline (defaults)",
        )
    if history:
        xs = [h["trial"] for h in history]
        ys = [h["best"] for h in history]
        last = max([xs[-1], *(int(r["trial"]) for r in rows if "trial" in r)])
        # Carry the best to the last trial, so the line ends where the session ended.
        ax.step(
            [*xs, last],
            [*ys, ys[-1]],
            where="post",
            color=_BEST,
            linewidth=2,
            zorder=2,
            label="best so far",
        )
    # No score to draw for these: a mark on the x axis (y in axes coordinates).
    on_axis = ax.get_xaxis_transform()
    for state, color, marker, label in (
        ("pruned", _PRUNED, "v", "pruned"),
        ("fail", _FAILED, "x", "failed"),
    ):
        numbers = [r["trial"] for r in rows if r.get("state") == state]
        if numbers:
            ax.scatter(
                numbers,
                [0.02] * len(numbers),
                transform=on_axis,
                color=color,
                marker=marker,
                s=40,
                zorder=4,
                clip_on=False,
                label=label,
            )
    ax.set_xlabel("trial")
    ax.set_ylabel("overall score")
    ax.set_title("convergence")
    ax.set_ylim(-0.05, 1.05)
    if rows or history:
        numbers = [int(r["trial"]) for r in rows] or [int(h["trial"]) for h in history]
        ax.set_xlim(min(numbers) - 0.5, max(numbers) + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _finish_axes(ax)


def _metrics(row: Mapping[str, Any]) -> tuple[float, float] | None:
    metrics = row.get("metrics")
    if not isinstance(metrics, Mapping):
        return None
    return float(metrics["tokens_per_s"]), float(metrics["quality"])


def _pareto(ax: Axes, details: Mapping[str, Any]) -> None:
    rows = [r for r in _rows(details) if r.get("state") == "complete"]
    points = [(r, m) for r in rows if (m := _metrics(r)) is not None]
    best = details.get("best") if isinstance(details.get("best"), Mapping) else None
    if points:
        ax.scatter(
            [m[0] for _, m in points],
            [m[1] for _, m in points],
            color=_POINT,
            s=28,
            alpha=0.7,
            zorder=2,
            label="completed trial",
        )
        for row, (speed, quality) in points:
            ax.annotate(
                str(row["trial"]),
                (speed, quality),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize="x-small",
                color=_BASELINE,
            )
    if best is not None:
        front = [m for r in best.get("pareto_front") or [] if (m := _metrics(r)) is not None]
        if front:
            front.sort()
            ax.plot(
                [m[0] for m in front],
                [m[1] for m in front],
                color=_BEST,
                marker="o",
                linewidth=1.5,
                zorder=3,
                label="Pareto front",
            )
        knee = _metrics(best)
        if knee is not None:
            ax.scatter(
                [knee[0]],
                [knee[1]],
                color=_KNEE,
                marker="*",
                s=260,
                zorder=4,
                edgecolors="black",
                linewidths=0.6,
                label=f"chosen (knee): trial {best.get('trial')}",
            )
    ax.set_xlabel("tokens/s")
    ax.set_ylabel("quality")
    ax.set_title("quality vs speed")
    ax.set_ylim(-0.05, 1.05)
    _finish_axes(ax)


def _finish_axes(ax: Axes) -> None:
    """A grid, and a legend, or a note where nothing was drawn yet."""
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize="small")
    else:
        ax.text(
            0.5,
            0.5,
            "no trial completed yet",
            transform=ax.transAxes,
            ha="center",
            va="center",
            color=_BASELINE,
        )
