"""What several command groups share: the ``--json`` flag and its answer, the exit status of
an interrupted command, and running a service in-process against the state directory."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Protocol, TypeVar

import typer

from neurons.config import Settings

if TYPE_CHECKING:
    from neurons.network.manager import NetworkManager
    from neurons.store import Store

__all__ = ["INTERRUPTED", "JsonFlag", "emit", "run_with_network", "run_with_store"]

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON.")]
INTERRUPTED = 130  # the shell's exit status for a process stopped by SIGINT


class _Closable(Protocol):
    async def aclose(self) -> None: ...


S = TypeVar("S", bound=_Closable)
T = TypeVar("T")


def emit(data: Mapping[str, Any], success: bool = True) -> None:
    """Print ``data`` as the management API answers it: ``{"success": ..., ...}``."""
    typer.echo(json.dumps({"success": success, **data}, indent=2, default=str))


def run_with_store(
    build: Callable[[Store, Settings], S],
    call: Callable[[S], Awaitable[T]],
    settings: Settings | None = None,
) -> T:
    """Open the store, build the service on it, await ``call(service)``, close both
    (``settings`` default: read from the environment)."""
    from neurons.store import open_store

    settings = settings if settings is not None else Settings()
    store = open_store(settings.resolved_database_url)

    async def main() -> T:
        service = build(store, settings)
        try:
            return await call(service)
        finally:
            await service.aclose()

    try:
        return asyncio.run(main())
    finally:
        store.close()


def run_with_network(
    build: Callable[[Store, Settings, NetworkManager], S], call: Callable[[S], Awaitable[T]]
) -> T:
    """Open the store, build the service over a network manager, await ``call(service)``,
    and close all three whatever happens."""
    from neurons.network.manager import NetworkManager
    from neurons.store import open_store

    settings = Settings()
    store = open_store(settings.resolved_database_url)

    async def main() -> T:
        manager = NetworkManager(store, settings)
        service = build(store, settings, manager)
        try:
            return await call(service)
        finally:
            await service.aclose()
            await manager.aclose()

    try:
        return asyncio.run(main())
    finally:
        store.close()
