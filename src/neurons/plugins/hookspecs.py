"""The hooks a ``neurons`` plugin may implement, and the markers to implement them with.

A plugin is any module or object registered under the entry-point group ``neurons`` (see
:mod:`neurons.plugins.loader`). It marks its functions with :data:`hookimpl`; pluggy matches
them by name against the specs below, so a plugin implements only the hooks it needs and may
accept fewer arguments than a spec offers. Specs live in one module so the contract a
third-party package codes against is written down once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import typer

    from neurons.network.routing import RoutingPolicy
    from neurons.plugins.models import OllamaModelPlugin

__all__ = [
    "PROJECT_NAME",
    "hookimpl",
    "hookspec",
    "neurons_cli_commands",
    "neurons_model_plugins",
    "neurons_routing_policies",
]

PROJECT_NAME = "neurons"
"""The pluggy project name and the entry-point group plugins are published under."""

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def neurons_model_plugins() -> list[type[OllamaModelPlugin]]:  # type: ignore[empty-body]
    """The :class:`~neurons.plugins.models.OllamaModelPlugin` subclasses this plugin contributes.

    Called once per process by :class:`~neurons.plugins.loader.PluginHost`; each class must be
    concrete and constructible without arguments.
    """


@hookspec
def neurons_routing_policies() -> list[type[RoutingPolicy]]:  # type: ignore[empty-body]
    """The :class:`~neurons.network.routing.RoutingPolicy` subclasses this plugin contributes.

    Each is registered under its ``name`` ClassVar, which must not clash with a built-in
    policy or another plugin's; the gateway instantiates the one ``Settings.routing_policy``
    names, with no arguments.
    """


@hookspec
def neurons_cli_commands(app: typer.Typer) -> None:
    """Add commands or sub-apps to the root ``neurons`` Typer app (``app.command(...)``,
    ``app.add_typer(...)``). Called once, while the CLI is being built."""
