"""The tables and lines ``neurons optimize`` prints for a session: its trials (the best
marked), its workers, the best parameters and a one-line summary."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

__all__ = [
    "TOP",
    "best_trial",
    "print_best",
    "score_text",
    "summary",
    "top_trials",
    "trials_table",
    "workers_table",
]

TOP = 5


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def score_text(value: Any) -> str:
    return "-" if value is None else f"{float(value):.4f}"


def _parameters(parameters: Mapping[str, Any]) -> str:
    return " ".join(f"{name}={_value(value)}" for name, value in parameters.items())


def _parameter_names(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    names: list[str] = []
    for row in rows:
        for name in row.get("parameters") or {}:
            if name not in names:
                names.append(name)
    return names


def trials_table(
    rows: Sequence[Mapping[str, Any]], title: str, *, best: int | None, states: bool
) -> Table:
    """One row per trial: its number (``b`` the baseline, ``*`` the best), score, parameters
    and measurements; ``states`` adds the state and, for pruned trials, why, and the worker
    that ran it when more than one did."""
    names = _parameter_names(rows)
    notes = states and any(row.get("pruned_reason") for row in rows)
    workers = states and len({row.get("worker") for row in rows}) > 1
    table = Table(
        title=title, caption="b: baseline (Ollama's defaults), *: best", box=box.SIMPLE_HEAD
    )
    table.add_column("trial", justify="right", no_wrap=True)
    if states:
        table.add_column("state")
    if workers:
        table.add_column("worker")
    table.add_column("score", justify="right")
    for name in names:
        table.add_column(name, justify="right")
    for column in ("quality", "total ms", "tok/s", "MiB"):
        table.add_column(column, justify="right")
    if notes:
        table.add_column("note")
    for row in rows:
        marks = ("b" if row.get("baseline") else "") + (
            "*" if best is not None and row["trial"] == best else ""
        )
        cells = [f"{row['trial']} {marks}".strip()]
        if states:
            cells.append(str(row.get("state", "-")))
        if workers:
            cells.append(f"{row.get('worker') or '-'} ({row.get('node') or '-'})")
        cells.append(score_text(row.get("overall_score")))
        params = row.get("parameters") or {}
        cells += [_value(params[n]) if n in params else "-" for n in names]
        metrics = row.get("metrics") or {}
        if metrics:
            cells += [
                f"{metrics['quality']:.3f}",
                f"{metrics['total_ms']:.0f}",
                f"{metrics['tokens_per_s']:.1f}",
                f"{metrics['memory_bytes'] / 2**20:.0f}",
            ]
        else:
            cells += ["-"] * 4
        if notes:
            cells.append(str(row.get("pruned_reason") or ""))
        table.add_row(*cells)
    return table


def workers_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    """Trials by worker: what each counted towards the session, by state, and its nodes."""
    table = Table(title=f"{len(rows)} workers", box=box.SIMPLE_HEAD)
    table.add_column("worker")
    for column in ("finished", "complete", "pruned", "failed", "running"):
        table.add_column(column, justify="right")
    table.add_column("nodes")
    for row in rows:
        counts = [str(row[c]) for c in ("finished", "complete", "pruned", "failed", "running")]
        table.add_row(row["worker"], *counts, ", ".join(row["nodes"]) or "-")
    return table


def best_trial(details: Mapping[str, Any]) -> int | None:
    best = details.get("best")
    return int(best["trial"]) if isinstance(best, Mapping) else None


def top_trials(details: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    complete = [
        t
        for t in details.get("trials") or []
        if t.get("state") == "complete" and t.get("overall_score") is not None
    ]
    return sorted(complete, key=lambda t: (-float(t["overall_score"]), t["trial"]))[:TOP]


def print_best(console: Console, details: Mapping[str, Any]) -> None:
    best = details.get("best")
    if not isinstance(best, Mapping):
        console.print("no trial completed: no best parameters")
        return
    how = (
        " (the knee of the quality/speed Pareto front)"
        if details.get("objective") == "balance_quality_speed"
        else ""
    )
    console.print(
        f"best: trial {best['trial']}, score {score_text(best.get('overall_score'))}{how}"
        + (" (Ollama's defaults)" if best.get("baseline") else "")
    )
    console.print(f"best parameters: {_parameters(best.get('parameters') or {})}")


def summary(details: Mapping[str, Any]) -> str:
    return (
        f"session {details['session_id']}: {details['model_name']}, {details['objective']} by "
        f"{details['strategy']}, {details['status']}, {details['current_iteration']}/"
        f"{details['max_iterations']} trials, {details['elapsed_s']:.1f}s"
        + (f" on {details['node']}" if details.get("node") else "")
    )


# -- neurons optimize run, start ----------------------------------------------------------------
