"""``neurons optimize``: parameter optimization sessions from the command line.

The same :class:`~neurons.optimize.service.OptimizationService` as the REST API, in-process
against the state directory, on the nodes ``neurons up`` (or ``neurons node add``) registered.
``run`` creates a session (within ``MAX_OPTIMIZATION_ITERATIONS`` and
``OPTIMIZATION_TIMEOUT_MINUTES``) and runs it in the foreground with a progress bar (``start``
does the same for a stored session: a pending one, or a failed or cancelled one to resume);
Ctrl-C cancels it (its finished trials are kept) and exits 130. A session run here is an
ordinary stored session on the jobs runtime: ``status``, ``ls``, ``apply``, ``cancel`` and
``plot`` work on it, from here, another shell or the API (a cancel stops it after its current
prompt), and a control plane adopts it if this process dies mid-run. ``worker`` joins a
running session from any machine that reaches its database, running more of its trials on
other nodes (``neurons.optimize.worker``); ``status`` shows the trials by worker. Refusals (an
unknown session, a move its status forbids) are reported as by every job command
(``neurons.cli.jobs``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from neurons.cli.common import INTERRUPTED, JsonFlag, emit, run_with_network
from neurons.cli.jobs import exit_for, fail, follow_job, refusals_exit
from neurons.cli.optimize_tables import (
    best_trial,
    print_best,
    score_text,
    summary,
    top_trials,
    trials_table,
    workers_table,
)
from neurons.config import Settings
from neurons.errors import SessionNotFoundError, SessionStateError

if TYPE_CHECKING:
    from neurons.optimize.service import OptimizationService
    from neurons.optimize.worker import WorkerTrial

__all__ = ["optimize_app"]

optimize_app = typer.Typer(
    help="Tune a model's parameters on the network: run sessions, inspect, apply the best.",
    no_args_is_help=True,
)

SessionArg = Annotated[str, typer.Argument(help="Session id (see `neurons optimize ls`).")]
T = TypeVar("T")


def _with_service(call: Callable[[OptimizationService], Awaitable[T]]) -> T:
    from neurons.optimize.service import OptimizationService

    return run_with_network(OptimizationService, call)


def default_plot_path(settings: Settings, session_id: str) -> Path:
    """Where ``run`` and ``plot`` draw a session unless told otherwise."""
    return settings.home / "optimization" / f"session-{session_id}.png"


def _check_png(path: Path | None) -> None:
    """Refuse a bad ``--plot`` before a session runs for minutes, not after."""
    if path is not None:
        from neurons.optimize.plot import png_path  # matplotlib: only when drawing

        png_path(path)


def _draw(details: Mapping[str, Any], path: Path) -> Path:
    from neurons.optimize.plot import plot_convergence

    return plot_convergence(details, path)


# -- formatting ---------------------------------------------------------------------------------


def _read_eval_file(path: Path, model_type: str) -> str:
    """The user's JSONL, checked here so its problems name the file and each line."""
    from neurons.optimize.evalsets import load_jsonl

    load_jsonl(path, model_type=model_type)  # every problem at once, by line
    return path.read_text(encoding="utf-8")


@optimize_app.command("run")
def run(
    model: Annotated[str, typer.Argument(help="Model to tune, e.g. smollm2:135m.")],
    objective: Annotated[
        str,
        typer.Option(
            help="maximize_quality | minimize_latency | minimize_memory | "
            "balance_quality_speed | maximize_throughput."
        ),
    ] = "balance_quality_speed",
    strategy: Annotated[
        str,
        typer.Option(
            help="bayesian_optimization | random_search | grid_search | hyperband | evolutionary."
        ),
    ] = "bayesian_optimization",
    model_type: Annotated[
        str, typer.Option(help="general | code | creative | analysis: the search space.")
    ] = "general",
    iterations: Annotated[
        int | None, typer.Option(help="Trials to run (default: MAX_OPTIMIZATION_ITERATIONS).")
    ] = None,
    timeout_minutes: Annotated[
        float | None,
        typer.Option(help="Running time (default: OPTIMIZATION_TIMEOUT_MINUTES)."),
    ] = None,
    node: Annotated[
        str | None, typer.Option(help="Run every trial on this node (default: the network picks).")
    ] = None,
    eval_file: Annotated[
        Path | None, typer.Option(help="Your evaluation set (JSONL: prompt, reference, ...).")
    ] = None,
    eval_limit: Annotated[int | None, typer.Option(help="Prompts per trial (the first N).")] = None,
    samples: Annotated[
        int,
        typer.Option(help="Generations per prompt, each with its own sampling seed (means)."),
    ] = 1,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="Tune only this parameter (repeatable)."),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Sampler seed, for a repeatable run.")] = None,
    similarity: Annotated[
        bool,
        typer.Option(
            "--similarity/--no-similarity",
            help="Score similarity cases with MiniLM embeddings (off: token F1, no model).",
        ),
    ] = True,
    plot: Annotated[
        Path | None,
        typer.Option(help="Convergence PNG (default $NEURONS_HOME/optimization/session-ID.png)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a session and run it here, with a progress bar; Ctrl-C cancels it."""
    _check_png(plot)
    eval_jsonl = _read_eval_file(eval_file, model_type) if eval_file is not None else None
    created: list[str] = []

    async def optimize(service: OptimizationService) -> dict[str, Any]:
        record = await service.create(
            model_name=model,
            objective=objective,
            strategy=strategy,
            model_type=model_type,
            max_iterations=iterations,
            timeout_minutes=timeout_minutes,
            parameters=param,
            eval_jsonl=eval_jsonl,
            eval_name=eval_file.stem if eval_file is not None else "custom",
            node=node,
            seed=seed,
            eval_limit=eval_limit,
            samples=samples,
            similarity=similarity,
        )
        created.append(record.session_id)
        return await _run_here(service, record.session_id, as_json)

    details = _in_foreground(optimize, created, as_json)
    _finish(details, plot, as_json)


@optimize_app.command("start")
def start(
    session_id: SessionArg,
    plot: Annotated[
        Path | None,
        typer.Option(help="Convergence PNG (default $NEURONS_HOME/optimization/session-ID.png)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Run a pending session here, or resume a failed or cancelled one, with a progress bar
    (as ``run`` does); Ctrl-C cancels it."""
    _check_png(plot)
    details = _in_foreground(
        lambda service: _run_here(service, session_id, as_json), [session_id], as_json
    )
    _finish(details, plot, as_json)


async def _run_here(service: OptimizationService, session_id: str, as_json: bool) -> dict[str, Any]:
    """Start the session in this process and follow it to its end with a progress bar; the
    session's details after."""
    record = await service.start(session_id)
    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("best {task.fields[best]}"),
        TextColumn("{task.fields[node]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=as_json,
    )
    total = int(record.config["max_iterations"])
    bar = bars.add_task(f"session {session_id}: starting", total=total, best="-", node="-")

    def render(current: dict[str, Any]) -> None:
        best = current.get("best_result") or {}
        bars.update(
            bar,
            completed=current["current_iteration"],
            description=f"session {session_id}: {current['status']}",
            best=score_text(best.get("overall_score")),
            node=current.get("node") or "-",
        )

    async def cancel() -> None:
        with contextlib.suppress(SessionStateError):  # it ended meanwhile
            await service.cancel(session_id)

    with bars:
        await follow_job(lambda: service.status(session_id), _status_of, render, cancel)
    # Cancelled from elsewhere, the run may still be finishing its prompt: let it end.
    await service.wait(session_id)
    return await service.details(session_id)


def _status_of(session: dict[str, Any]) -> str:
    return str(session["status"])


def _in_foreground(
    call: Callable[[OptimizationService], Awaitable[dict[str, Any]]],
    session: list[str],
    as_json: bool,
) -> dict[str, Any]:
    """``call``'s answer, Optuna's own logging quiet (the progress bar says it); a refusal
    (an unknown session, one that cannot start) exits 1 as every job command reports it;
    Ctrl-C cancels the session (``session`` names it once it exists) and exits 130."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return _with_service(call)
    except (SessionNotFoundError, SessionStateError) as exc:  # refusals; bad input raises
        raise fail(exc, as_json) from exc
    except KeyboardInterrupt:
        raise _interrupted(session[0] if session else None, as_json) from None
    finally:
        optuna.logging.set_verbosity(verbosity)


def _interrupted(session_id: str | None, as_json: bool) -> typer.Exit:
    """After Ctrl-C: the session cancelled (if following had not done it yet), what it
    reached reported."""
    try:
        if session_id is None:
            raise KeyboardInterrupt
        with contextlib.suppress(SessionStateError):  # already cancelled, or it ended
            _with_service(lambda s: s.cancel(session_id))
        details = _with_service(lambda s: s.details(session_id))
    except KeyboardInterrupt:  # before there was a session, or a second Ctrl-C
        where = f" (session {session_id})" if session_id else ""
        typer.echo(f"\ninterrupted{where}", err=True)
        return typer.Exit(INTERRUPTED)
    if as_json:
        emit(details, success=False)
    else:
        _report_interrupted(details)
    return typer.Exit(INTERRUPTED)


def _finish(details: dict[str, Any], plot: Path | None, as_json: bool) -> None:
    """Report a session that ended here (drawing its convergence); exit as its status says."""
    if details["status"] == "cancelled":  # from another shell, or the API
        if as_json:
            emit(details, success=False)
        else:
            _report_interrupted(details)
        exit_for("cancelled")
    path = _draw(details, plot or default_plot_path(Settings(), details["session_id"]))
    failed = details["status"] != "completed"
    if as_json:
        emit({**details, "plot": str(path)}, success=not failed)
    else:
        _report(details, path)
    if failed:
        typer.echo(
            f"Error: session {details['session_id']} {details['status']}: {details['error']}",
            err=True,
        )
        exit_for(details["status"])


def _report(details: Mapping[str, Any], path: Path) -> None:
    console = Console()
    console.print(summary(details))
    top = top_trials(details)
    if top:
        count = sum(1 for t in details["trials"] if t.get("state") == "complete")
        title = f"top {len(top)} of {count} completed trials"
        console.print(trials_table(top, title, best=best_trial(details), states=False))
    print_best(console, details)
    if details.get("best"):
        console.print(f"apply with: neurons optimize apply {details['session_id']}")
    console.print(f"convergence plot: {path}")


def _report_interrupted(details: Mapping[str, Any]) -> None:
    console = Console(stderr=True)
    session_id = details["session_id"]
    console.print(
        f"interrupted: session {session_id} {details['status']} after "
        f"{details['current_iteration']} of {details['max_iterations']} trials"
    )
    top = top_trials(details)
    if top:
        console.print(trials_table(top, "best so far", best=best_trial(details), states=False))
    print_best(console, details)
    console.print(
        f"its finished trials are kept: neurons optimize status {session_id}, "
        f"neurons optimize plot {session_id}"
    )


# -- the other commands -------------------------------------------------------------------------


@optimize_app.command("status")
def status(session_id: SessionArg, as_json: JsonFlag = False) -> None:
    """A session: its progress, best result and every trial."""
    details = _with_service(lambda s: s.details(session_id))
    if as_json:
        emit(details)
        return
    console = Console()
    console.print(summary(details))
    if details.get("error"):
        console.print(f"error: {details['error']}")
    trials = details.get("trials") or []
    if trials:
        title = f"{len(trials)} trial(s)"
        console.print(trials_table(trials, title, best=best_trial(details), states=True))
    workers = details.get("workers") or []
    if len(workers) > 1:
        console.print(workers_table(workers))
    print_best(console, details)


@optimize_app.command("worker")
def worker(
    session_id: SessionArg,
    node: Annotated[
        list[str] | None,
        typer.Option(
            "--node", help="Run trials on this node (repeatable; default: as the session)."
        ),
    ] = None,
    worker_id: Annotated[
        str | None, typer.Option(help="This worker's name (default: host-pid; unique).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Join a running session from any machine that reaches its database: run its trials on
    these nodes until all are taken. Exits 0 when it needs no more (completed included), 1 on
    a refusal or failing trials, 130 on Ctrl-C (its trial is queued again)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # each trial is reported below
    say: Callable[[WorkerTrial], None] | None = (
        None if as_json else lambda t: typer.echo(t, err=True)
    )
    try:
        report = refusals_exit(
            lambda: _with_service(
                lambda s: s.join(session_id, nodes=node, worker_id=worker_id, progress=say)
            ),
            as_json,
        )
    except KeyboardInterrupt:
        typer.echo(f"\ninterrupted: its trial is queued again (session {session_id})", err=True)
        raise typer.Exit(INTERRUPTED) from None
    if as_json:
        emit(report.to_dict(), success=report.error is None)
    else:
        typer.echo(str(report))
    if report.error is not None:
        typer.echo(f"error: {report.error}", err=True)
        raise typer.Exit(1)


@optimize_app.command("ls")
def list_sessions(
    status: Annotated[
        str | None,
        typer.Option(help="Only sessions in this status (pending, running, completed, ...)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Sessions, newest first."""
    sessions = _with_service(lambda s: s.sessions(status))
    if as_json:
        emit({"sessions": sessions})
        return
    table = Table(title=f"{len(sessions)} session(s)", box=box.SIMPLE_HEAD)
    for column in ("id", "model", "objective", "status", "trials", "best", "node", "created"):
        table.add_column(column, no_wrap=column in ("id", "status", "trials", "best", "created"))
    for s in sessions:
        best = s.get("best_result") or {}
        table.add_row(
            s["session_id"],
            s["model_name"],
            s["objective"],
            s["status"],
            f"{s['current_iteration']}/{s['max_iterations']}",
            score_text(best.get("overall_score")),
            s.get("node") or "-",
            s["created_at"][5:16].replace("T", " "),
        )
    Console().print(table)


@optimize_app.command("apply")
def apply(
    session_id: SessionArg,
    name: Annotated[
        str | None, typer.Option(help="The new model's name (default: <model>-tuned).")
    ] = None,
    node: Annotated[
        list[str] | None,
        typer.Option(
            "--node",
            help="Create it on this node (repeatable; default: every healthy node holding "
            "the model).",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a model from the session's best parameters on the nodes."""
    result = _with_service(lambda s: s.apply(session_id, name=name, nodes=node))
    outcomes: dict[str, str] = result["nodes"]
    ok = all(outcome == "success" for outcome in outcomes.values())
    if as_json:
        emit(result, success=ok)
    else:
        console = Console()
        console.print(f"{result['model']} from {result['from']} (session {session_id}):")
        console.print(result["modelfile"], end="", markup=False, highlight=False)
        created = sum(outcome == "success" for outcome in outcomes.values())
        console.print(f"created on {created} of {len(outcomes)} node(s):")
        for node_name, outcome in outcomes.items():
            console.print(f"  {node_name}: {outcome}", markup=False, highlight=False)
    if not ok:
        raise typer.Exit(1)


@optimize_app.command("cancel")
def cancel(session_id: SessionArg, as_json: JsonFlag = False) -> None:
    """Cancel a pending or running session, wherever it runs (it stops after its current
    prompt); finished trials are kept."""
    record = refusals_exit(lambda: _with_service(lambda s: s.cancel(session_id)), as_json)
    if as_json:
        emit({"session": record.to_dict()})
        return
    typer.echo(f"session {record.session_id} cancelled after {record.current_iteration} trial(s)")


@optimize_app.command("plot")
def plot(
    session_id: SessionArg,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="PNG path (default $NEURONS_HOME/optimization/session-ID.png)."
        ),
    ] = None,
) -> None:
    """Draw the session's convergence (and Pareto front) again, from its stored trials."""
    _check_png(output)
    details = _with_service(lambda s: s.details(session_id))
    typer.echo(str(_draw(details, output or default_plot_path(Settings(), session_id))))
