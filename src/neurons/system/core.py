"""Seed 003's ``BackendIntegrationSystem``: the components of a neurons process, started in
dependency order and stopped in reverse.

A :class:`Component` is one thing the process runs (the store, the node clients, the health
monitor, a job supervisor, ...), adapted to four calls: ``start``, ``stop``, ``health`` and
``metrics``. The system owns the lifecycle; each component's state moves along one table::

    registered ──▶ starting ──▶ running ──▶ stopping ──▶ stopped
                      │                        │
                      └────────▶ failed ◀──────┘

``failed`` means its ``start`` raised (the components already running are then stopped, in
reverse), or its ``stop`` raised or overran its bound (the others still stop). Nothing leaves
``stopped`` or ``failed``: a system runs once.

The smallest component, which is also the contract in action:

>>> import asyncio
>>> calls = []
>>> class Recorder(Component):
...     def __init__(self, name: str, *depends_on: str) -> None:
...         self.name, self.depends_on = name, depends_on
...     async def start(self) -> None:
...         calls.append(f"start {self.name}")
...     async def stop(self) -> None:
...         calls.append(f"stop {self.name}")
>>> system = BackendIntegrationSystem()
>>> for component in (Recorder("gateway", "store"), Recorder("store"), Recorder("events")):
...     _ = system.register(component)
>>> [c.name for c in system.order()]  # dependencies first, then registration order
['store', 'gateway', 'events']
>>> asyncio.run(system.run(lambda: asyncio.sleep(0)))
>>> calls
['start store', 'start gateway', 'start events', 'stop events', 'stop gateway', 'stop store']
>>> [(c["name"], c["state"]) for c in system.components()][:1]
[('store', 'stopped')]
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from neurons.errors import ComponentError, ComponentNotFoundError, ConfigError, NeuronsError

__all__ = [
    "TRANSITIONS",
    "BackendIntegrationSystem",
    "Component",
    "ComponentState",
]

log = logging.getLogger(__name__)


class ComponentState(StrEnum):
    REGISTERED = "registered"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


_C = ComponentState
TRANSITIONS: frozenset[tuple[ComponentState, ComponentState]] = frozenset(
    {
        (_C.REGISTERED, _C.STARTING),
        (_C.STARTING, _C.RUNNING),
        (_C.STARTING, _C.FAILED),
        (_C.RUNNING, _C.STOPPING),
        (_C.STOPPING, _C.STOPPED),
        (_C.STOPPING, _C.FAILED),
    }
)


class Component(ABC):
    """One part of a running neurons process, as the system drives it.

    Contract:

    - ``name`` is unique in its system; ``depends_on`` names the components that must be
      running before :meth:`start` is called (and that are stopped only after :meth:`stop`).
    - :meth:`start` is called once, on the system's event loop. If it raises, it must leave
      nothing of its own running: the system stops only the components that did start.
    - :meth:`stop` is called once, only after a successful start, within a time bound (the
      system's, or ``stop_timeout_s`` when that is longer); it should hand over or
      checkpoint its work rather than drop it. If it raises or overruns, the error is
      recorded and the other components still stop.
    - :meth:`health` and :meth:`metrics` are called on the event loop, in any state, and
      must be cheap: no I/O, no waiting. They must not raise (a raise is shown as unhealthy).
    """

    name: str
    depends_on: tuple[str, ...] = ()
    stop_timeout_s: float | None = None  # a stop that knows it may need longer says so

    @abstractmethod
    async def start(self) -> None:
        """Bring the component up; return when it can serve."""

    @abstractmethod
    async def stop(self) -> None:
        """Bring it down, leaving its durable work resumable."""

    def health(self) -> dict[str, Any]:
        """``{"ok": bool, ...details}``, asked only while running; ``ok`` unless overridden."""
        return {"ok": True}

    def metrics(self) -> dict[str, Any]:
        """Counters and gauges worth showing (JSON values); none unless overridden."""
        return {}


@dataclass
class _Slot:
    """What the system knows of one component: its state and when it moved."""

    component: Component
    index: int  # registration order, the tie-break of the start order
    state: ComponentState = ComponentState.REGISTERED
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def move(self, new: ComponentState) -> None:
        if (self.state, new) not in TRANSITIONS:
            raise RuntimeError(
                f"component {self.component.name!r} cannot go from {self.state} to {new}"
            )
        self.state = new


class BackendIntegrationSystem:
    """The registered components of one process and their lifecycle.

    :meth:`initialize` starts them in dependency order (ties in registration order); if one
    fails to start, those already running are stopped in reverse and a
    :class:`~neurons.errors.ComponentError` naming it is raised. :meth:`shutdown` stops the
    running ones in reverse order, each within a bound. :meth:`run` is both around a
    ``serve`` coroutine. Call these from one task; a system is initialized at most once.
    ``mock`` marks a system whose neurons are simulated (shown by :meth:`describe`).
    """

    def __init__(self, *, mock: bool = False, stop_timeout_s: float = 30.0) -> None:
        if stop_timeout_s <= 0:
            raise ConfigError("stop_timeout_s must be positive")
        self.mock = mock
        self.stop_timeout_s = stop_timeout_s
        self.failure: ComponentError | None = None  # why initialize failed, if it did
        self._slots: dict[str, _Slot] = {}
        self._started: list[_Slot] = []  # in the order they reached running
        self._initialized = False

    def register(self, component: Component) -> Component:
        """Add ``component`` (before :meth:`initialize`); its name must be new."""
        name = getattr(component, "name", "")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{type(component).__name__} has no name")
        if name in self._slots:
            raise ConfigError(f"a component named {name!r} is already registered")
        if self._initialized:
            raise ConfigError(f"cannot register {name!r}: the system has already started")
        self._slots[name] = _Slot(component, len(self._slots))
        return component

    def get(self, name: str) -> Component:
        slot = self._slots.get(name)
        if slot is None:
            raise ComponentNotFoundError(f"no component named {name!r}")
        return slot.component

    def state(self, name: str) -> ComponentState:
        self.get(name)
        return self._slots[name].state

    def order(self) -> list[Component]:
        """The start order: each component after its dependencies, otherwise in
        registration order. Refuses unknown dependencies and cycles, naming them."""
        for slot in self._slots.values():
            for needed in slot.component.depends_on:
                if needed not in self._slots:
                    raise ConfigError(
                        f"component {slot.component.name!r} depends on {needed!r}, "
                        "which is not registered"
                    )
        placed: list[_Slot] = []
        done: set[str] = set()
        waiting = sorted(self._slots.values(), key=lambda s: s.index)
        while waiting:
            ready = next(
                (s for s in waiting if all(d in done for d in s.component.depends_on)), None
            )
            if ready is None:
                names = ", ".join(s.component.name for s in waiting)
                raise ConfigError(f"components depend on each other in a cycle: {names}")
            placed.append(ready)
            done.add(ready.component.name)
            waiting.remove(ready)
        return [s.component for s in placed]

    async def initialize(self) -> None:
        """Start every component in :meth:`order`; on a failure stop the started ones in
        reverse and raise :class:`~neurons.errors.ComponentError` (a cancel, or Ctrl-C,
        stops them too and is re-raised as it is)."""
        if self._initialized:
            raise ConfigError("the system has already been initialized")
        order = self.order()  # before anything starts: a bad graph starts nothing
        self._initialized = True
        for component in order:
            slot = self._slots[component.name]
            slot.move(ComponentState.STARTING)
            began = time.perf_counter()
            try:
                await component.start()
            except BaseException as exc:
                slot.move(ComponentState.FAILED)
                slot.error = _describe(exc)
                log.error("component %s failed to start: %s", component.name, slot.error)
                await self.shutdown()
                if not isinstance(exc, Exception):
                    raise
                self.failure = ComponentError(
                    component.name, f"component {component.name!r} failed to start: {slot.error}"
                )
                raise self.failure from exc
            slot.timings["start_s"] = round(time.perf_counter() - began, 3)
            slot.move(ComponentState.RUNNING)
            slot.started_at = datetime.now(UTC)
            self._started.append(slot)
            log.debug("component %s running (%.2fs)", component.name, slot.timings["start_s"])
        log.info("%d components running: %s", len(order), " → ".join(c.name for c in order))

    async def shutdown(self, deadline_s: float | None = None) -> None:
        """Stop the running components, last started first. Each stop may take at most
        ``deadline_s`` seconds (default ``stop_timeout_s``), or its component's own
        ``stop_timeout_s`` if longer; one that raises or overruns is logged and marked
        failed, and the others still stop. Calling it again does nothing more."""
        bound = self.stop_timeout_s if deadline_s is None else deadline_s
        for slot in reversed(self._started):
            if slot.state is ComponentState.RUNNING:
                await self._stop(slot, bound)

    async def _stop(self, slot: _Slot, bound: float) -> None:
        name = slot.component.name
        own = slot.component.stop_timeout_s
        bound = bound if own is None else max(own, bound)
        slot.move(ComponentState.STOPPING)
        began = time.perf_counter()
        try:
            await asyncio.wait_for(slot.component.stop(), bound)
        except TimeoutError:
            slot.move(ComponentState.FAILED)
            slot.error = f"did not stop within {bound:g}s"
            log.error("component %s %s; going on with the others", name, slot.error)
        except Exception as exc:
            slot.move(ComponentState.FAILED)
            slot.error = _describe(exc)
            log.exception("component %s failed to stop; going on with the others", name)
        else:
            slot.move(ComponentState.STOPPED)
            log.debug("component %s stopped", name)
        slot.timings["stop_s"] = round(time.perf_counter() - began, 3)
        slot.stopped_at = datetime.now(UTC)

    async def run(self, serve: Callable[[], Awaitable[object]]) -> None:
        """Seed 003's ``run``: initialize, await ``serve()``, and shut down however it ends
        (returns, raises or is cancelled). The control plane's web server does the same in
        its lifespan, with the drain of in-flight requests in front of the shutdown."""
        await self.initialize()
        try:
            await serve()
        finally:
            await self.shutdown()

    def components(self) -> list[dict[str, Any]]:
        """Each component in start order: state, health, metrics, times and error."""
        try:
            ordered = self.order()
        except ConfigError:  # shown as registered; initialize reports the problem
            ordered = [s.component for s in sorted(self._slots.values(), key=lambda s: s.index)]
        return [self._view(self._slots[c.name]) for c in ordered]

    def component(self, name: str) -> dict[str, Any]:
        """One component's view (as in :meth:`components`)."""
        self.get(name)
        return self._view(self._slots[name])

    def describe(self) -> dict[str, Any]:
        """The whole system: ``ok`` when every component runs and is healthy."""
        views = self.components()
        return {
            "ok": bool(views) and all(v["health"].get("ok") is True for v in views),
            "mock": self.mock,
            "components": views,
        }

    def _view(self, slot: _Slot) -> dict[str, Any]:
        component = slot.component
        if slot.state is ComponentState.RUNNING:
            health = _ask(component.health, component.name, "health")
            health["ok"] = health.get("ok") is True
        else:
            health = {"ok": False, "reason": f"not running ({slot.state})"}
        return {
            "name": component.name,
            "state": str(slot.state),
            "depends_on": list(component.depends_on),
            "started_at": _iso(slot.started_at),
            "stopped_at": _iso(slot.stopped_at),
            "error": slot.error,
            "health": health,
            "metrics": _ask(component.metrics, component.name, "metrics") | slot.timings,
        }


def _ask(call: Callable[[], dict[str, Any]], name: str, what: str) -> dict[str, Any]:
    """A component's health or metrics; a raise (a broken contract) is shown, not thrown."""
    try:
        return dict(call())
    except Exception as exc:
        log.exception("component %s: %s() raised", name, what)
        return {"ok": False, "error": f"{what}() raised {_describe(exc)}"}


def _describe(exc: BaseException) -> str:
    """Our own errors say what happened; anything else also needs its type to be read."""
    text = str(exc)
    if isinstance(exc, NeuronsError) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
