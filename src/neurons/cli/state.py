"""``neurons state``: versioned snapshots of the durable state (seed 003's persistence
system), in-process against the state directory. Each command calls one
:class:`~neurons.persistence.PersistenceService` method and prints; a running control plane
sees a restored registry within one health interval."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from neurons.cli.common import JsonFlag, emit
from neurons.config import Settings
from neurons.errors import InvalidRequestError

if TYPE_CHECKING:
    from neurons.persistence import PersistenceService

__all__ = ["parse_version", "state_app"]

state_app = typer.Typer(
    help="State snapshots: save, list, show, diff, verify, restore (the node registry and "
    "placements) and prune versions."
)

VersionArg = Annotated[str, typer.Argument(help="A version: 7, v7 or v000007.")]


def parse_version(text: str) -> int:
    """``7``, ``v7`` and ``v000007`` all name version 7."""
    digits = text.strip().removeprefix("v")
    if not digits.isdigit() or len(digits) > 18 or int(digits) < 1:
        raise InvalidRequestError(f"a snapshot version is a number like 7 or v000007, not {text!r}")
    return int(digits)


@contextmanager
def _service() -> Iterator[PersistenceService]:
    from neurons.persistence import PersistenceService
    from neurons.store import open_store

    settings = Settings()
    store = open_store(settings.resolved_database_url)
    try:
        yield PersistenceService(store, settings)
    finally:
        store.close()


@state_app.command("save")
def save(
    reason: Annotated[
        str, typer.Option(help="Why: a word kept with the version (default: manual).")
    ] = "manual",
    json_output: JsonFlag = False,
) -> None:
    """Snapshot the state now, as a new version (older ones past the maximum are pruned)."""
    with _service() as service:
        record = service.save(reason)
    if json_output:
        emit({"snapshot": record.to_dict()})
        return
    size = sum(f.bytes for f in record.components.values())
    typer.echo(
        f"saved state snapshot v{record.version:06d} "
        f"({len(record.components)} components, {size} bytes)"
    )


@state_app.command("ls")
def list_versions(json_output: JsonFlag = False) -> None:
    """Every listed version, newest first; an unfinished save is never listed."""
    with _service() as service:
        records = service.list()
    if json_output:
        emit({"versions": [r.to_dict() for r in records]})
        return
    table = Table(title="state snapshots")
    for column in ("version", "created", "reason", "status", "bytes"):
        table.add_column(column)
    for record in records:
        table.add_row(
            f"v{record.version:06d}",
            record.created_at.isoformat(timespec="seconds"),
            record.reason,
            record.status,
            str(sum(f.bytes for f in record.components.values())),
        )
    Console().print(table)


@state_app.command("show")
def show(
    version: VersionArg,
    component: Annotated[
        str | None, typer.Argument(help="A component (nodes, placements, settings, ...).")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """A version's components (entries, size, sha256), or one component's content."""
    with _service() as service:
        shown = service.show(parse_version(version), component)
    if json_output:
        emit(shown)
        return
    if component is not None:
        typer.echo(json.dumps(shown["data"], indent=2, sort_keys=True))
        return
    snapshot = shown["snapshot"]
    table = Table(
        title=f"v{snapshot['version']:06d} ({snapshot['reason']}, {snapshot['created_at']}, "
        f"{snapshot['status']})"
    )
    for column in ("component", "entries", "bytes", "sha256"):
        table.add_column(column)
    for name, meta in snapshot["components"].items():
        table.add_row(name, str(shown["entries"][name]), str(meta["bytes"]), meta["sha256"])
    Console().print(table)


@state_app.command("diff")
def diff(old: VersionArg, new: VersionArg, json_output: JsonFlag = False) -> None:
    """What changed from one version to another: entries added (+), removed (-), changed (~)."""
    with _service() as service:
        result = service.diff(parse_version(old), parse_version(new))
    if json_output:
        emit(result)
        return
    same = True
    for name, change in result["components"].items():
        for entry in change["added"]:
            typer.echo(f"{name}: + {entry}")
        for entry in change["removed"]:
            typer.echo(f"{name}: - {entry}")
        for entry, fields in change["changed"].items():
            what = ", ".join(fields) if isinstance(fields, dict) else json.dumps(fields)
            typer.echo(f"{name}: ~ {entry} ({what})")
        same = same and not (change["added"] or change["removed"] or change["changed"])
    if same:
        typer.echo(f"no differences between v{result['from']:06d} and v{result['to']:06d}")


@state_app.command("verify")
def verify(
    version: Annotated[
        str | None, typer.Argument(help="One version (default: every listed one).")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Recompute every file's sha256 against the store; exit 1 if any version is corrupt."""
    with _service() as service:
        results = service.verify(None if version is None else parse_version(version))
    good = all(r["ok"] for r in results)
    if json_output:
        emit({"ok": good, "versions": results})
    else:
        for result in results:
            if result["ok"]:
                typer.echo(f"v{result['version']:06d} ok")
            for problem in result["problems"]:
                typer.echo(
                    f"v{result['version']:06d} CORRUPT {problem['file']}: {problem['problem']}"
                )
    if not good:
        raise typer.Exit(1)


@state_app.command("restore")
def restore(version: VersionArg, json_output: JsonFlag = False) -> None:
    """Put the node registry and placements back as in VERSION (verified first; the current
    state is saved as a pre-restore version). Node tokens are never restored."""
    with _service() as service:
        result = service.restore(parse_version(version))
    if json_output:
        emit(result)
        return
    typer.echo(
        f"restored v{result['restored']:06d} (the state before is v"
        f"{result['pre_restore_version']:06d})"
    )
    for name, change in result["changes"].items():
        typer.echo(_summary(name, change))
    if result["tokens_missing"]:
        typer.echo(
            "these nodes had a token and have none now (tokens are never restored); give "
            "them theirs with `neurons node rm NAME` and `neurons node add URL --name NAME "
            f"--token T`: {', '.join(result['tokens_missing'])}",
            err=True,
        )
    typer.echo(f"not restored (kept as they are): {', '.join(result['not_restored'])}")


def _summary(name: str, change: dict[str, Any]) -> str:
    return (
        f"{name}: {len(change['added'])} added, {len(change['removed'])} removed, "
        f"{len(change['changed'])} changed"
    )


@state_app.command("prune")
def prune(
    keep: Annotated[
        int | None,
        typer.Option(
            help="Versions to keep, newest first (default: NEURONS_SNAPSHOT_MAX_VERSIONS).", min=1
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Delete all but the newest versions, and what interrupted saves left behind."""
    with _service() as service:
        result = service.prune(keep)
    if json_output:
        emit(result)
        return
    removed = ", ".join(f"v{v:06d}" for v in result["removed"]) or "none"
    typer.echo(f"removed {removed}; {result['kept']} kept")
    if result["swept"]:
        typer.echo(f"swept leftovers of interrupted saves: {', '.join(result['swept'])}")
