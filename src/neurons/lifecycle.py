"""The status machine of background work: optimization sessions, fine-tuning jobs and
learning runs all move along this one table (events in brackets)::

    pending ──[start]──▶ running ──[complete]──▶ completed
       │                  │  ▲ ──[fail]──────▶ failed ────┐
       │                  │  └──[adopt]  (a dead runner's  │
       │                  │              work taken over)  │
       │                  └──[cancel]────▶ cancelled ──────┤
       └──[cancel]──────────────────────────▲              │
                           running ◀──[start]──────────────┘

Failed or cancelled work can be started again (each kind says what resuming means); completed
work is final. Each kind refuses a move with its own 409 error, so :func:`next_status` takes
the error to raise. The jobs runtime (:mod:`neurons.jobs`) makes the moves, and adopts
``running`` work whose runner is gone.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from neurons.errors import NeuronsError

__all__ = ["TRANSITIONS", "Event", "Status", "next_status"]


class Status(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (Status.COMPLETED, Status.FAILED, Status.CANCELLED)


class Event(StrEnum):
    START = "start"
    COMPLETE = "complete"
    FAIL = "fail"
    CANCEL = "cancel"
    ADOPT = "adopt"


_S, _E = Status, Event
TRANSITIONS: dict[tuple[Status, Event], Status] = {
    (_S.PENDING, _E.START): _S.RUNNING,
    (_S.PENDING, _E.CANCEL): _S.CANCELLED,
    (_S.RUNNING, _E.COMPLETE): _S.COMPLETED,
    (_S.RUNNING, _E.FAIL): _S.FAILED,
    (_S.RUNNING, _E.CANCEL): _S.CANCELLED,
    (_S.RUNNING, _E.ADOPT): _S.RUNNING,
    (_S.FAILED, _E.START): _S.RUNNING,
    (_S.CANCELLED, _E.START): _S.RUNNING,
}


def next_status(
    status: Status | str,
    event: Event | str,
    refused: Callable[[Status, Event], NeuronsError],
) -> Status:
    """The status after ``event``; where the table has no such move, the error
    ``refused(status, event)`` builds is raised."""
    current, happened = Status(status), Event(event)
    new = TRANSITIONS.get((current, happened))
    if new is None:
        raise refused(current, happened)
    return new
