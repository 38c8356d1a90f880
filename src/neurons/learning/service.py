"""Learning runs as background jobs: stored, observable, cancellable, resumed after a restart.

A thin domain layer over the jobs runtime (:class:`~neurons.jobs.JobRuntime` running a
:class:`~neurons.learning.jobs.LearningKind`): whichever process starts a run (a control
plane, or ``neurons learn run`` in a shell) holds its lease while it trains, so no other
process runs it a second time, and a cancel from any process reaches it within the runtime's
``poll_s``. Starting a cancelled or failed run again resumes it from its last checkpoint; a
control plane's supervisor resumes runs whose process is gone (shut down, killed, or silent
for ``learning_lease_s``). A new run takes the configured defaults
(``Settings.learning_defaults``: a config file's seed 003 keys, or
``NEURONS_LEARNING_DEFAULTS``) under its request's own fields, for REST and the CLI alike
(:mod:`neurons.learning.seed_keys`).

LLM teaching jobs (:meth:`LearningService.teach`) are runs of mode ``teach``
(:mod:`neurons.learning.teaching`): the same rows, lease, status, cancel and events. They need
the nodes, so only a service given a :class:`~neurons.finetune.service.FineTuningService` runs
them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from neurons.config import Settings
from neurons.errors import InvalidRequestError
from neurons.jobs import JobRuntime, Publish
from neurons.learning.jobs import LearningKind
from neurons.learning.report import RunReport, build_report
from neurons.learning.runs import RunConfig
from neurons.learning.seed_keys import RunRequest, build_run_config
from neurons.learning.teaching import TeachConfig, resolve_nodes
from neurons.lifecycle import Status
from neurons.store import Store
from neurons.store.learning import LearningEvent, LearningRunRecord

if TYPE_CHECKING:
    from neurons.finetune.service import FineTuningService

__all__ = ["LearningService"]


class LearningService:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        publish: Publish | None = None,
        *,
        fine_tuning: FineTuningService | None = None,
    ) -> None:
        self.store = store
        self.fine_tuning = fine_tuning
        self.learning_defaults = dict(settings.learning_defaults)
        self.runtime = JobRuntime(
            LearningKind(
                store,
                settings.learning_path / "runs",
                fine_tuning,
                torch_threads=settings.torch_threads,
            ),
            lease_s=settings.learning_lease_s,
            publish=publish,
        )

    async def create(self, config: RunConfig | RunRequest | Mapping[str, Any]) -> LearningRunRecord:
        """Store a new run (pending). A :class:`RunConfig` is stored as it is; a request (a
        REST body: flat fields, seed sections, ``set``; or a command line's
        :class:`RunRequest`) goes over the configured defaults (``learning_defaults``), and a
        refusal names the key to blame."""
        checked = (
            config
            if isinstance(config, RunConfig)
            else build_run_config(config, self.learning_defaults)
        )
        return await asyncio.to_thread(self.store.learning.create, checked.__dict__)

    async def teach(
        self, config: TeachConfig | Mapping[str, Any], *, start: bool = True
    ) -> LearningRunRecord:
        """Store an LLM teaching job (its nodes chosen now, so a model no node holds is
        refused before anything runs) and, unless ``start`` is false, run it here."""
        if self.fine_tuning is None:
            raise InvalidRequestError("teaching needs the nodes; this service has none")
        checked = config if isinstance(config, TeachConfig) else TeachConfig.from_dict(config)
        checked = await resolve_nodes(self.fine_tuning.network.monitor, checked)
        record = await asyncio.to_thread(self.store.learning.create, checked.to_dict())
        return await self.start(record.run_id) if start else record

    async def start(self, run_id: str) -> LearningRunRecord:
        """Train a pending, cancelled or failed run in this process (from its checkpoint)."""
        await self.runtime.start(run_id)
        return await asyncio.to_thread(self.store.learning.get, run_id)

    async def cancel(self, run_id: str) -> LearningRunRecord:
        """Cancel a pending or running run, wherever it trains: it stops within a training
        step of noticing (here at once, elsewhere within the runtime's ``poll_s``)."""
        await self.runtime.cancel(run_id)
        return await asyncio.to_thread(self.store.learning.get, run_id)

    async def wait(self, run_id: str, timeout: float | None = None) -> LearningRunRecord:
        """Wait for this process's training of the run to end; its row then."""
        await self.runtime.wait(run_id, timeout)
        return await asyncio.to_thread(self.store.learning.get, run_id)

    async def status(self, run_id: str) -> dict[str, Any]:
        record = await asyncio.to_thread(self.store.learning.get, run_id)
        state = record.to_dict()
        state["history"] = await asyncio.to_thread(self._history, run_id)
        return state

    async def runs(self, status: str | None = None) -> list[dict[str, Any]]:
        if status is not None and status not in {s.value for s in Status}:
            choices = ", ".join(s.value for s in Status)
            raise InvalidRequestError(f"unknown status {status!r}; choose one of {choices}")
        records = await asyncio.to_thread(self.store.learning.list, status)
        return [r.to_dict() for r in records]

    async def events(
        self, run_id: str, *, after: int = 0, kind: str | None = None, limit: int = 500
    ) -> list[dict[str, Any]]:
        await asyncio.to_thread(self.store.learning.get, run_id)  # 404 for unknown runs
        found = await asyncio.to_thread(
            self.store.learning.events, run_id, after=after, kind=kind, limit=limit
        )
        return [event.to_dict() for event in found]

    async def report(self, run_id: str) -> RunReport:
        """The run's accuracy per round per node and who taught whom, from its events."""
        record = await asyncio.to_thread(self.store.learning.get, run_id)
        return build_report(record.to_dict(), await asyncio.to_thread(self._all_events, run_id))

    def start_supervisor(self) -> None:
        """Resume runs whose process is gone, now and every third of the lease."""
        self.runtime.start_supervisor()

    async def adopt_orphans(self) -> list[str]:
        """One pass of the supervisor: the ids of the runs resumed here."""
        return await self.runtime.adopt_orphans()

    async def resume_interrupted(self) -> list[str]:
        # Kept until the control plane's lifespan calls start_supervisor (being restructured).
        return await self.adopt_orphans()

    async def aclose(self) -> None:
        """Stop this process's runs after their current round's checkpoint; each stays
        ``running`` with its lease given back, so the next control plane resumes it at once."""
        await self.runtime.aclose()

    def _all_events(self, run_id: str) -> list[LearningEvent]:
        found: list[LearningEvent] = []
        while page := self.store.learning.events(
            run_id, after=found[-1].event_id if found else 0, limit=5000
        ):
            found += page
        return found

    def _history(self, run_id: str) -> list[dict[str, Any]]:
        rounds = self.store.learning.events(run_id, kind="round", limit=5000)
        return [{"round": e.round, **_headline(e.payload)} for e in rounds]


def _headline(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The scalar metrics of a round (per-node tables stay in the event)."""
    return {k: v for k, v in payload.items() if isinstance(v, (int, float)) and k != "round"}
