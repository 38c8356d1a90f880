"""Root of the ``neurons`` CLI. Library errors become one-line messages with exit code 1."""

from __future__ import annotations

import logging
import sys

import typer
from pydantic import ValidationError

from neurons import __version__
from neurons.cli.hardware import hardware_app
from neurons.cli.modelfile import modelfile_app
from neurons.cli.models import models_app
from neurons.cli.serve_node import serve_node
from neurons.cli.up import up
from neurons.errors import NeuronsError

__all__ = ["app", "main"]

app = typer.Typer(
    help="neurons: run local LLMs across one or many machines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("up")(up)
app.command("serve-node")(serve_node)
app.add_typer(modelfile_app, name="modelfile")
app.add_typer(hardware_app, name="hardware")
app.add_typer(models_app, name="models")


@app.command("version")
def version() -> None:
    """Print the neurons version."""
    typer.echo(__version__)


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        app()
    except NeuronsError as exc:
        typer.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        typer.echo(f"Error: invalid settings: {problems}", err=True)
        sys.exit(2)
