"""Loading ``neurons`` entry-point plugins one at a time, so that one cannot break the rest.

pluggy's own ``load_setuptools_entrypoints`` stops at the first plugin that fails to import,
which would let any broken third-party package take the whole CLI and gateway down.
:class:`PluginHost` iterates the entry points itself: each one that fails to load or register
is recorded as a :class:`PluginFailure`, logged, and skipped. Hooks are called one
implementation at a time for the same reason: an implementation that raises or returns
nonsense is reported, and the built-ins and the other plugins keep working.

Every process shares one host through :func:`default_host`, which loads the entry points on
first use; tests and embedders build their own :class:`PluginHost`.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import pluggy
from typer.main import get_command_name
from typer.models import CommandInfo, TyperInfo

from neurons.network.routing import BUILTIN_POLICIES, RoutingPolicy
from neurons.plugins import hookspecs
from neurons.plugins.hookspecs import PROJECT_NAME
from neurons.plugins.models import OllamaModelPlugin

if TYPE_CHECKING:
    import typer

_Info = TypeVar("_Info", CommandInfo, TyperInfo)

__all__ = ["BUILTIN_SOURCE", "PluginFailure", "PluginHost", "PluginInfo", "default_host"]

log = logging.getLogger(__name__)

BUILTIN_SOURCE = "built-in"
"""The source :meth:`PluginHost.policy_sources` gives the policies neurons ships."""


def _describe(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


@dataclass(frozen=True)
class PluginFailure:
    """A plugin (or one of its hook implementations) that failed: ``name`` is the entry
    point's or plugin's name, ``value`` what it points at, ``error`` what went wrong."""

    name: str
    value: str
    error: str

    @classmethod
    def of(cls, name: str, value: str, error: BaseException | str) -> PluginFailure:
        return cls(name, value, _describe(error))


@dataclass
class PluginInfo:
    """What ``neurons plugins ls`` shows about one plugin. ``status`` says whether it loaded;
    ``error`` holds the load error, or the errors its hooks raised afterwards."""

    name: str
    value: str
    distribution: str | None
    version: str | None
    hooks: list[str] = field(default_factory=list)
    status: Literal["loaded", "failed"] = "loaded"
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def add_error(self, error: str) -> None:
        self.error = error if self.error is None else f"{self.error}; {error}"


class PluginHost:
    """A ``pluggy.PluginManager("neurons")`` that reports failures instead of raising them.

    Hook results are validated and cached: :meth:`model_plugins` and :meth:`routing_policies`
    call their hooks once (again after a new plugin registers).
    """

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.failures: list[PluginFailure] = []
        self._infos: dict[str, PluginInfo] = {}
        self._models: list[type[OllamaModelPlugin]] | None = None
        self._policies: dict[str, type[RoutingPolicy]] | None = None
        self._policy_sources: dict[str, str] = {}

    # -- loading -------------------------------------------------------------------------

    def load_entry_points(
        self, entry_points: Iterable[importlib.metadata.EntryPoint] | None = None
    ) -> list[PluginInfo]:
        """Load and register every entry point of the ``neurons`` group (or those given);
        returns their infos, failed ones included. Safe to call again: names already known
        are skipped."""
        if entry_points is None:
            entry_points = importlib.metadata.entry_points(group=PROJECT_NAME)
        loaded = []
        for ep in entry_points:
            if ep.name in self._infos:
                continue
            dist = ep.dist
            info = PluginInfo(
                name=ep.name,
                value=ep.value,
                distribution=dist.name if dist is not None else None,
                version=dist.version if dist is not None else None,
            )
            try:
                plugin = ep.load()
                self._register(plugin, info)
            except Exception as exc:
                info.status = "failed"
                info.add_error(_describe(exc))
                self._fail(PluginFailure.of(ep.name, ep.value, exc), "failed to load")
            self._infos[ep.name] = info
            loaded.append(info)
        return loaded

    def register(self, plugin: object, name: str, *, value: str | None = None) -> PluginInfo:
        """Register an in-process plugin (a module or object with ``@hookimpl`` functions).
        Unlike entry points, a failure here raises: the caller holds the plugin."""
        if name in self._infos:
            raise ValueError(f"a plugin named {name!r} is already known")
        if value is None:
            value = str(getattr(plugin, "__name__", type(plugin).__qualname__))
        info = PluginInfo(name, value, None, None)
        self._register(plugin, info)
        self._infos[name] = info
        return info

    def _register(self, plugin: object, info: PluginInfo) -> None:
        self.pm.register(plugin, name=info.name)
        callers = self.pm.get_hookcallers(plugin) or []
        unknown = sorted(c.name for c in callers if not c.has_spec())
        if unknown:
            self.pm.unregister(plugin)
            raise pluggy.PluginValidationError(
                plugin, f"implements hooks neurons does not define: {', '.join(unknown)}"
            )
        info.hooks = sorted(c.name for c in callers)
        self._models = self._policies = None

    def _fail(self, failure: PluginFailure, what: str) -> None:
        if failure in self.failures:
            return
        self.failures.append(failure)
        log.warning("plugin %s (%s) %s: %s", failure.name, failure.value, what, failure.error)

    # -- calling hooks -------------------------------------------------------------------

    def _call_each(self, hook: str, **kwargs: Any) -> list[tuple[str, object]]:
        """Each implementation's result, in pluggy's call order; one that raises is
        reported and left out."""
        results = []
        for impl in reversed(getattr(self.pm.hook, hook).get_hookimpls()):
            try:
                result = impl.function(*(kwargs[arg] for arg in impl.argnames))
            except Exception as exc:
                self._hook_failed(impl.plugin_name, hook, _describe(exc))
                continue
            results.append((impl.plugin_name, result))
        return results

    def _hook_failed(self, plugin_name: str, hook: str, error: str) -> None:
        info = self._infos.get(plugin_name)
        failure = PluginFailure(
            plugin_name, info.value if info else plugin_name, f"{hook}: {error}"
        )
        if failure not in self.failures and info is not None:
            info.add_error(failure.error)
        self._fail(failure, "hook failed")

    def _classes(self, hook: str, base: type[Any]) -> list[tuple[str, type[Any]]]:
        classes = []
        for plugin_name, result in self._call_each(hook):
            if result is None:
                continue
            if not isinstance(result, list | tuple):
                self._hook_failed(plugin_name, hook, f"returned {result!r}, expected a list")
                continue
            for item in result:
                if (
                    isinstance(item, type)
                    and issubclass(item, base)
                    and not inspect.isabstract(item)
                ):
                    classes.append((plugin_name, item))
                else:
                    expected = f"a concrete {base.__name__} subclass"
                    self._hook_failed(plugin_name, hook, f"{item!r} is not {expected}")
        return classes

    def model_plugins(self) -> list[type[OllamaModelPlugin]]:
        """The model plugin classes the plugins contribute (``neurons_model_plugins``)."""
        if self._models is None:
            found = self._classes("neurons_model_plugins", OllamaModelPlugin)
            self._models = list(dict.fromkeys(cls for _, cls in found))
        return list(self._models)

    def routing_policies(self) -> dict[str, type[RoutingPolicy]]:
        """Every routing policy by name: the built-ins, then the plugins' (a plugin policy
        whose name is taken is reported and ignored; the built-ins always remain)."""
        if self._policies is None:
            policies = dict(BUILTIN_POLICIES)
            sources = dict.fromkeys(policies, BUILTIN_SOURCE)
            for plugin_name, cls in self._classes("neurons_routing_policies", RoutingPolicy):
                name = getattr(cls, "name", None)
                hook = "neurons_routing_policies"
                if not isinstance(name, str) or not name:
                    self._hook_failed(plugin_name, hook, f"{cls.__qualname__} has no name")
                elif name in policies and policies[name] is not cls:
                    taken = f"policy {name!r} is already provided by {sources[name]}"
                    self._hook_failed(plugin_name, hook, taken)
                else:
                    policies[name] = cls
                    sources[name] = plugin_name
            self._policies, self._policy_sources = policies, sources
        return dict(self._policies)

    def policy_sources(self) -> dict[str, str]:
        """Who provides each routing policy: :data:`BUILTIN_SOURCE` or a plugin's name."""
        self.routing_policies()
        return dict(self._policy_sources)

    def add_cli_commands(self, app: typer.Typer) -> None:
        """Let each plugin add its commands to ``app``. One that raises is reported and what
        it had added is taken back; a command whose name is taken (a built-in's or an earlier
        plugin's) is reported and dropped, so a plugin cannot shadow ``neurons up``."""
        hook = "neurons_cli_commands"
        for impl in reversed(self.pm.hook.neurons_cli_commands.get_hookimpls()):
            commands, groups = list(app.registered_commands), list(app.registered_groups)
            taken = {*map(_cli_name, commands), *map(_cli_name, groups)}
            try:
                impl.function(*(app for _ in impl.argnames))
            except Exception as exc:
                app.registered_commands[:], app.registered_groups[:] = commands, groups
                self._hook_failed(impl.plugin_name, hook, _describe(exc))
                continue
            dropped = [
                *_drop_added(app.registered_commands, len(commands), taken),
                *_drop_added(app.registered_groups, len(groups), taken),
            ]
            for name in dropped:
                self._hook_failed(impl.plugin_name, hook, f"command {name!r} is already taken")

    def infos(self) -> list[PluginInfo]:
        """Every plugin known, loaded or failed, in load order."""
        return list(self._infos.values())


def _cli_name(info: CommandInfo | TyperInfo) -> str | None:
    """The name a registered command or sub-app gets on the command line (None: unknown)."""
    if isinstance(info.name, str):
        return info.name
    if isinstance(info, CommandInfo):
        return get_command_name(info.callback.__name__) if info.callback else None
    instance = info.typer_instance
    name = getattr(getattr(instance, "info", None), "name", None)
    return name if isinstance(name, str) else None


def _drop_added(registered: list[_Info], before: int, taken: set[str | None]) -> list[str]:
    """Remove the entries added after ``before`` whose name is in ``taken``; their names."""
    clashes = [info for info in registered[before:] if _cli_name(info) in taken - {None}]
    for info in clashes:
        registered.remove(info)
    return [str(_cli_name(info)) for info in clashes]


_default: PluginHost | None = None
_default_lock = threading.RLock()  # reentrant: a plugin may ask for the host on import


def default_host() -> PluginHost:
    """The process's plugin host, with the installed entry points loaded (once)."""
    global _default
    with _default_lock:
        if _default is None:
            host = PluginHost()
            host.load_entry_points()
            _default = host
        return _default
