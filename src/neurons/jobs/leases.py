"""The lease and status columns every kind of background work shares, moved by compare-and-set.

Optimization sessions, fine-tuning jobs and learning runs each keep their own table (their
domain columns differ) but the same lifecycle columns: ``id``, ``status``, ``runner``
(``host:pid:nonce`` of the process running it), ``heartbeat_at``, ``error``,
``started_at``, ``finished_at``, ``updated_at`` and, where the table has it, ``attempts``.
:class:`LeaseTable` owns every write to those columns, so the rules live once:

- a move happens only from an expected status (and, where asked, an expected lease holder),
  inside one write transaction: two processes racing for the same move get one winner and one
  409 (``refused``);
- entering ``running`` takes the lease (runner, heartbeat, one more attempt, ``started_at``
  the first time); leaving it gives the lease back and stamps ``finished_at`` on a final
  status;
- :meth:`renew` is the heartbeat: it writes only while the caller still holds a ``running``
  row, so a cancel or an adoption elsewhere shows up to the runner as a failed renewal.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Table, select
from sqlalchemy.engine import Engine

from neurons.errors import NeuronsError
from neurons.jobs.signals import StopReason, StopSignal
from neurons.store.engine import (
    from_db_time,
    read_connection,
    to_db_time,
    utc_now,
    write_transaction,
)
from neurons.store.ids import row_id

__all__ = ["Lease", "LeaseTable", "lost_reason"]

_FINAL = ("completed", "failed", "cancelled")


@dataclass(frozen=True)
class Lease:
    """The lifecycle columns of one row: what the jobs runtime decides on."""

    job_id: str
    status: str
    runner: str | None
    heartbeat_at: datetime | None
    error: str | None


class LeaseTable:
    """Compare-and-set moves over one kind's table (see the module docstring).

    ``not_found(id)`` and ``refused(message)`` build the kind's own 404 and 409 errors;
    ``cleared_on_release`` names domain columns that only mean something while a runner holds
    the row (a worker's pid, an ETA) and are set to NULL when it lets go.
    """

    def __init__(
        self,
        engine: Engine,
        table: Table,
        *,
        what: str,
        not_found: Callable[[str], NeuronsError],
        refused: Callable[[str], NeuronsError],
        cleared_on_release: Collection[str] = (),
    ) -> None:
        self._engine = engine
        self.table = table
        self.what = what
        self._not_found = not_found
        self._refused = refused
        self._cleared = tuple(cleared_on_release)
        self._counts_attempts = "attempts" in table.c

    def key(self, job_id: str | int) -> int:
        """The row ``job_id`` names; the kind's 404 where it can name none."""
        key = row_id(job_id)
        if key is None:
            raise self._not_found(f"no {self.what} '{job_id}'")
        return key

    def lease(self, job_id: str | int) -> Lease:
        key = self.key(job_id)
        with read_connection(self._engine) as conn:
            row = conn.execute(select(self.table).where(self.table.c.id == key)).first()
        if row is None:
            raise self._not_found(f"no {self.what} '{job_id}'")
        return _lease(row)

    def leases(self, status: str) -> builtins.list[Lease]:
        """Every row in ``status``, oldest first."""
        query = select(self.table).where(self.table.c.status == status).order_by(self.table.c.id)
        with read_connection(self._engine) as conn:
            return [_lease(row) for row in conn.execute(query)]

    def transition(
        self,
        job_id: str | int,
        expected: Collection[str],
        new: str,
        *,
        runner: str | None = None,
        error: str | None = None,
        expected_runner: str | None = None,
        values: Mapping[str, Any] | None = None,
        computed: Callable[[Row[Any]], Mapping[str, Any]] | None = None,
    ) -> None:
        """Move the row to ``new`` if its status is one of ``expected`` and, when
        ``expected_runner`` is given, its lease is still that runner's (``""``: held by no
        one). ``values`` are written with the move; ``computed(row)`` derives more from the
        row as it was (say, a log line appended). The kind's 409 when the row moved on."""
        key = self.key(job_id)
        now = to_db_time(utc_now())
        table = self.table
        with write_transaction(self._engine) as conn:
            row = conn.execute(select(table).where(table.c.id == key)).first()
            if row is None:
                raise self._not_found(f"no {self.what} '{job_id}'")
            if row.status not in expected:
                raise self._refused(
                    f"{self.what} {key} is {row.status}, not {' or '.join(sorted(expected))}"
                )
            if expected_runner is not None and (row.runner or "") != expected_runner:
                raise self._refused(f"{self.what} {key} is now run by another process")
            update: dict[str, Any] = {"status": new, "updated_at": now, "error": error}
            if new == "running":
                update.update(runner=runner, heartbeat_at=now, finished_at=None)
                if self._counts_attempts:
                    update["attempts"] = row.attempts + 1
                if row.started_at is None:
                    update["started_at"] = now
            else:
                update.update(runner=None, heartbeat_at=None)
                update.update(dict.fromkeys(self._cleared))
                if new in _FINAL:
                    update["finished_at"] = now
            update.update(values or {})
            if computed is not None:
                update.update(computed(row))
            conn.execute(table.update().where(table.c.id == key).values(**update))

    def renew(
        self,
        job_id: str | int,
        runner: str,
        values: Mapping[str, Any] | None = None,
        computed: Callable[[Row[Any]], Mapping[str, Any]] | None = None,
        *,
        stop: StopSignal | None = None,
    ) -> bool:
        """The heartbeat (with any progress in ``values``/``computed``); False when ``runner``
        no longer holds a ``running`` row: it was cancelled, or adopted by another process
        that presumed this one dead. Then ``stop``, when given, is set saying which
        (:meth:`stop_lost`), so the job's next safe point stops it."""
        key = self.key(job_id)
        now = to_db_time(utc_now())
        table = self.table
        with write_transaction(self._engine) as conn:
            row = conn.execute(
                select(table).where(
                    table.c.id == key, table.c.runner == runner, table.c.status == "running"
                )
            ).first()
            if row is not None:
                update: dict[str, Any] = {"heartbeat_at": now, "updated_at": now}
                update.update(values or {})
                if computed is not None:
                    update.update(computed(row))
                conn.execute(table.update().where(table.c.id == key).values(**update))
        if row is None and stop is not None:
            self.stop_lost(job_id, stop)
        return row is not None

    def stop_lost(self, job_id: str | int, stop: StopSignal) -> None:
        """Set ``stop`` for a lease no longer held: ``cancel`` when the row was cancelled,
        else ``lease_lost`` (another process runs it now)."""
        stop.stop(lost_reason(self.lease(job_id)))

    def release(self, job_id: str | int, runner: str) -> bool:
        """Give the lease back while the row stays ``running`` (a process shutting down with
        resumable work): the next supervisor adopts it at once instead of after the lease."""
        key = self.key(job_id)
        table = self.table
        update: dict[str, Any] = {"runner": None, "updated_at": to_db_time(utc_now())}
        update.update(dict.fromkeys(self._cleared))
        with write_transaction(self._engine) as conn:
            result = conn.execute(
                table.update().where(table.c.id == key, table.c.runner == runner).values(**update)
            )
        return result.rowcount == 1


def lost_reason(lease: Lease) -> str:
    """Why a runner no longer holds ``lease``: it was cancelled, or another process runs it."""
    return StopReason.CANCEL if lease.status == "cancelled" else StopReason.LEASE_LOST


def _lease(row: Row[Any]) -> Lease:
    beat = row.heartbeat_at
    return Lease(
        job_id=str(row.id),
        status=row.status,
        runner=row.runner,
        heartbeat_at=from_db_time(beat) if beat else None,
        error=row.error,
    )
