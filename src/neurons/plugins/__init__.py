"""Plugins: third-party packages that add model plugins, routing policies and CLI commands.

A plugin package publishes an entry point in the ``neurons`` group and implements the hooks
of :mod:`neurons.plugins.hookspecs` with :data:`hookimpl`; :func:`default_host` loads every
installed one, reporting (never raising) the ones that fail.
"""

from __future__ import annotations

from neurons.plugins.hookspecs import PROJECT_NAME, hookimpl, hookspec
from neurons.plugins.loader import (
    BUILTIN_SOURCE,
    PluginFailure,
    PluginHost,
    PluginInfo,
    default_host,
)
from neurons.plugins.models import (
    AbstractAIModelPlugin,
    OllamaModelManager,
    OllamaModelPlugin,
    http_pull,
    pull_models_with_validation,
)

__all__ = [
    "BUILTIN_SOURCE",
    "PROJECT_NAME",
    "AbstractAIModelPlugin",
    "OllamaModelManager",
    "OllamaModelPlugin",
    "PluginFailure",
    "PluginHost",
    "PluginInfo",
    "default_host",
    "hookimpl",
    "hookspec",
    "http_pull",
    "pull_models_with_validation",
]
