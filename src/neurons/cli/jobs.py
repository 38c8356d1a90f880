"""What the three job CLIs (``neurons optimize``, ``neurons finetune``, ``neurons learn``)
share: one way to report a refusal, and one way to run a job in the foreground and follow it.

A refusal (an unknown id, a move the job's status forbids) exits 1 with ``error: ...`` on
stderr, or under ``--json`` with the management API's envelope on stdout
(``{"success": false, "error": ..., "error_code": ...}``), the same for every kind; a usage
error a command finds itself (``neurons learn run --set``) is reported the same way and exits 2.
Following a job polls its state through :func:`neurons.jobs.follow` and hands each reading
to the command's renderer (a progress bar, or nothing under ``--json``); Ctrl-C cancels the
job and exits 130.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer

from neurons.cli.common import INTERRUPTED, emit
from neurons.errors import NeuronsError
from neurons.jobs import follow

__all__ = ["FINISHED", "exit_for", "fail", "follow_job", "refusals_exit"]

T = TypeVar("T")
FINISHED = ("completed", "failed", "cancelled")


def fail(exc: NeuronsError, as_json: bool, code: int = 1) -> typer.Exit:
    """Report ``exc`` as every job command does; raise what this returns (exit ``code``: 1
    for a refusal, 2 for a usage error such as a bad ``--set``)."""
    if as_json:
        emit({"error": exc.message, "error_code": exc.error_code}, success=False)
    else:
        typer.echo(f"error: {exc.message}", err=True)
    return typer.Exit(code)


def refusals_exit(call: Callable[[], T], as_json: bool) -> T:
    """``call()``'s answer; a refusal exits 1 through :func:`fail`."""
    try:
        return call()
    except NeuronsError as exc:
        raise fail(exc, as_json) from exc


async def follow_job(
    read: Callable[[], Awaitable[T]],
    status: Callable[[T], str],
    render: Callable[[T], None],
    cancel: Callable[[], Awaitable[object]],
    interval_s: float = 0.3,
) -> T:
    """Follow a job started in this process until it leaves ``running``/``pending``: each
    reading goes to ``render``; the last one is returned. Ctrl-C cancels the job (through
    ``cancel``) and is raised again for the command to exit with :data:`INTERRUPTED`."""
    last: T | None = None
    try:
        async for state in follow(read, lambda s: status(s) in FINISHED, interval_s):
            render(state)
            last = state
    except (KeyboardInterrupt, asyncio.CancelledError):
        # asyncio.run turns the first Ctrl-C into a cancel of its task (CancelledError here)
        # and raises KeyboardInterrupt once the task has ended: cancel the job either way.
        await cancel()
        raise
    assert last is not None
    return last


def exit_for(status: str) -> None:
    """Exit as a finished job's status says: 0 completed, 130 cancelled, 1 failed."""
    if status == "cancelled":
        raise typer.Exit(INTERRUPTED)
    if status != "completed":
        raise typer.Exit(1)
