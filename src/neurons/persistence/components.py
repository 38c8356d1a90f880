"""The parts of the durable state a snapshot holds, one file each.

A :class:`Component` reads its part through the store's repositories and says which field
names an entry (for diffs). Adding a part is adding a small class to :data:`COMPONENTS`.

No component holds a secret: nodes say only whether they have a token (``has_token``; the
sealed token stays in the store), API keys carry their public metadata (no hash, no usage
counters), and settings come from :meth:`Settings.to_json`, which masks secret values, with
a database URL's password masked too.

Model manifests per node come from the health monitor, which records what each node's
``/api/tags`` lists (name, digest, size) in the store whenever it changes: a snapshot holds
what the control plane last saw, whichever process takes it.
"""

from __future__ import annotations

import base64
import json
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

# At import, not in collect: numpy's import would otherwise slow the first save by a
# noticeable fraction of a second.
from neurons.store.memory import MemoryEntry, MemoryRepository

if TYPE_CHECKING:
    from neurons.config import Settings
    from neurons.store import Store

__all__ = [
    "COMPONENTS",
    "ApiKeys",
    "Component",
    "FineTuningJobs",
    "LearningRuns",
    "Memory",
    "NodeModels",
    "Nodes",
    "OptimizationSessions",
    "Placements",
    "SettingsComponent",
]

# The public fields of an API key: what `neurons keys ls` shows, less the usage counters
# (which move with every request and would make every snapshot differ).
_KEY_FIELDS = (
    "id",
    "name",
    "prefix",
    "scope",
    "models",
    "rpm",
    "tpm",
    "max_parallel",
    "expires_at",
    "state",
    "created_at",
    "revoked_at",
)


class Component(ABC):
    """One part of the durable state, as a snapshot holds it: JSON, entries in a stable order."""

    name: ClassVar[str]
    key: ClassVar[str | None]  # the field naming an entry; None: the data is one flat mapping
    restorable: ClassVar[bool] = False  # whether restore puts it back
    # Whether a version may lack it (saved before the part existed); restore leaves it as is.
    optional: ClassVar[bool] = False

    @abstractmethod
    def collect(self, store: Store, settings: Settings) -> Any:
        """The part as JSON-ready data: a list of entries (or, without ``key``, a mapping)."""

    def restore(self, store: Store, entries: Any) -> bool:
        """Put the part back as ``entries`` (a version's data) hold it; False where the
        service puts it back itself: the node registry and the placements go back together,
        in one transaction (``SnapshotRepository.replace_registry``)."""
        return False

    def keyed(self, data: Any) -> dict[str, Any]:
        """The entries by name, for diffs."""
        if self.key is None:
            return dict(data)
        return {str(entry[self.key]): entry for entry in data}


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


class Nodes(Component):
    """The node registry: what `neurons node add` said, and whether the node is drained.
    Health is measured again by the next probe, so it is not kept."""

    name = "nodes"
    key = "name"
    restorable = True

    def collect(self, store: Store, settings: Settings) -> Any:
        return [
            {
                "id": n.id,
                "name": n.name,
                "url": n.url,
                "kind": n.kind,
                "labels": dict(sorted(n.labels.items())),
                "priority": n.priority,
                "draining": n.status == "draining",
                "has_token": n.has_token,
                "created_at": n.created_at.isoformat(),
            }
            for n in sorted(store.nodes.list(), key=lambda n: n.name)
        ]


class Placements(Component):
    name = "placements"
    key = "model"
    restorable = True

    def collect(self, store: Store, settings: Settings) -> Any:
        return [p.to_dict() for p in store.placements.list()]


class OptimizationSessions(Component):
    name = "optimization_sessions"
    key = "session_id"

    def collect(self, store: Store, settings: Settings) -> Any:
        return [
            {
                "session_id": s.session_id,
                "model_name": s.model_name,
                "objective": s.objective,
                "strategy": s.strategy,
                "model_type": s.model_type,
                "status": s.status,
                "config": s.config,
                "study_name": s.study_name,
                "current_iteration": s.current_iteration,
                "best": s.best,
                "error": s.error,
                "created_at": _iso(s.created_at),
                "started_at": _iso(s.started_at),
                "finished_at": _iso(s.finished_at),
            }
            for s in sorted(store.optimization.list(), key=lambda s: int(s.session_id))
        ]


class FineTuningJobs(Component):
    """Jobs without their log lines (the tail of a log is not state)."""

    name = "fine_tuning_jobs"
    key = "job_id"

    def collect(self, store: Store, settings: Settings) -> Any:
        return [
            {
                "job_id": j.job_id,
                "base_model": j.base_model,
                "target_model_name": j.target_model_name,
                "data_type": j.data_type,
                "status": j.status,
                "current_phase": j.current_phase,
                "progress": j.progress,
                "config": j.config,
                "metrics": j.metrics,
                "error": j.error,
                "attempts": j.attempts,
                "created_at": _iso(j.created_at),
                "started_at": _iso(j.started_at),
                "finished_at": _iso(j.finished_at),
            }
            for j in sorted(store.fine_tuning.list(), key=lambda j: int(j.job_id))
        ]


class LearningRuns(Component):
    """The index of learning runs: ids, status, config, round and checkpoint folder (the
    checkpoints themselves stay in their folders)."""

    name = "learning_runs"
    key = "run_id"

    def collect(self, store: Store, settings: Settings) -> Any:
        # The folder LearningKind.run_dir gives a run (not imported: it pulls in torch).
        runs = settings.learning_path / "runs"
        return [
            {
                "run_id": r.run_id,
                "mode": r.mode,
                "dataset": r.dataset,
                "status": r.status,
                "config": r.config,
                "current_round": r.current_round,
                "total_rounds": r.total_rounds,
                "error": r.error,
                "checkpoint": str(runs / str(int(r.run_id))),
                "created_at": _iso(r.created_at),
                "started_at": _iso(r.started_at),
                "finished_at": _iso(r.finished_at),
            }
            for r in sorted(store.learning.list(), key=lambda r: int(r.run_id))
        ]


class ApiKeys(Component):
    """Keys' public metadata: never a secret or its hash."""

    name = "api_keys"
    key = "name"

    def collect(self, store: Store, settings: Settings) -> Any:
        now = datetime.now(UTC)
        rows = [key.to_dict(now) for key in store.keys.list()]
        return [{f: row[f] for f in _KEY_FIELDS} for row in sorted(rows, key=lambda r: r["name"])]


class SettingsComponent(Component):
    """The settings of the process that took the snapshot, secrets masked."""

    name = "settings"
    key = None

    def collect(self, store: Store, settings: Settings) -> Any:
        data: dict[str, Any] = json.loads(settings.to_json())
        url = data.get("database_url")
        if url:
            try:
                data["database_url"] = make_url(url).render_as_string(hide_password=True)
            except ArgumentError:
                data["database_url"] = "**********"
        return data


class NodeModels(Component):
    """Each registered node's model manifests as the health monitor last saw them (name,
    digest, size), with when that was. Shown and compared, never restored: the models live
    on the nodes."""

    name = "node_models"
    key = "node"

    def collect(self, store: Store, settings: Settings) -> Any:
        from neurons.network.health import MANIFESTS_KEY

        seen = store.kv.items(MANIFESTS_KEY)
        entries = []
        for node in sorted(store.nodes.list(), key=lambda n: n.name):
            record = seen.get(MANIFESTS_KEY + node.name) or {}
            entries.append(
                {
                    "node": node.name,
                    "models": record.get("models", []),
                    "seen_at": record.get("seen_at"),
                }
            )
        return entries


class Memory(Component):
    """Language memory's entries (:mod:`neurons.memory`), every namespace, each with its
    embedding (base64 of the stored float32 bytes) and the model digest that made it, so a
    restore needs no model and a search after it compares only vectors of one model."""

    name = "memory"
    key = "id"
    restorable = True
    optional = True  # versions saved before language memory existed have no memory file

    def collect(self, store: Store, settings: Settings) -> Any:
        return [
            {
                **e.to_dict(),
                "digest": e.digest,
                "embedding": base64.b64encode(e.embedding or b"").decode("ascii"),
            }
            for e in MemoryRepository(store.engine).list(with_embedding=True)
        ]

    def restore(self, store: Store, entries: Any) -> bool:
        MemoryRepository(store.engine).replace_all(
            MemoryEntry(
                id=int(e["id"]),
                namespace=e["namespace"],
                text=e["text"],
                metadata=e["metadata"],
                model=e["model"],
                digest=e["digest"],
                created_at=datetime.fromisoformat(e["created_at"]),
                embedding=base64.b64decode(e["embedding"]),
            )
            for e in entries
        )
        return True


COMPONENTS: tuple[Component, ...] = (
    Nodes(),
    Placements(),
    NodeModels(),
    OptimizationSessions(),
    FineTuningJobs(),
    LearningRuns(),
    ApiKeys(),
    SettingsComponent(),
    Memory(),
)
