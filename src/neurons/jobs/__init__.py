"""Background work's one runtime: leases, compare-and-set moves, stop signals, adoption of
orphans, cancels that reach the runner wherever it runs (:mod:`neurons.jobs.runtime`)."""

from __future__ import annotations

from neurons.jobs.leases import Lease, LeaseTable
from neurons.jobs.runners import runner_identity, runner_is_dead
from neurons.jobs.runtime import (
    JobKind,
    JobRuntime,
    JobStopped,
    Publish,
    follow,
)
from neurons.jobs.signals import StopReason, StopSignal

__all__ = [
    "JobKind",
    "JobRuntime",
    "JobStopped",
    "Lease",
    "LeaseTable",
    "Publish",
    "StopReason",
    "StopSignal",
    "follow",
    "runner_identity",
    "runner_is_dead",
]
