"""``neurons memory``: language memory on a running control plane (the embedding model and
the LLMs live there). Each command is one call of ``/api/ai/memory``, reached as ``neurons
top`` reaches the plane (``--host``, ``NEURONS_HOST``, ``OLLAMA_HOST``, else the configured
plane; ``NEURONS_API_KEY`` as a Bearer key, whose name is then the namespace)."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from neurons.cli.common import JsonFlag, emit
from neurons.cli.ollama_client import OllamaAPI, call_with, resolve_host
from neurons.cli.ollama_style import HostOption
from neurons.errors import InvalidRequestError

__all__ = ["MemoryAPI", "memory_app"]

memory_app = typer.Typer(
    help="Language memory: remember texts, search them, summarise what is found.",
    no_args_is_help=True,
)
PATH = "/api/ai/memory"

NamespaceOption = Annotated[
    str | None,
    typer.Option(
        "--namespace",
        help="Namespace (default: the API key's own, or 'default'); another key's needs an "
        "admin key.",
        show_default=False,
    ),
]
KOption = Annotated[int, typer.Option("-k", "--k", min=1, max=100, help="How many hits.")]


class MemoryAPI(OllamaAPI):
    """The management API's memory routes, over the CLI's client for a server."""

    async def add(
        self, text: str, metadata: dict[str, Any], namespace: str | None
    ) -> dict[str, Any]:
        body = {"text": text, "metadata": metadata, "namespace": namespace}
        data: dict[str, Any] = await self._json("POST", PATH, json=body)
        return data

    async def search(self, query: str, k: int, namespace: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {"q": query, "k": k}
        if namespace is not None:
            params["namespace"] = namespace
        data: dict[str, Any] = await self._json("GET", PATH + "/search", params=params)
        return data

    async def remove(self, entry_id: int, namespace: str | None) -> dict[str, Any]:
        params = {} if namespace is None else {"namespace": namespace}
        data: dict[str, Any] = await self._json("DELETE", f"{PATH}/{entry_id}", params=params)
        return data

    async def synthesize(self, body: dict[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = await self._json("POST", PATH + "/synthesize", json=body)
        return data


def _call(host: str | None, work: Callable[[MemoryAPI], Awaitable[dict[str, Any]]]) -> Any:
    """:func:`neurons.cli.ollama_client.call_with` :class:`MemoryAPI` on the plane ``host``
    names (a refused connection names the server: exit 1)."""
    return call_with(MemoryAPI, resolve_host(host), work)


def parse_meta(pairs: list[str]) -> dict[str, Any]:
    """``k=v`` pairs as metadata; a value that reads as JSON (a number, true, null, a
    quoted string, a list) is kept as that, anything else as text.

    >>> parse_meta(["source=notes.txt", "page=3", "draft=true"])
    {'source': 'notes.txt', 'page': 3, 'draft': True}
    """
    metadata: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidRequestError(f"--meta takes key=value, not {pair!r}")
        try:
            metadata[key.strip()] = json.loads(value)
        except ValueError:
            metadata[key.strip()] = value
    return metadata


def _short(text: str, width: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


@memory_app.command("add")
def add(
    text: Annotated[str, typer.Argument(help="The text to remember ('-': read stdin).")],
    meta: Annotated[
        list[str] | None, typer.Option("--meta", help="Metadata key=value (repeatable).")
    ] = None,
    namespace: NamespaceOption = None,
    host: HostOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Remember a text (embedded by the control plane's model) with its metadata."""
    body = sys.stdin.read() if text == "-" else text
    metadata = parse_meta(meta or [])
    data = _call(host, lambda api: api.add(body, metadata, namespace))
    if json_output:
        emit({k: v for k, v in data.items() if k != "success"})
        return
    entry = data["entry"]
    note = " (only its first tokens were embedded)" if data.get("truncated") else ""
    typer.echo(f"remembered {entry['id']} in {entry['namespace']}{note}")


@memory_app.command("search")
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: KOption = 5,
    namespace: NamespaceOption = None,
    host: HostOption = None,
    json_output: JsonFlag = False,
) -> None:
    """The texts nearest the query (cosine similarity), best first."""
    data = _call(host, lambda api: api.search(query, k, namespace))
    if json_output:
        emit({k: v for k, v in data.items() if k != "success"})
        return
    hits = data["hits"]
    if not hits:
        typer.echo(f"nothing in {data['namespace']}")
        return
    table = Table(title=f"memory {data['namespace']}")
    for column in ("ID", "SCORE", "TEXT", "METADATA"):
        table.add_column(column, justify="right" if column in ("ID", "SCORE") else "left")
    for hit in hits:
        meta = json.dumps(hit["metadata"], ensure_ascii=False) if hit["metadata"] else ""
        table.add_row(str(hit["id"]), f"{hit['score']:.3f}", _short(hit["text"]), meta)
    Console().print(table)


@memory_app.command("rm")
def rm(
    entry_id: Annotated[int, typer.Argument(min=1, help="The entry's id.", show_default=False)],
    namespace: NamespaceOption = None,
    host: HostOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Forget an entry."""
    data = _call(host, lambda api: api.remove(entry_id, namespace))
    if json_output:
        emit({k: v for k, v in data.items() if k != "success"})
        return
    typer.echo(f"deleted {data['deleted']}")


@memory_app.command("synthesize")
def synthesize(
    query: Annotated[str, typer.Argument(help="What the summary should answer.")],
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="The LLM (default: the plane's default model)."),
    ] = None,
    k: KOption = 5,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", min=1, max=4096, help="Most tokens of summary.")
    ] = 256,
    namespace: NamespaceOption = None,
    host: HostOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Search, then have an LLM on the network summarise the hits, citing them by number."""
    body = {"query": query, "model": model, "k": k, "max_tokens": max_tokens,
            "namespace": namespace}  # fmt: skip
    data = _call(host, lambda api: api.synthesize(body))
    if json_output:
        emit({k: v for k, v in data.items() if k != "success"})
        return
    typer.echo(data["summary"])
    if data["hits"]:
        typer.echo(f"\n({data['model']} on {data['node']}; sources:)")
    for hit in data["hits"]:
        typer.echo(f"[{hit['citation']}] {_short(hit['text'], 100)}  (id {hit['id']}, "
                   f"{hit['score']:.3f})")  # fmt: skip
