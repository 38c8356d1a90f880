"""How a neurons process ends on SIGTERM: like Ctrl-C."""

from __future__ import annotations

from types import FrameType

__all__ = ["stop_on_sigterm"]


def stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """A SIGTERM handler raising KeyboardInterrupt. uvicorn catches SIGINT and SIGTERM while
    it serves (graceful shutdown) and raises the signal again once it has stopped; with this
    handler that second SIGTERM ends the command like Ctrl-C (exit 0, ``finally`` blocks
    run) instead of killing it."""
    raise KeyboardInterrupt
