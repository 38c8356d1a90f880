"""``neurons keys`` and ``neurons audit``: API keys and the audit trail, in-process against
the state directory's store (a running control plane sees a new or revoked key within
a tenth of a second). Each command calls one AuthService method and prints."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from neurons.cli.common import JsonFlag, emit
from neurons.config import Settings

if TYPE_CHECKING:
    from neurons.auth.service import AuthService

__all__ = ["audit_command", "keys_app"]

keys_app = typer.Typer(help="API keys: create (the secret is shown once), list, revoke, rotate.")
T = TypeVar("T")
_CLI_ACTOR = "cli"


@contextmanager
def _service() -> Iterator[AuthService]:
    from neurons.auth.service import AuthService
    from neurons.store import open_store

    store = open_store(Settings().resolved_database_url)
    try:
        yield AuthService(store)
    finally:
        store.close()


def _audited(action: str, target: str, call: Callable[[AuthService], T]) -> T:
    """Run ``call`` and record it in the audit trail as the local CLI's doing."""
    from neurons.auth.service import REFRESH_S
    from neurons.errors import NeuronsError

    with _service() as service:
        try:
            result = call(service)
        except NeuronsError as exc:
            service.record_audit(_CLI_ACTOR, action, target, exc.http_status, {"error": str(exc)})
            raise
        service.record_audit(_CLI_ACTOR, action, target, 200, {})
    # A running control plane reloads its keys every REFRESH_S; returning only after two of
    # its passes means a key revoked here fails on the very next request anyone sends.
    time.sleep(2 * REFRESH_S)
    return result


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", help="A name to tell the key by.")],
    scope: Annotated[
        str, typer.Option(help="read, inference, manage or admin (each includes the ones before).")
    ] = "inference",
    models: Annotated[
        str | None, typer.Option(help="Models the key may use, comma-separated (default: all).")
    ] = None,
    rpm: Annotated[int | None, typer.Option(help="Requests per minute.", min=1)] = None,
    tpm: Annotated[int | None, typer.Option(help="Tokens per minute.", min=1)] = None,
    max_parallel: Annotated[
        int | None, typer.Option(help="Requests in flight at once.", min=1)
    ] = None,
    expires: Annotated[
        str | None, typer.Option(help="Lifetime: 30d, 12h, 90m, 2w (default: never).")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Create a key and print its secret, this once: only a hash of it is kept."""
    from neurons.auth.keys import KeySpec, parse_expiry
    from neurons.auth.scopes import Scope

    now = datetime.now(UTC)
    spec = KeySpec(
        name=name,
        scope=Scope.parse(scope),
        models=tuple(m for m in (models or "").split(",") if m.strip()),
        rpm=rpm,
        tpm=tpm,
        max_parallel=max_parallel,
        expires_at=None if expires is None else now + parse_expiry(expires),
    )
    key, secret = _audited("keys create", name, lambda s: s.create_key(spec))
    if json_output:
        emit({"key": key.to_dict(now), "secret": secret})
        return
    typer.echo(secret)
    typer.echo(
        f"created key {key.name!r} ({key.prefix}…, scope {key.spec.scope}); "
        "store the secret now: it is not shown again",
        err=True,
    )


@keys_app.command("ls")
def list_keys(json_output: JsonFlag = False) -> None:
    """Every key: scope, models, limits, state and usage (requests, tokens, last used)."""
    with _service() as service:
        keys = service.list_keys()
    now = datetime.now(UTC)
    rows = [k.to_dict(now) for k in keys]
    if json_output:
        emit({"keys": rows})
        return
    table = Table(title="API keys")
    for column in ("name", "prefix", "scope", "models", "limits", "state", "requests", "tokens"):
        table.add_column(column)
    table.add_column("last used")
    for row in rows:
        table.add_row(
            row["name"],
            row["prefix"] + "…",
            row["scope"],
            ", ".join(row["models"]) or "all",
            _limits(row),
            row["state"],
            str(row["requests"]),
            str(row["tokens"]),
            row["last_used_at"] or "-",
        )
    Console().print(table)


def _limits(row: dict[str, Any]) -> str:
    parts = [
        f"{label} {row[field]}"
        for field, label in (("rpm", "rpm"), ("tpm", "tpm"), ("max_parallel", "parallel"))
        if row[field] is not None
    ]
    if row["expires_at"]:
        parts.append(f"until {row['expires_at'][:19]}")
    return ", ".join(parts) or "-"


@keys_app.command("revoke")
def revoke(
    key: Annotated[str, typer.Argument(help="The key's name, id or display prefix.")],
    json_output: JsonFlag = False,
) -> None:
    """Revoke a key: its next request is refused."""
    record = _audited("keys revoke", key, lambda s: s.revoke_key(key))
    if json_output:
        emit({"key": record.to_dict(datetime.now(UTC))})
    else:
        typer.echo(f"revoked key {record.name!r} ({record.prefix}…)")


@keys_app.command("rotate")
def rotate(
    key: Annotated[str, typer.Argument(help="The key's name, id or display prefix.")],
    json_output: JsonFlag = False,
) -> None:
    """Give a key a new secret (printed once); the old secret stops working."""
    record, secret = _audited("keys rotate", key, lambda s: s.rotate_key(key))
    if json_output:
        emit({"key": record.to_dict(datetime.now(UTC)), "secret": secret})
        return
    typer.echo(secret)
    typer.echo(f"rotated key {record.name!r}; the old secret no longer works", err=True)


def audit_command(
    since: Annotated[
        str | None, typer.Option(help="An ISO time or a span back from now: 1h, 7d.")
    ] = None,
    limit: Annotated[int, typer.Option(help="Most events to show (the newest).", min=1)] = 100,
    actor: Annotated[str | None, typer.Option(help="Only this key's calls.")] = None,
    json_output: JsonFlag = False,
) -> None:
    """The audit trail: every mutating call, who made it (a key's name), on what, and how it
    ended."""
    from neurons.auth.keys import parse_since

    with _service() as service:
        events = service.audit_events(
            since=parse_since(since, datetime.now(UTC)), limit=limit, actor=actor
        )
    if json_output:
        emit({"events": [e.to_dict() for e in events]})
        return
    table = Table(title="audit trail")
    for column in ("when", "who", "what", "target", "result"):
        table.add_column(column)
    for event in events:
        table.add_row(
            event.at.isoformat(timespec="seconds"),
            event.actor,
            event.action,
            event.target,
            str(event.status),
        )
    Console().print(table)
