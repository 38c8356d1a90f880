"""``neurons learn``: distributed-learning runs from the command line.

``run`` stores a run and trains it here, in this process, with a progress bar and a final
table, through the same :class:`~neurons.learning.service.LearningService` as the REST API;
``start RUN`` does the same for a stored run (a cancelled or failed one resumes from its
checkpoint). While it trains, this process holds the run's lease: a control plane started
meanwhile does not train it a second time, and ``neurons learn cancel RUN`` from another
shell stops it within a second or so. Ctrl-C cancels it too; either way the command exits
130. ``status``, ``ls``, ``report`` and ``cancel`` work on any stored run. With ``run --deploy
flower`` a federated run goes through a Flower SuperLink; ``superlink`` and ``node`` start one
and its SuperNodes on other machines. Refusals are reported as
every job command reports them (:mod:`neurons.cli.jobs`).

``run`` takes seed 003's keys (:mod:`neurons.learning.seed_keys`) as ``--set KEY=VALUE``
(repeatable: ``--set model.num_layers=2 --set node_config.max_students=0``) and a config
file's learning keys as defaults with ``--config FILE`` (its other sections are not this
command's). Precedence, highest first: the flags typed (a flag and a ``--set`` of the same
field are refused, naming both), ``--set``, ``--config`` (key by key over
``NEURONS_LEARNING_DEFAULTS``), RunConfig's defaults. A bad key or value exits 2 naming it.

``teach`` runs an LLM teaching job (a run of mode ``teach``) here the same way, through
:meth:`~neurons.learning.service.LearningService.teach` over the registered nodes, and prints
the student's agreement with the teacher before and after.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from click.core import ParameterSource
from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from neurons.cli.common import INTERRUPTED, JsonFlag, emit, run_with_network, run_with_store
from neurons.cli.jobs import exit_for, fail, follow_job, refusals_exit
from neurons.errors import LearningKeyError, LearningStateError, NeuronsError
from neurons.learning.choices import DEPLOYS, MODEL_TYPES, MODES
from neurons.learning.data import DATASETS, PARTITIONS
from neurons.learning.seed_keys import RunRequest

if TYPE_CHECKING:
    from neurons.config import Settings
    from neurons.learning.service import LearningService
    from neurons.learning.teaching import TeachConfig
    from neurons.network.manager import NetworkManager
    from neurons.store import Store

__all__ = ["learn_app"]

learn_app = typer.Typer(
    help="Distributed learning between nodes: distillation, ensembles, federated averaging.",
    no_args_is_help=True,
)
RunArg = Annotated[str, typer.Argument(help="Run id (see `neurons learn ls`).")]
T = TypeVar("T")
USAGE = 2  # the exit code of a usage error, as typer's own


def _answer(
    call: Callable[[LearningService], Awaitable[T]],
    as_json: bool,
    settings: Settings | None = None,
) -> T:
    """``call``'s answer over a service on the state directory; a refusal exits 1."""
    from neurons.learning.service import LearningService

    return refusals_exit(lambda: run_with_store(LearningService, call, settings), as_json)


def _choice(value: str, choices: tuple[str, ...], name: str) -> str:
    if value not in choices:
        raise typer.BadParameter(f"choose one of {', '.join(choices)}", param_hint=name)
    return value


# run's flags: parameter -> (flag, RunConfig field).
_FLAGS = {
    "dataset": ("--dataset", "dataset"),
    "nodes": ("--nodes", "nodes"),
    "mode": ("--mode", "mode"),
    "partition": ("--partition", "partition"),
    "rounds": ("--rounds", "rounds"),
    "model": ("--model", "model_type"),
    "local_steps": ("--local-steps", "local_steps"),
    "learning_rate": ("--lr", "learning_rate"),
    "labelled_fraction": ("--labelled-fraction", "labelled_fraction"),
    "seed": ("--seed", "seed"),
    "deploy": ("--deploy", "deploy"),
    "superlink": ("--superlink", "superlink"),
}


@learn_app.command("run")
def run(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option(help=f"One of {', '.join(DATASETS)}.")] = "digits",
    nodes: Annotated[int, typer.Option(help="Learning nodes.")] = 4,
    mode: Annotated[str, typer.Option(help=f"One of {', '.join(MODES)}.")] = "fedavg",
    partition: Annotated[str, typer.Option(help="iid or skewed (sorted by label).")] = "iid",
    rounds: Annotated[int, typer.Option(help="Rounds.")] = 20,
    model: Annotated[str, typer.Option(help="mlp or transformer.")] = "mlp",
    local_steps: Annotated[int, typer.Option(help="Optimizer steps per node and round.")] = 20,
    learning_rate: Annotated[float, typer.Option("--lr", help="Adam learning rate.")] = 3e-3,
    labelled_fraction: Annotated[
        float, typer.Option(help="distill: share of each student's examples with labels.")
    ] = 0.05,
    seed: Annotated[int, typer.Option(help="Seed for splits, partitions and weights.")] = 0,
    deploy: Annotated[
        str,
        typer.Option(
            help="local (in this process) or flower (federated modes, through a SuperLink)."
        ),
    ] = "local",
    superlink: Annotated[
        str | None,
        typer.Option(
            help="With --deploy flower: HOST:PORT of a running SuperLink whose SuperNodes were "
            "started with `neurons learn node` (default: a loopback one with the run's nodes)."
        ),
    ] = None,
    assignments: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="A seed 003 key or run field, e.g. model.num_layers=2, "
            "node_config.max_students=0, learning_system.auto_scale=true (repeatable).",
        ),
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="A neurons/seed 003 YAML config file whose learning keys are the defaults.",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Train a learning run here and print its result."""
    _choice(dataset, DATASETS, "--dataset")
    _choice(deploy, DEPLOYS, "--deploy")
    _choice(mode, MODES, "--mode")
    _choice(partition, PARTITIONS, "--partition")
    _choice(model, MODEL_TYPES, "--model")
    typed = [  # only the flags typed: the others leave their fields to --set and defaults
        (flag, field, ctx.params[name])
        for name, (flag, field) in _FLAGS.items()
        if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
    ]
    try:
        request = RunRequest.of(typed, assignments or ())
        settings = _learning_settings(config_file)
    except NeuronsError as exc:
        raise fail(exc, as_json, USAGE) from exc
    _train(as_json, config=request, settings=settings)


def _learning_settings(path: Path | None) -> Settings | None:
    """Settings whose learning defaults take ``path``'s learning keys over the environment's
    (None: no file, the environment's settings)."""
    if path is None:
        return None
    from neurons.config import Settings
    from neurons.system.config_file import load_config

    defaults = load_config(path).values.get("learning_defaults", {})
    return Settings(learning_defaults=defaults) if defaults else None


@learn_app.command("superlink")
def superlink_cmd(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",
    port: Annotated[
        int, typer.Option(help="Port of the Fleet, Control and ServerAppIo APIs.")
    ] = 8000,
) -> None:
    """Run a Flower SuperLink here, for SuperNodes started with `neurons learn node` and runs
    started with `neurons learn run --deploy flower --superlink HOST:PORT` (this process
    becomes it, until stopped). Insecure transport: trusted networks only."""
    from neurons.learning.deployment import run_superlink

    try:
        run_superlink(port, host=host)
    except NeuronsError as exc:
        raise fail(exc, False) from exc


@learn_app.command("node")
def node(
    superlink: Annotated[str, typer.Option(help="HOST:PORT of the run's SuperLink.")],
    partition_id: Annotated[int, typer.Option(help="This node's share, 0 to N-1.")] = 0,
    num_partitions: Annotated[
        int, typer.Option(help="N: the run's --nodes (every node of it uses the same N).")
    ] = 2,
    port: Annotated[int, typer.Option(help="Local port of the SuperNode's runtime API.")] = 9094,
) -> None:
    """Run a Flower SuperNode here for `neurons learn run --deploy flower --superlink ...`
    (this process becomes it, until stopped). Insecure transport: trusted networks only."""
    from neurons.learning.deployment import run_supernode

    try:
        run_supernode(superlink, partition_id, num_partitions, port=port)
    except NeuronsError as exc:
        raise fail(exc, False) from exc


@learn_app.command("teach")
def teach(
    teacher: Annotated[str, typer.Option(help="The teacher model (answers the prompts).")],
    student: Annotated[str, typer.Option(help="The student model (fine-tuned on them).")],
    prompts: Annotated[
        Path | None,
        typer.Option(help="Prompts, one a line ('#' comments); default: 48 packaged ones."),
    ] = None,
    node: Annotated[
        str | None, typer.Option(help="The student's node (gets the tuned model).")
    ] = None,
    teacher_node: Annotated[str | None, typer.Option(help="The teacher's node.")] = None,
    tuned: Annotated[
        str | None, typer.Option(help="Name of the tuned student (default STUDENT-from-TEACHER).")
    ] = None,
    hyperparameters: Annotated[
        str | None, typer.Option(help="Fine-tuning preset name or JSON object.")
    ] = None,
    num_predict: Annotated[int, typer.Option(help="Tokens per answer at most.")] = 32,
    as_json: JsonFlag = False,
) -> None:
    """One LLM teaches another: the student is fine-tuned on the teacher's answers and
    redeployed; agreement before and after on held-out prompts."""
    from neurons.finetune.presets import parse_hyperparameters
    from neurons.learning.teaching import TeachConfig

    try:
        config = TeachConfig(
            teacher=teacher,
            student=student,
            teacher_node=teacher_node or "",
            student_node=node or "",
            tuned=tuned or "",
            prompts=_read_prompts(prompts) if prompts is not None else (),
            hyperparameters=parse_hyperparameters(hyperparameters).to_dict()
            if hyperparameters
            else {},
            num_predict=num_predict,
        )
    except NeuronsError as exc:
        raise fail(exc, as_json) from exc
    _train(as_json, teach=config)


def _read_prompts(path: Path) -> tuple[str, ...]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = "no such file" if isinstance(exc, FileNotFoundError) else str(exc)
        raise typer.BadParameter(f"cannot read {path}: {reason}", param_hint="--prompts") from exc
    lines = (line.strip() for line in text.splitlines())
    return tuple(line for line in lines if line and not line.startswith("#"))


def _teaching_service(store: Store, settings: Settings, network: NetworkManager) -> _Teaching:
    from neurons.finetune.service import FineTuningService
    from neurons.learning.service import LearningService

    fine_tuning = FineTuningService(store, settings, network)
    return _Teaching(LearningService(store, settings, fine_tuning=fine_tuning))


class _Teaching:
    """A learning service over this shell's fine-tuning service: closing closes both (the
    teaching job first, then the fine-tuning job it waits for)."""

    def __init__(self, service: LearningService) -> None:
        self.service = service

    async def aclose(self) -> None:
        await self.service.aclose()
        if self.service.fine_tuning is not None:
            await self.service.fine_tuning.aclose()


@learn_app.command("start")
def start(run_id: RunArg, as_json: JsonFlag = False) -> None:
    """Train a stored run here (a cancelled or failed one resumes from its checkpoint)."""
    _train(as_json, run_id=run_id)


@learn_app.command("status")
def status(run_id: RunArg, as_json: JsonFlag = False) -> None:
    """A run's state and per-round history."""
    state = _answer(lambda service: service.status(run_id), as_json)
    if as_json:
        emit({"run": state})
        return
    _print_run(state)


@learn_app.command("ls")
def ls(
    state: Annotated[str | None, typer.Option("--status", help="Only runs in this status.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Stored runs, newest first."""
    runs = _answer(lambda service: service.runs(state), as_json)
    if as_json:
        emit({"runs": runs, "total": len(runs)})
        return
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("id", "mode", "dataset", "status", "round", "test acc"):
        table.add_column(column)
    for item in runs:
        accuracy = item["result"].get("test_accuracy")
        table.add_row(
            item["run_id"],
            item["mode"],
            item["dataset"],
            item["status"],
            f"{item['current_round']}/{item['total_rounds']}",
            "" if accuracy is None else f"{accuracy:.4f}",
        )
    Console().print(table)


@learn_app.command("report")
def report(
    run_id: RunArg,
    out: Annotated[
        Path | None,
        typer.Option(help="FILE.png or FILE.html [default: learn-run-RUN.png here]."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Write a run's accuracy per round per node and who taught whom, round by round, as a
    PNG or a one-page HTML file."""
    path = out or Path(f"learn-run-{run_id}.png")
    if path.suffix.lower() not in (".png", ".html"):
        raise typer.BadParameter("the file must end in .png or .html", param_hint="--out")
    found = _answer(lambda service: service.report(run_id), as_json)
    from neurons.learning.report import render_html, render_png

    if path.suffix.lower() == ".png":
        render_png(found, path)
    else:
        path.write_text(render_html(found), encoding="utf-8")
    if as_json:
        emit({"path": str(path), "report": found.to_dict()})
    else:
        typer.echo(f"run {run_id}: report written to {path}")


@learn_app.command("cancel")
def cancel(run_id: RunArg, as_json: JsonFlag = False) -> None:
    """Cancel a run: pending, or training here or in any other process (it stops within a
    second or so, its latest checkpoint kept)."""
    record = _answer(lambda service: service.cancel(run_id), as_json)
    if as_json:
        emit({"run": record.to_dict()})
    else:
        typer.echo(f"run {record.run_id}: {record.status}")


def _train(
    as_json: bool,
    *,
    config: RunRequest | None = None,
    run_id: str = "",
    teach: TeachConfig | None = None,
    settings: Settings | None = None,
) -> None:
    """Store ``config`` (or ``teach``) as a new run, or take the stored ``run_id``, run it
    here and follow it to its end; exit as its status says. A refused ``config`` exits 1
    when a typed flag is to blame, 2 when a ``--set`` or configured key is."""
    ids = [run_id] if run_id else []

    async def go(service: LearningService) -> dict[str, Any]:
        if teach is not None:
            ids.append((await service.teach(teach)).run_id)
        else:
            if config is not None:
                try:
                    ids.append((await service.create(config)).run_id)
                except LearningKeyError as exc:
                    flags = all(key.startswith("--") for key in exc.keys)
                    raise fail(exc, as_json, 1 if flags else USAGE) from exc
            await service.start(ids[0])
        return await _follow(service, ids[0], as_json)

    async def go_teaching(teaching: _Teaching) -> dict[str, Any]:
        return await go(teaching.service)

    try:
        if teach is not None or run_id:  # a stored run may be a teaching job: it needs nodes
            state = refusals_exit(lambda: run_with_network(_teaching_service, go_teaching), as_json)
        else:
            state = _answer(go, as_json, settings)
    except KeyboardInterrupt:  # Ctrl-C: the run was cancelled, at its latest checkpoint
        if ids:
            typer.echo(
                f"\ninterrupted: run {ids[0]} cancelled; resume it with "
                f"`neurons learn start {ids[0]}`",
                err=True,
            )
        raise typer.Exit(INTERRUPTED) from None
    if as_json:
        emit({"run": state}, success=state["status"] == "completed")
    else:
        _print_run(state)
    exit_for(state["status"])


async def _follow(service: LearningService, run_id: str, as_json: bool) -> dict[str, Any]:
    state = await service.status(run_id)
    progress = Progress(
        TextColumn("[bold]run {task.fields[run]}[/] {task.fields[mode]}"),
        BarColumn(),
        TextColumn("round {task.completed}/{task.total}"),
        TextColumn("{task.fields[metric]}"),
        TimeElapsedColumn(),
        disable=as_json,
    )
    bar = progress.add_task(
        "learn", total=state["total_rounds"], run=run_id, mode=state["mode"], metric=""
    )

    def render(state: dict[str, Any]) -> None:
        accuracy = state["result"].get("test_accuracy")
        metric = "" if accuracy is None else f"test acc {accuracy:.4f}"
        progress.update(bar, completed=state["current_round"], metric=metric)

    async def cancel() -> None:
        with contextlib.suppress(LearningStateError):  # it ended meanwhile
            await service.cancel(run_id)

    with progress:
        return await follow_job(
            lambda: service.status(run_id), lambda s: str(s["status"]), render, cancel
        )


def _print_run(state: dict[str, Any]) -> None:
    if state["mode"] == "teach":
        _print_teaching(state)
        return
    console = Console()
    result, config = state["result"], state["config"]
    via = ""
    if config.get("deploy") == "flower":  # runs stored before the field have none
        via = f" through the SuperLink at {config['superlink'] or 'loopback'}"
    console.print(
        f"run {state['run_id']}: {state['mode']} on {state['dataset']} "
        f"({config['partition']}, {config['nodes']} nodes{via}), "
        f"{state['status']}, round {state['current_round']}/{state['total_rounds']}"
    )
    if state.get("error"):
        console.print(f"[red]error:[/] {state['error']}")
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in result.items():
        if isinstance(value, float):
            table.add_row(key, f"{value:.4f}")
        elif isinstance(value, int):
            table.add_row(key, str(value))
        elif isinstance(value, dict) and all(isinstance(v, float) for v in value.values()):
            for name, number in value.items():
                table.add_row(f"{key} {name}", f"{number:.4f}")
    console.print(table)


def _print_teaching(state: dict[str, Any]) -> None:
    console = Console()
    config, result = state["config"], state["result"]
    console.print(
        f"teaching {state['run_id']}: {config['teacher']} on {config['teacher_node']} teaches "
        f"{config['student']} on {config['student_node']} -> {config['tuned']}, "
        f"{state['status']}, phase {state['current_round']}/{state['total_rounds']}"
    )
    if state.get("error"):
        console.print(f"[red]error:[/] {state['error']}")
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("agreement on held-out prompts", "token F1", "same opening"):
        table.add_column(column, justify="right")
    for when in ("before", "after"):
        if isinstance(result.get(when), dict):
            row = result[when]
            table.add_row(when, f"{row['f1']:.4f}", f"{row['opening']:.4f}")
    if "gain" in result:
        table.add_row("gain", f"{result['gain']:+.4f}", "")
    console.print(table)
