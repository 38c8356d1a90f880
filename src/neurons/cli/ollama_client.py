"""The Ollama-style commands' side of the wire: which server to talk to, and
:class:`~neurons.client.NodeClient` with the two streaming calls a terminal needs.

A control plane with keys on wants one: ``NEURONS_API_KEY`` is sent as a Bearer key.

The server is ``--host``, else ``NEURONS_HOST``, else ``OLLAMA_HOST``, else the control plane
in :class:`~neurons.config.Settings`. A bare host in ``--host`` or ``NEURONS_HOST`` gets the
control plane's port, because ``NEURONS_HOST`` is also the address ``neurons up`` binds
(``Settings.host``), so ``NEURONS_HOST=0.0.0.0 neurons up`` and ``neurons list`` agree; a
bare host in ``OLLAMA_HOST`` gets Ollama's 11434, as ``ollama`` itself reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any, Self, TypeVar

import httpx
import typer

from neurons.cli.common import INTERRUPTED
from neurons.cli.ollama_text import OLLAMA_PORT, parse_host
from neurons.client import NodeClient
from neurons.config import Settings
from neurons.errors import ModelNotFoundError, NodeUnreachableError

__all__ = ["OllamaAPI", "call", "call_with", "reaching", "resolve_host"]

T = TypeVar("T")


def resolve_host(option: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The base URL of the server to talk to (see the module docstring for the order)."""
    env = os.environ if environ is None else environ
    if option:
        return parse_host(option, Settings().port)
    if env.get("NEURONS_HOST"):
        return parse_host(env["NEURONS_HOST"], Settings().port)
    if env.get("OLLAMA_HOST"):
        return parse_host(env["OLLAMA_HOST"], OLLAMA_PORT)
    settings = Settings()
    return parse_host(settings.host, settings.port)


class OllamaAPI(NodeClient):
    """A :class:`NodeClient` for one server, plus streamed ``/api/generate`` and
    ``/api/chat`` (the node client only asks for whole answers) and Ollama's blank-request
    load and unload."""

    @classmethod
    def connect(cls, url: str, environ: Mapping[str, str] | None = None) -> Self:
        """A client for ``url`` that sends ``NEURONS_API_KEY`` (when set) as a Bearer key,
        as the ollama and OpenAI clients send theirs."""
        key = (os.environ if environ is None else environ).get("NEURONS_API_KEY", "").strip()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=None), headers=headers)
        api = cls(url, client=http)
        api._own = True  # the client made here is closed with it
        return api

    def stream_generate(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        return self._stream("/api/generate", {**body, "stream": True})

    def stream_chat(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        return self._stream("/api/chat", {**body, "stream": True})

    async def load(self, model: str, keep_alive: str | int | None = None) -> None:
        """Load ``model`` (``keep_alive`` 0: unload it) with a generate request that has no
        prompt, which is how Ollama's own CLI does both."""
        body: dict[str, Any] = {"model": model, "stream": False}
        if keep_alive is not None:
            body["keep_alive"] = keep_alive
        await self._json("POST", "/api/generate", json=body)

    async def show_or_pull(
        self, model: str, on_pull: Callable[[dict[str, Any]], None]
    ) -> dict[str, Any]:
        """``/api/show`` for ``model``, pulling it first if the server lacks it (``ollama
        run`` does the same); ``on_pull`` sees each progress line."""
        try:
            return await self.show(model)
        except ModelNotFoundError:
            async for item in self.pull(model):
                on_pull(item)
            return await self.show(model)


@contextlib.contextmanager
def reaching(url: str) -> Iterator[None]:
    """Say which server could not be reached, and what to check, when a connection fails;
    a connection lost mid-answer keeps the node client's own message."""
    try:
        yield
    except NodeUnreachableError as exc:
        if not isinstance(exc.__cause__, httpx.ConnectError | httpx.ConnectTimeout):
            raise
        raise NodeUnreachableError(
            f"could not connect to a neurons server at {url} ({exc.__cause__ or 'refused'}); "
            "start one with `neurons up`, or point --host, NEURONS_HOST or OLLAMA_HOST at one"
        ) from exc


A = TypeVar("A", bound=OllamaAPI)


def call(url: str, work: Callable[[OllamaAPI], Awaitable[T]]) -> T:
    """Open a client on ``url``, await ``work(client)``, close it (:func:`call_with`)."""
    return call_with(OllamaAPI, url, work)


def call_with(api: type[A], url: str, work: Callable[[A], Awaitable[T]]) -> T:
    """Open an ``api`` client on ``url``, await ``work(client)``, close it. A refused
    connection names the server; Ctrl-C ends the command with the shell's interrupted status
    instead of click's ``Aborted!``."""

    async def main() -> T:
        client = api.connect(url)
        try:
            return await work(client)
        finally:
            await client.aclose()

    try:
        with reaching(url):
            return asyncio.run(main())
    except KeyboardInterrupt:
        typer.echo("", err=True)
        raise typer.Exit(INTERRUPTED) from None
