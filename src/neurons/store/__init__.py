"""Persistent state shared by every neurons process: one SQLite database under NEURONS_HOME,
or a PostgreSQL database that several control planes share (``NEURONS_DATABASE_URL``).

Open it with :func:`open_store`, which also migrates the schema, so no caller can forget to.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from neurons.store.engine import create_engine_for, open_store
from neurons.store.evaluations import EvaluationRecord, EvaluationRepository
from neurons.store.events import EventRepository, StoredEvent
from neurons.store.finetune import FineTuningJobRepository, JobRecord
from neurons.store.keys import ApiKeyRepository, AuditEvent, AuditRepository, KeyUsage
from neurons.store.kv import KeyValueRepository
from neurons.store.learning import LearningEvent, LearningRunRecord, LearningRunRepository
from neurons.store.migrations import MIGRATIONS, Migration, current_version, migrate
from neurons.store.nodes import NODE_KINDS, NodeRecord, NodeRepository
from neurons.store.optimization import OptimizationSessionRepository, SessionRecord
from neurons.store.placements import Placement, PlacementRepository
from neurons.store.snapshots import SnapshotFile, SnapshotRecord, SnapshotRepository

__all__ = [
    "MIGRATIONS",
    "NODE_KINDS",
    "ApiKeyRepository",
    "AuditEvent",
    "AuditRepository",
    "EvaluationRecord",
    "EvaluationRepository",
    "EventRepository",
    "FineTuningJobRepository",
    "JobRecord",
    "KeyUsage",
    "KeyValueRepository",
    "LearningEvent",
    "LearningRunRecord",
    "LearningRunRepository",
    "Migration",
    "NodeRecord",
    "NodeRepository",
    "OptimizationSessionRepository",
    "Placement",
    "PlacementRepository",
    "SessionRecord",
    "SnapshotFile",
    "SnapshotRecord",
    "SnapshotRepository",
    "Store",
    "StoredEvent",
    "create_engine_for",
    "current_version",
    "migrate",
    "open_store",
]


@dataclass
class Store:
    """The engine and the repositories built on it, opened together by :func:`open_store`."""

    engine: Engine
    nodes: NodeRepository
    kv: KeyValueRepository
    evaluations: EvaluationRepository
    placements: PlacementRepository
    optimization: OptimizationSessionRepository
    fine_tuning: FineTuningJobRepository
    learning: LearningRunRepository
    keys: ApiKeyRepository
    audit: AuditRepository
    snapshots: SnapshotRepository
    events: EventRepository

    def close(self) -> None:
        """Release pooled connections (and with them SQLite's file handles)."""
        self.engine.dispose()
