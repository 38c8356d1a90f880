"""Model plugins (seed 004): per-model knowledge that packages can add without touching neurons.

A model plugin describes one Ollama model (:meth:`OllamaModelPlugin.get_ollama_model_details`)
and decides which configurations are valid for it
(:meth:`OllamaModelPlugin.validate_ollama_configuration`). :class:`OllamaModelManager` gathers
them from two places: installed plugins' ``neurons_model_plugins`` hook, and, optionally, a
package whose modules define plugin classes (the seed's ``plugin_package``). Discovery never
raises: a module that does not import, or a plugin that cannot describe itself, is recorded in
``failures`` and logged, so one bad plugin cannot take model management down.

:func:`pull_models_with_validation` is the seed's ``EnhancedOllamaSetup`` step as a function:
pull through the control plane (which fans the pull out to its nodes), then let the model's
plugin vouch for the default configuration.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import TYPE_CHECKING, Any

import httpx

from neurons.errors import PluginError
from neurons.ollama.names import canonical_name

if TYPE_CHECKING:
    from neurons.plugins.loader import PluginFailure, PluginHost

__all__ = [
    "AbstractAIModelPlugin",
    "OllamaModelManager",
    "OllamaModelPlugin",
    "http_pull",
    "pull_models_with_validation",
]

log = logging.getLogger(__name__)

PullFn = Callable[[str], bool]


class AbstractAIModelPlugin(ABC):
    """Root of every model plugin, whatever serves the model.

    Contract: plugins are constructed with no arguments, cheaply and without I/O (the manager
    builds one to read its details and a fresh one per :meth:`OllamaModelManager.load_model`).
    """

    @property
    def plugin_name(self) -> str:
        """How logs and errors name this plugin: its module-qualified class name."""
        return f"{type(self).__module__}.{type(self).__qualname__}"

    @abstractmethod
    def get_model_details(self) -> dict[str, Any]:
        """The model's specification, with at least ``name``."""

    @abstractmethod
    def validate_configuration(self, config: dict[str, Any]) -> bool:
        """Whether ``config`` is valid for the model (``{}``: the defaults)."""


class OllamaModelPlugin(AbstractAIModelPlugin):
    """A plugin for one model served through the Ollama API: implement the two
    ``*_ollama_*`` methods; the generic ones delegate to them."""

    def get_model_details(self) -> dict[str, Any]:
        return self.get_ollama_model_details()

    def validate_configuration(self, config: dict[str, Any]) -> bool:
        return self.validate_ollama_configuration(config)

    @abstractmethod
    def get_ollama_model_details(self) -> dict[str, Any]:
        """The model's specification: at least ``name`` (an Ollama model name such as
        ``smollm2:135m``), plus anything useful (size, capabilities, ...). Must not mutate
        shared state; called at discovery and on every load."""

    @abstractmethod
    def validate_ollama_configuration(self, config: dict[str, Any]) -> bool:
        """Whether ``config`` (Ollama options such as ``temperature``) is valid for this
        model. ``{}`` means "the defaults" and should normally be valid. Must not mutate
        ``config``."""


def _details_name(plugin: OllamaModelPlugin) -> str:
    details = plugin.get_ollama_model_details()
    name = details.get("name") if isinstance(details, dict) else None
    if not isinstance(name, str) or not name:
        raise PluginError(f"{plugin.plugin_name}: model details have no 'name'")
    return name


class OllamaModelManager:
    """The model plugins this process knows, by canonical model name.

    ``discovered_plugins`` holds every plugin class found (hook results first, then the
    classes of ``plugin_package``), ``available_models`` maps each model's canonical name to
    the plugin class that serves it (the first one wins when two claim the same model), and
    ``failures`` lists what could not be imported or described.
    """

    def __init__(
        self, plugin_package: str | None = None, plugin_manager: PluginHost | None = None
    ) -> None:
        if plugin_manager is None:
            from neurons.plugins.loader import default_host

            plugin_manager = default_host()
        self.failures: list[PluginFailure] = []
        self.available_models: dict[str, type[OllamaModelPlugin]] = {}
        self.discovered_plugins: list[type[OllamaModelPlugin]] = _unique(
            [
                *plugin_manager.model_plugins(),
                *(self._discover_package(plugin_package) if plugin_package else []),
            ]
        )
        for plugin_cls in self.discovered_plugins:
            self._index(plugin_cls)

    def _fail(self, name: str, value: str, error: BaseException | str) -> None:
        from neurons.plugins.loader import PluginFailure

        failure = PluginFailure.of(name, value, error)
        log.warning("model plugin %s (%s) failed: %s", name, value, failure.error)
        self.failures.append(failure)

    def _discover_package(self, package_name: str) -> list[type[OllamaModelPlugin]]:
        """Concrete OllamaModelPlugin subclasses *defined* in the package or its submodules
        (a class only imported there is left to the module that defines it)."""
        try:
            package = importlib.import_module(package_name)
        except Exception as exc:
            self._fail(package_name, package_name, exc)
            return []
        modules: list[ModuleType] = [package]
        path: Iterable[str] | None = getattr(package, "__path__", None)
        if path is not None:
            # walk_packages imports each subpackage again to recurse into it; one that failed
            # above lands in onerror too, and is reported once.
            failed: set[str] = set()
            found = pkgutil.walk_packages(path, prefix=f"{package_name}.", onerror=failed.add)
            for info in found:
                try:
                    modules.append(importlib.import_module(info.name))
                except Exception as exc:
                    self._fail(info.name, info.name, exc)
            reported = {failure.name for failure in self.failures}
            for name in sorted(failed - reported):
                self._fail(name, name, "could not import the subpackage")
        return [
            cls
            for module in modules
            for _, cls in inspect.getmembers(module, inspect.isclass)
            if issubclass(cls, OllamaModelPlugin)
            and not inspect.isabstract(cls)
            and cls.__module__ == module.__name__
        ]

    def _index(self, plugin_cls: type[OllamaModelPlugin]) -> None:
        value = f"{plugin_cls.__module__}.{plugin_cls.__qualname__}"
        try:
            name = canonical_name(_details_name(plugin_cls()))
        except Exception as exc:
            self._fail(plugin_cls.__qualname__, value, exc)
            return
        holder = self.available_models.setdefault(name, plugin_cls)
        if holder is not plugin_cls:
            log.warning(
                "model %s: plugin %s is ignored, %s already serves it",
                name,
                value,
                f"{holder.__module__}.{holder.__qualname__}",
            )

    def plugin_for(self, model_name: str) -> OllamaModelPlugin:
        """A fresh instance of the plugin serving ``model_name`` (``llama3`` matches
        ``llama3:latest``); :class:`PluginError` when no plugin does."""
        plugin_cls = self.available_models.get(canonical_name(model_name))
        if plugin_cls is None:
            known = ", ".join(sorted(self.available_models)) or "none"
            raise PluginError(f"no model plugin for {model_name} (plugins serve: {known})")
        return plugin_cls()

    async def load_model(
        self, model_name: str, config: dict[str, Any] | None = None
    ) -> OllamaModelPlugin:
        """The plugin for ``model_name`` once it accepts ``config`` (``None`` validates
        ``{}``: the defaults). Raises :class:`PluginError` when no plugin serves the model,
        the plugin refuses the configuration, or the plugin itself fails."""
        plugin = self.plugin_for(model_name)
        try:
            valid = plugin.validate_ollama_configuration(dict(config or {}))
        except Exception as exc:
            raise PluginError(
                f"model plugin {plugin.plugin_name} failed validating the configuration "
                f"of {model_name}: {type(exc).__name__}: {exc}"
            ) from exc
        if not valid:
            raise PluginError(
                f"invalid configuration for model {model_name}: {config or {}!r} "
                f"(refused by {plugin.plugin_name})"
            )
        return plugin


def _unique(classes: list[type[OllamaModelPlugin]]) -> list[type[OllamaModelPlugin]]:
    return list(dict.fromkeys(classes))


def http_pull(base_url: str | None = None, *, timeout: float = 10.0) -> PullFn:
    """A ``pull`` for :func:`pull_models_with_validation`: ``POST {base_url}/api/pull`` with
    ``stream: false``; true on HTTP 200 without an ``error``. ``base_url`` defaults to the
    control plane of ``Settings()``, whose gateway pulls onto its nodes. ``timeout`` bounds
    connecting and writing; reading is unbounded, as a non-streamed pull answers only once
    the download is done."""
    if base_url is None:
        from neurons.config import Settings

        settings = Settings()
        base_url = f"http://{settings.host}:{settings.port}"
    url = base_url.rstrip("/") + "/api/pull"

    def pull(model: str) -> bool:
        response = httpx.post(
            url,
            json={"model": model, "stream": False},
            timeout=httpx.Timeout(timeout, read=None),
        )
        try:
            body = response.json()
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        if response.status_code != httpx.codes.OK or error:
            log.warning("pulling %s failed: HTTP %s %s", model, response.status_code, error)
            return False
        return True

    return pull


def pull_models_with_validation(
    models: list[str] | None = None,
    model_manager: OllamaModelManager | None = None,
    *,
    pull: PullFn | None = None,
) -> dict[str, bool]:
    """Pull each model (default: the offline default models) and validate it.

    A model's status is true when its pull succeeded and, with a ``model_manager``, its plugin
    accepts the default configuration ``{}``. A missing plugin, a refusing or failing plugin,
    and a pull that raises all count as false and are logged; nothing is raised.
    """
    if models is None:
        from neurons.neuron.defaults import DEFAULT_MODELS  # imports gguf: only when needed

        models = [default.name for default in DEFAULT_MODELS]
    if pull is None:
        pull = http_pull()
    status: dict[str, bool] = {}
    for model in models:
        try:
            pulled = pull(model)
        except Exception as exc:
            log.warning("error pulling model %s: %s: %s", model, type(exc).__name__, exc)
            status[model] = False
            continue
        status[model] = pulled and (model_manager is None or _validates(model_manager, model))
    return status


def _validates(manager: OllamaModelManager, model: str) -> bool:
    try:
        plugin = manager.plugin_for(model)
        if plugin.validate_ollama_configuration({}):
            return True
        log.warning("plugin validation failed for %s: the default configuration is refused", model)
    except Exception as exc:
        log.warning("plugin validation failed for %s: %s", model, exc)
    return False
