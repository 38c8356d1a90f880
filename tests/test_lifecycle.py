"""The status machine every kind of background work shares."""

from __future__ import annotations

import pytest

from neurons.errors import JobStateError
from neurons.lifecycle import TRANSITIONS, Event, Status, next_status


def refuse(status: Status, event: Event) -> JobStateError:
    return JobStateError(f"no {event} from {status}")


def test_a_refused_move_raises_the_error_the_caller_builds() -> None:
    assert next_status("pending", "start", refuse) is Status.RUNNING
    with pytest.raises(JobStateError, match="no complete from pending"):
        next_status("pending", "complete", refuse)
    assert (Status.COMPLETED, Event.START) not in TRANSITIONS  # completed work is final
