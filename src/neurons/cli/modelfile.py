"""``neurons modelfile``: check, normalise and convert Modelfiles without a server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from neurons.errors import ModelfileError
from neurons.modelfile import Modelfile, check, parse_file, render, to_create_request

__all__ = [
    "modelfile_app",
    "render_command",
    "to_json_command",
    "tune_command",
    "validate_command",
]

modelfile_app = typer.Typer(
    help="Validate, render and convert Modelfiles (Ollama's syntax, checked offline).",
    no_args_is_help=True,
)

ModelfilePath = Annotated[
    Path,
    typer.Argument(help="The Modelfile.", exists=True, dir_okay=False, readable=True),
]


def _fail(problems: list[str]) -> typer.Exit:
    for problem in problems:
        typer.echo(problem, err=True)
    return typer.Exit(1)


def _load(path: Path, *, strict: bool = True) -> Modelfile:
    try:
        return parse_file(path, strict=strict)
    except ModelfileError as exc:
        raise _fail(exc.problems) from None


def validate_command(path: ModelfilePath) -> None:
    """Check a Modelfile as `ollama create` would: exit 1 and list every problem by line."""
    modelfile = _load(path, strict=False)  # check() reports a missing FROM with the rest
    problems, warnings = check(modelfile)
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)
    if problems:
        raise _fail(problems)
    typer.echo(f"{path}: valid")


def render_command(path: ModelfilePath) -> None:
    """Print the Modelfile normalised: upper-case commands, one quoting style."""
    modelfile = _load(path)
    try:
        text = render(modelfile)
    except ModelfileError as exc:  # pragma: no cover - a parsed Modelfile always renders
        raise _fail(exc.problems) from None
    typer.echo(text, nl=False)


def to_json_command(
    path: ModelfilePath,
    model: Annotated[
        str | None,
        typer.Option(help="Model name for the body (default: the Modelfile's directory name)."),
    ] = None,
) -> None:
    """Print the /api/create JSON body; local FROM/ADAPTER files are hashed, not uploaded."""
    modelfile = _load(path)
    try:
        body, blobs = to_create_request(
            modelfile, model or path.resolve().parent.name or "model", base_dir=path.parent
        )
    except ModelfileError as exc:
        raise _fail(exc.problems) from None
    for digest, blob in blobs.items():
        typer.echo(f"blob to upload: {digest} {blob}", err=True)
    typer.echo(json.dumps(body, indent=2, ensure_ascii=False))


def tune_command(
    path: ModelfilePath,
    write: Annotated[
        bool, typer.Option("--write", help="Save the tuned Modelfile in place.")
    ] = False,
    every: Annotated[
        bool, typer.Option("--all", help="Give every PARAMETER an explicit value.")
    ] = False,
    host_stats: Annotated[
        Path | None, typer.Option("--host-stats", help="Host stats JSON (else measured).")
    ] = None,
    gpu_stats: Annotated[
        Path | None, typer.Option("--gpu-stats", help="GPU stats JSON (else measured).")
    ] = None,
) -> None:
    """Tune num_ctx, num_gpu, num_thread and num_batch for this host's hardware.

    The tuned Modelfile goes to stdout (or back into PATH with --write); each choice and its
    reason go to stderr.
    """
    from neurons.modelfile.manager import OllamaModelfileManager

    manager = OllamaModelfileManager(path, host_stats, gpu_stats)
    try:
        manager.load_modelfile()
        manager.validate_modelfile()
    except ModelfileError as exc:
        raise _fail(exc.problems) from None
    choices = (
        manager.determine_all_parameters() if every else manager.optimize_parameters_for_hardware()
    )
    for choice in choices.values():
        typer.echo(f"{choice.name} = {choice.value}: {choice.reason}", err=True)
    if write:
        manager.save_modelfile()
        typer.echo(f"wrote {path}", err=True)
    else:
        typer.echo(manager.render(), nl=False)


modelfile_app.command("validate")(validate_command)
modelfile_app.command("render")(render_command)
modelfile_app.command("to-json")(to_json_command)
modelfile_app.command("tune")(tune_command)
