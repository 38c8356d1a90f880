"""Root of the ``neurons`` CLI. Library errors become one-line messages with exit code 1."""

from __future__ import annotations

import logging
import sys

import typer
from pydantic import ValidationError

from neurons import __version__
from neurons.cli.finetune import finetune_app
from neurons.cli.hardware import hardware_app
from neurons.cli.keys import audit_command, keys_app
from neurons.cli.learn import learn_app
from neurons.cli.memory import memory_app
from neurons.cli.modelfile import modelfile_app
from neurons.cli.models import models_app
from neurons.cli.network import network_app, node_app
from neurons.cli.ollama_style import (
    cp_command,
    create_command,
    list_command,
    ps_command,
    pull_command,
    rm_command,
    run_command,
    show_command,
    stop_command,
)
from neurons.cli.optimize import optimize_app
from neurons.cli.plugins import plugins_app
from neurons.cli.serve_node import serve_node
from neurons.cli.state import state_app
from neurons.cli.top import top
from neurons.cli.up import serve, up
from neurons.errors import NeuronsError
from neurons.plugins.loader import default_host

__all__ = ["app", "main"]

app = typer.Typer(
    help="neurons: run local LLMs across one or many machines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("up")(up)
app.command("serve")(serve)
app.command("serve-node")(serve_node)
app.add_typer(modelfile_app, name="modelfile")
app.add_typer(hardware_app, name="hardware")
app.add_typer(models_app, name="models")
app.add_typer(node_app, name="node")
app.add_typer(network_app, name="network")
app.add_typer(plugins_app, name="plugins")
app.add_typer(optimize_app, name="optimize")
app.add_typer(finetune_app, name="finetune")
app.add_typer(learn_app, name="learn")
app.add_typer(keys_app, name="keys")
app.command("audit")(audit_command)
app.add_typer(state_app, name="state")
app.add_typer(memory_app, name="memory")
app.command("top")(top)
# ollama's own commands, speaking the Ollama API to the control plane or any node
_OLLAMA = "Ollama-style (talk to a server: --host, NEURONS_HOST, OLLAMA_HOST)"
app.command("run", rich_help_panel=_OLLAMA)(run_command)
app.command("list", rich_help_panel=_OLLAMA)(list_command)
app.command("ls", hidden=True)(list_command)
app.command("ps", rich_help_panel=_OLLAMA)(ps_command)
app.command("pull", rich_help_panel=_OLLAMA)(pull_command)
app.command("show", rich_help_panel=_OLLAMA)(show_command)
app.command("rm", rich_help_panel=_OLLAMA)(rm_command)
app.command("cp", rich_help_panel=_OLLAMA)(cp_command)
app.command("create", rich_help_panel=_OLLAMA)(create_command)
app.command("stop", rich_help_panel=_OLLAMA)(stop_command)


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
        # Plugins may add commands; one that fails is reported and the CLI keeps working.
        default_host().add_cli_commands(app)
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
