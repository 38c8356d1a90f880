"""``neurons plugins``: what the installed plugins contribute, and which ones failed.

A plugin that fails to load is only logged when the CLI starts, so this is where an operator
sees the error in full, next to the routing policies (built-in and contributed) that
``Settings.routing_policy`` may name.
"""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from neurons.cli.common import JsonFlag
from neurons.plugins.loader import PluginHost, default_host

__all__ = ["plugins_app"]

plugins_app = typer.Typer(help="Installed plugins (entry-point group 'neurons').")


@plugins_app.callback()
def _plugins() -> None:
    """Installed plugins (entry-point group 'neurons')."""


def _report(host: PluginHost) -> dict[str, Any]:
    # Call the hooks first so that a hook raising shows up as that plugin's error.
    sources = host.policy_sources()
    models = [f"{cls.__module__}.{cls.__qualname__}" for cls in host.model_plugins()]
    return {
        "plugins": [info.to_dict() for info in host.infos()],
        "routing_policies": [
            {"name": name, "source": source} for name, source in sorted(sources.items())
        ],
        "model_plugins": models,
    }


@plugins_app.command("ls")
def ls(as_json: JsonFlag = False) -> None:
    """List every plugin (loaded or failed) and the routing policies available."""
    report = _report(default_host())
    if as_json:
        typer.echo(json.dumps({"success": True, **report}, indent=2))
        return
    console = Console()
    table = Table(title="Plugins")
    for column in ("name", "distribution", "version", "hooks", "status", "error"):
        table.add_column(column, overflow="fold")
    for plugin in report["plugins"]:
        status = plugin["status"]
        table.add_row(
            escape(plugin["name"]),
            escape(plugin["distribution"] or "-"),
            escape(plugin["version"] or "-"),
            "\n".join(plugin["hooks"]) or "-",
            f"[green]{status}[/]" if status == "loaded" else f"[red]{status}[/]",
            escape(plugin["error"] or ""),
        )
    if not report["plugins"]:
        console.print("No plugins installed (entry-point group 'neurons').")
    else:
        console.print(table)
    policies = Table(title="Routing policies")
    policies.add_column("name")
    policies.add_column("source")
    for policy in report["routing_policies"]:
        policies.add_row(escape(policy["name"]), escape(policy["source"]))
    console.print(policies)
    if report["model_plugins"]:
        models = Table(title="Model plugins")
        models.add_column("class")
        for name in report["model_plugins"]:
            models.add_row(escape(name))
        console.print(models)
