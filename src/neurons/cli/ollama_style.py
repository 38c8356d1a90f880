"""``neurons run | list | ps | pull | show | rm | cp | create | stop``: ``ollama``'s commands,
speaking the Ollama API to the control plane or to any node, with ``ollama``'s output.

Each command resolves the server (``--host``, ``NEURONS_HOST``, ``OLLAMA_HOST``, else the
control plane; see :mod:`neurons.cli.ollama_client`), makes its requests and prints. An
``{"error": ...}`` answer surfaces as a NeuronsError, which ``neurons.cli.main`` prints as
``Error: <message>`` with exit status 1.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from neurons.cli.chat_repl import ProgressPrinter, RunOptions, interactive, run_once
from neurons.cli.ollama_client import OllamaAPI, call, resolve_host
from neurons.cli.ollama_text import SHOW_FIELDS, list_table, ps_table, show_field, show_info
from neurons.errors import InvalidRequestError, ModelNotFoundError, NeuronsError
from neurons.modelfile import parse_file, to_create_request

__all__ = [
    "cp_command",
    "create_command",
    "list_command",
    "ps_command",
    "pull_command",
    "rm_command",
    "run_command",
    "show_command",
    "stop_command",
]

HostOption = Annotated[
    str | None,
    typer.Option(
        "--host",
        help="Server to talk to: host, host:port or URL "
        "(default: $NEURONS_HOST, $OLLAMA_HOST, else the control plane).",
        show_default=False,
    ),
]
Model = Annotated[str, typer.Argument(help="Model name, e.g. smollm2:135m.", show_default=False)]


def run_command(
    model: Model,
    prompt: Annotated[
        list[str] | None, typer.Argument(help="Prompt (none: chat interactively).")
    ] = None,
    host: HostOption = None,
    verbose: Annotated[bool, typer.Option("--verbose", help="Print timings.")] = False,
    response_format: Annotated[
        str | None, typer.Option("--format", help="Response format: json, or a JSON schema.")
    ] = None,
    keepalive: Annotated[
        str | None, typer.Option("--keepalive", help="How long the model stays loaded (5m).")
    ] = None,
    think: Annotated[
        bool | None, typer.Option("--think/--nothink", help="Let a thinking model think.")
    ] = None,
    hidethinking: Annotated[
        bool, typer.Option("--hidethinking", help="Think, but do not print the thinking.")
    ] = False,
    nowordwrap: Annotated[
        bool, typer.Option("--nowordwrap", help="Accepted as in ollama (neurons never wraps).")
    ] = False,
) -> None:
    """Run MODEL: answer PROMPT (or piped stdin) and exit, or chat as `ollama run` does."""
    keep_alive: str | int | None = keepalive
    if keepalive is not None and keepalive.lstrip("-").isdigit():
        keep_alive = int(keepalive)  # plain numbers are seconds on the wire
    opts = RunOptions(
        model,
        format=response_format,
        keep_alive=keep_alive,
        think=think,
        hide_thinking=hidethinking,
        verbose=verbose,
    )
    parts = list(prompt or [])
    if not sys.stdin.isatty():
        parts.insert(0, sys.stdin.read())  # as in ollama: piped text first, then the words
    url = resolve_host(host)
    text = " ".join(part for part in parts if part.strip())
    if parts:
        run_once(url, opts, text)
    else:
        interactive(url, opts)


def list_command(
    prefix: Annotated[str | None, typer.Argument(help="Only names starting so.")] = None,
    host: HostOption = None,
) -> None:
    """List models (NAME, ID, SIZE, MODIFIED)."""
    typer.echo(list_table(call(resolve_host(host), lambda c: c.tags()), prefix))


def ps_command(
    prefix: Annotated[str | None, typer.Argument(help="Only names starting so.")] = None,
    host: HostOption = None,
) -> None:
    """List loaded models (NAME, ID, SIZE, PROCESSOR, CONTEXT, UNTIL)."""
    typer.echo(ps_table(call(resolve_host(host), lambda c: c.ps()), prefix))


def pull_command(
    model: Model,
    host: HostOption = None,
    insecure: Annotated[bool, typer.Option(help="Allow a plain-HTTP registry.")] = False,
) -> None:
    """Pull MODEL from a registry, showing progress."""
    progress = ProgressPrinter(sys.stderr)

    async def work(client: OllamaAPI) -> None:
        async for item in client.pull(model, insecure=insecure):
            progress(item)

    try:
        call(resolve_host(host), work)
    finally:
        progress.close()


def show_command(
    model: Model,
    host: HostOption = None,
    license_: Annotated[bool, typer.Option("--license", help="Only the license.")] = False,
    modelfile: Annotated[bool, typer.Option("--modelfile", help="Only the Modelfile.")] = False,
    parameters: Annotated[bool, typer.Option("--parameters", help="Only parameters.")] = False,
    system: Annotated[bool, typer.Option("--system", help="Only the system message.")] = False,
    template: Annotated[bool, typer.Option("--template", help="Only the template.")] = False,
) -> None:
    """Show MODEL's details, or one part of it."""
    chosen = [
        name
        for name, flag in zip(
            SHOW_FIELDS, (license_, modelfile, parameters, system, template), strict=True
        )
        if flag
    ]
    if len(chosen) > 1:
        raise InvalidRequestError(
            "only one of '--license', '--modelfile', '--parameters', '--system', "
            "or '--template' can be specified"
        )
    show = call(resolve_host(host), lambda c: c.show(model))
    typer.echo(show_field(show, chosen[0]) if chosen else show_info(show))


def rm_command(
    models: Annotated[list[str], typer.Argument(help="Models to delete.", show_default=False)],
    host: HostOption = None,
) -> None:
    """Delete models (each unloaded first, as ollama does)."""

    async def work(client: OllamaAPI) -> None:
        for name in models:
            try:
                await client.load(name, keep_alive=0)
            except ModelNotFoundError:
                pass
            except NeuronsError:
                typer.echo(f"Warning: unable to stop model '{name}'", err=True)
            await client.delete(name)
            typer.echo(f"deleted '{name}'")

    call(resolve_host(host), work)


def cp_command(
    source: Annotated[str, typer.Argument(help="Existing model.", show_default=False)],
    destination: Annotated[str, typer.Argument(help="New name.", show_default=False)],
    host: HostOption = None,
) -> None:
    """Copy SOURCE to DESTINATION."""
    call(resolve_host(host), lambda c: c.copy(source, destination))
    typer.echo(f"copied '{source}' to '{destination}'")


def create_command(
    name: Annotated[str, typer.Argument(help="Name of the new model.", show_default=False)],
    file: Annotated[
        Path, typer.Option("--file", "-f", help="The Modelfile.", dir_okay=False)
    ] = Path("Modelfile"),
    host: HostOption = None,
) -> None:
    """Create NAME from a Modelfile; local FROM/ADAPTER files are uploaded first."""
    if not file.is_file():
        raise InvalidRequestError(f"no Modelfile at {file}: name one with -f")
    body, blobs = to_create_request(parse_file(file), name, base_dir=file.parent)
    progress = ProgressPrinter(sys.stderr)

    async def work(client: OllamaAPI) -> None:
        progress({"status": "gathering model components"})
        for digest, path in blobs.items():
            await client.push_blob(digest, path)
            progress({"status": f"copying file {digest} 100%"})
        async for item in client.create(body):
            progress(item)

    try:
        call(resolve_host(host), work)
    finally:
        progress.close()


def stop_command(model: Model, host: HostOption = None) -> None:
    """Unload MODEL now."""

    async def work(client: OllamaAPI) -> None:
        try:
            await client.load(model, keep_alive=0)
        except ModelNotFoundError:
            raise ModelNotFoundError(f'couldn\'t find model "{model}" to stop') from None

    call(resolve_host(host), work)
