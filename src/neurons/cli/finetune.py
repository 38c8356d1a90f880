"""``neurons finetune``: fine-tuning from the command line.

``validate`` checks a training data file offline, with no server or state directory: the same
:func:`~neurons.finetune.data.validate_file` a job runs before it trains.

``run`` copies the data into the fine-tuning data directory, creates a job and runs it here
with a progress bar, through the same :class:`~neurons.finetune.service.FineTuningService` as
the REST API, on the nodes ``neurons up`` registered; ``start JOB`` does the same for a stored
job (a failed or cancelled one resumes from its checkpoint). While it trains, this process
holds the job's lease: ``neurons finetune cancel JOB`` from another shell (or the API) stops
it within seconds, and a control plane adopts it if this process dies. Ctrl-C cancels it too;
either way the command exits 130. ``status``, ``ls`` and ``cancel`` work on any stored job,
whoever runs it. Refusals are reported as by every job command (:mod:`neurons.cli.jobs`).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from neurons.cli.common import INTERRUPTED, JsonFlag, emit, run_with_network
from neurons.cli.jobs import exit_for, follow_job, refusals_exit
from neurons.errors import JobStateError, NeuronsError
from neurons.finetune.data import DATA_TYPES, ValidationReport, validate_file

if TYPE_CHECKING:
    from neurons.finetune.service import FineTuningService

__all__ = ["finetune_app", "validate_command"]

finetune_app = typer.Typer(
    help="Fine-tune models on your own data: check training data before a job uses it.",
    no_args_is_help=True,
)

JobArg = Annotated[str, typer.Argument(help="Job id (see `neurons finetune ls`).")]
T = TypeVar("T")
POLL_S = 0.5
SHOWN_PROBLEMS = 50  # the rest are counted: a broken file would scroll the summary away


def _column_mapping(pairs: list[str]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for pair in pairs:
        name, equals, column = pair.partition("=")
        if not equals or not name.strip() or not column:
            raise typer.BadParameter(f"expected FIELD=COLUMN, not {pair!r}", param_hint="--map")
        mapping[name.strip()] = column
    return mapping


def _problems_table(report: ValidationReport) -> Table:
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("line", justify="right", no_wrap=True)
    table.add_column("field")
    table.add_column("problem")
    for problem in report.problems[:SHOWN_PROBLEMS]:
        # Text, not markup: fields like messages[2] and quoted data must print as they are.
        table.add_row(str(problem.line), Text(problem.field or ""), Text(problem.message))
    return table


def validate_command(
    path: Annotated[
        Path,
        typer.Argument(help="The training data file.", exists=True, dir_okay=False),
    ],
    data_type: Annotated[
        str,
        typer.Option("--type", "-t", help=f"The data type: {', '.join(DATA_TYPES)}."),
    ],
    mapping: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            metavar="FIELD=COLUMN",
            help="csv: the column for a field (instruction, input, output, prompt, "
            "completion, text, system); repeat for several.",
        ),
    ] = None,
    max_tokens: Annotated[
        int | None,
        typer.Option(
            "--max-tokens",
            min=1,
            help="Flag examples longer than this context (tokens estimated, conservatively).",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Check a training data file: every problem by line, and a count of valid, invalid and
    duplicate examples. Exit 1 when an example is invalid or none is valid."""
    report = validate_file(
        path,
        data_type,
        column_mapping=_column_mapping(mapping or []),
        max_tokens=max_tokens,
    )
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        console = Console()
        if report.problems:
            console.print(_problems_table(report))
        more = len(report.problems) - SHOWN_PROBLEMS + report.problems_omitted
        if more > 0:
            console.print(f"… and {more} more", markup=False)
        if report.duplicate_lines:
            lines = ", ".join(str(line) for line in report.duplicate_lines)
            console.print(f"duplicates (kept once) at lines: {lines}", markup=False)
        console.print(f"{path}: {report.summary()}", markup=False)
    if report.invalid or not report.ok:
        raise typer.Exit(1)


finetune_app.command("validate")(validate_command)


# -- jobs ---------------------------------------------------------------------------------------


def _answer(call: Callable[[FineTuningService], Awaitable[T]], as_json: bool) -> T:
    """``call``'s answer over a service on the state directory; a refusal (an unknown job, a
    move its status forbids, bad input) exits 1 as every job command reports it."""
    from neurons.finetune.service import FineTuningService

    return refusals_exit(lambda: run_with_network(FineTuningService, call), as_json)


def _loss(value: Any) -> str:
    return f"{float(value):.4f}" if isinstance(value, int | float) else "-"


def _report(job: Mapping[str, Any], console: Console, *, logs: int = 8) -> None:
    metrics = job.get("metrics") or {}
    console.print(
        f"job {job['job_id']}: {job['base_model']} → {job['target_model_name']}, "
        f"{job['status']}, {job['progress'] * 100:.0f}%",
        markup=False,
    )
    before, after = metrics.get("eval_loss_before"), metrics.get("eval_loss_after")
    if before is not None or after is not None:
        console.print(f"held-out loss: {_loss(before)} → {_loss(after)}", markup=False)
    if metrics.get("tokens_per_second"):
        console.print(
            f"training: {metrics.get('steps', '-')} steps, "
            f"{float(metrics['tokens_per_second']):.0f} tokens/s",
            markup=False,
        )
    if metrics.get("deployed_to"):
        console.print(f"deployed to: {', '.join(metrics['deployed_to'])}", markup=False)
    if job.get("error"):
        console.print(f"error: {job['error']}", markup=False)
    latest = (job.get("logs") or [])[-logs:] if logs else []  # [-0:] would be every line
    for line in latest:
        console.print(f"  {line}", markup=False)


@finetune_app.command("run")
def run(
    path: Annotated[
        Path, typer.Argument(help="The training data file.", exists=True, dir_okay=False)
    ],
    base: Annotated[str, typer.Option("--base", help="The base model, served by the neurons.")],
    name: Annotated[str, typer.Option("--name", help="The new model's name.")],
    data_type: Annotated[
        str, typer.Option("--type", "-t", help=f"The data type: {', '.join(DATA_TYPES)}.")
    ] = "jsonl",
    hyperparameters: Annotated[
        str,
        typer.Option(
            "--hyperparameters",
            "-p",
            help="A preset (efficient, balanced, high_quality) or JSON, e.g. "
            '\'{"preset": "efficient", "learning_rate": 2e-4}\'.',
        ),
    ] = "balanced",
    mapping: Annotated[
        list[str] | None,
        typer.Option("--map", metavar="FIELD=COLUMN", help="csv: the column for a field."),
    ] = None,
    node: Annotated[
        list[str] | None,
        typer.Option("--node", help="Deploy to this node (repeatable; default: every holder)."),
    ] = None,
    capability: Annotated[
        list[str] | None, typer.Option("--capability", help="A target capability (repeatable).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a fine-tuning job for PATH and run it here, with a progress bar."""
    columns = _column_mapping(mapping or [])
    content = path.read_bytes()
    ids: list[str] = []

    async def finetune(service: FineTuningService) -> dict[str, Any]:
        relative = await service.upload(path.name, content)
        record = await service.create(
            base_model=base,
            target_model_name=name,
            training_data_path=relative,
            data_type=data_type,
            hyperparameters=hyperparameters,
            target_capabilities=capability,
            nodes=node,
            column_mapping=columns or None,
        )
        ids.append(record.job_id)
        return await _run_here(service, record.job_id, as_json)

    _in_foreground(finetune, ids, as_json)


@finetune_app.command("start")
def start(job_id: JobArg, as_json: JsonFlag = False) -> None:
    """Run a pending job here, or resume a failed or cancelled one from its checkpoint, with a
    progress bar (as ``run`` does); Ctrl-C cancels it."""
    _in_foreground(lambda service: _run_here(service, job_id, as_json), [job_id], as_json)


async def _run_here(service: FineTuningService, job_id: str, as_json: bool) -> dict[str, Any]:
    """Start the job in this process and follow it to its end with a progress bar; the job
    after."""
    await service.start(job_id)
    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("eta {task.fields[eta]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=as_json,
    )
    bar = bars.add_task(f"job {job_id}: starting", total=100, loss="-", eta="-")
    shown = 0

    def render(job: dict[str, Any]) -> None:
        nonlocal shown
        eta = job.get("eta_seconds")
        bars.update(
            bar,
            completed=job["progress"] * 100,
            description=f"job {job_id}: {job['status']}",
            loss=_loss((job.get("metrics") or {}).get("loss")),
            eta="-" if eta is None else time.strftime("%H:%M:%S", time.gmtime(eta)),
        )
        logs = job.get("logs") or []
        if not as_json:
            for line in logs[shown:]:
                bars.console.print(f"  {line}", markup=False)
        shown = len(logs)

    async def cancel() -> None:
        with contextlib.suppress(JobStateError):  # it ended meanwhile
            await service.cancel(job_id)

    with bars:
        await follow_job(lambda: service.status(job_id), _state, render, cancel, POLL_S)
    # Cancelled from elsewhere, the worker may still be writing its checkpoint: let it end.
    await service.wait(job_id)
    return await service.status(job_id)


def _state(job: dict[str, Any]) -> str:
    return str(job["state"])


def _in_foreground(
    call: Callable[[FineTuningService], Awaitable[dict[str, Any]]], job: list[str], as_json: bool
) -> None:
    """Run ``call`` (a job run here to its end), report the job and exit as its status says;
    Ctrl-C cancels the job (``job`` names it once it exists) and exits 130."""
    try:
        final = _answer(call, as_json)
    except KeyboardInterrupt:
        after = _interrupted(job[0] if job else None)
        if after is None:
            typer.echo("\ninterrupted", err=True)
            raise typer.Exit(INTERRUPTED) from None
        final = after
    if as_json:
        emit({"job": final}, success=final["state"] == "completed")
    else:
        _report(final, Console(), logs=0)
    if final["state"] == "cancelled":
        typer.echo(
            f"interrupted: job {final['job_id']} cancelled; resume it with "
            f"`neurons finetune start {final['job_id']}`",
            err=True,
        )
    exit_for(final["state"])


def _interrupted(job_id: str | None) -> dict[str, Any] | None:
    """After Ctrl-C: the job cancelled (if following had not done it yet), as it is now; None
    before there was a job, or on a second Ctrl-C."""
    if job_id is None:
        return None
    from neurons.finetune.service import FineTuningService

    try:
        with contextlib.suppress(JobStateError):  # already cancelled, or it ended
            run_with_network(FineTuningService, lambda s: s.cancel(job_id))
        state: dict[str, Any] = run_with_network(FineTuningService, lambda s: s.status(job_id))
    except (KeyboardInterrupt, NeuronsError):
        return None
    return state


@finetune_app.command("status")
def status(job_id: JobArg, as_json: JsonFlag = False) -> None:
    """A job: its phase, progress, metrics and latest log lines."""
    job = _answer(lambda s: s.status(job_id), as_json)
    if as_json:
        emit({"job": job})
    else:
        _report(job, Console(), logs=20)


@finetune_app.command("ls")
def ls(
    status: Annotated[
        str | None, typer.Option(help="Only jobs in this status (or running phase).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Fine-tuning jobs, newest first."""
    jobs = _answer(lambda s: s.jobs(status), as_json)
    if as_json:
        emit({"jobs": jobs, "count": len(jobs)})
        return
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("job", "base", "target", "status", "progress", "loss before → after"):
        table.add_column(column)
    for job in jobs:
        metrics = job.get("metrics") or {}
        table.add_row(
            job["job_id"],
            job["base_model"],
            job["target_model_name"],
            job["status"],
            f"{job['progress'] * 100:.0f}%",
            f"{_loss(metrics.get('eval_loss_before'))} → {_loss(metrics.get('eval_loss_after'))}",
        )
    Console().print(table)


@finetune_app.command("cancel")
def cancel(job_id: JobArg, as_json: JsonFlag = False) -> None:
    """Cancel a pending or running job, here or in any other process (its worker stops at a
    checkpoint within seconds; ``start`` resumes it)."""
    record = _answer(lambda s: s.cancel(job_id), as_json)
    if as_json:
        emit({"job": record.to_dict()})
    else:
        typer.echo(f"job {record.job_id} {record.status}")
