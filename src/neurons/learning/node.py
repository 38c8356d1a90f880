"""Seed 003's learning node: a model that learns, teaches, collaborates and knows how good it is.

``knowledge_level`` is measured, never assumed: the node's accuracy on its held-out validation
examples after every learning event. Teachers are chosen by it (see ``system.py``).

What one learning event is, in the seed's terms:

- ``teach_interval``: the optimizer steps a node takes per learning event;
- ``distillation_temperature`` (T) and ``distillation_weight`` (the soft weight of
  ``training.distillation_loss``; Hinton et al. put most weight on the soft term) when the
  node learns from a teacher;
- ``collaboration_weight``: the soft weight when it learns from its peers' ensemble;
- ``knowledge_threshold``: the level a node needs before it may teach;
- ``max_students``: how many students a teacher takes at once.

The heavy work runs in a worker thread (``asyncio.to_thread``), so the async API never blocks
an event loop for a training step.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from torch import nn

from neurons.errors import InvalidRequestError, LearningStateError
from neurons.learning.choices import checked_fields, shape_problems
from neurons.learning.data import LearningData
from neurons.learning.ensemble import knowledge_weights, weighted_average
from neurons.learning.models import ModelSpec, build_model, get_arrays, set_arrays
from neurons.learning.training import LocalTraining, accuracy, logits_of, train_local

__all__ = ["LearningNode", "NodeConfig"]

_HISTORY_KEPT = 100


@dataclass(frozen=True)
class NodeConfig:
    """Seed 003's ``distributed_learning.node_config``, with its defaults."""

    node_id: str
    model_type: str = "mlp"
    learning_rate: float = 0.001
    knowledge_threshold: float = 0.8
    teach_interval: int = 100
    max_students: int = 5
    distillation_temperature: float = 2.0
    collaboration_weight: float = 0.3
    distillation_weight: float = 0.9
    batch_size: int = 32
    hidden_size: int = 0
    num_layers: int = 0
    num_heads: int = 8
    dropout: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if not self.node_id or len(self.node_id) > 64:
            problems.append("node_id must be 1-64 characters")
        problems += shape_problems(
            self.model_type, self.hidden_size, self.num_layers, self.num_heads, self.dropout
        )
        if not 0 < self.learning_rate <= 1:
            problems.append("learning_rate must be in (0, 1]")
        if not 0 <= self.knowledge_threshold <= 1:
            problems.append("knowledge_threshold must be in [0, 1]")
        if self.teach_interval < 1:
            problems.append("teach_interval must be at least 1")
        if self.max_students < 0:
            problems.append("max_students must not be negative")
        if self.distillation_temperature <= 0:
            problems.append("distillation_temperature must be positive")
        for name in ("collaboration_weight", "distillation_weight"):
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"{name} must be in [0, 1]")
        if self.batch_size < 1:
            problems.append("batch_size must be at least 1")
        if problems:
            raise InvalidRequestError("invalid node config: " + "; ".join(problems))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodeConfig:
        return cls(**checked_fields(cls, data, "node config"))

    @classmethod
    def from_json(cls, text: str) -> NodeConfig:
        return cls.from_dict(json.loads(text))


class LearningNode:
    def __init__(self, config: NodeConfig, validation: LearningData | None = None) -> None:
        self.config = config
        self.validation = validation
        self.knowledge_level = 0.0
        self.learning_history: list[dict[str, Any]] = []
        self.students: set[str] = set()
        self.teachers: set[str] = set()
        self.teaching_events = 0
        self.learning_events = 0
        self._model: nn.Module | None = None
        self._spec: ModelSpec | None = None
        self._lock = threading.Lock()  # one training or prediction at a time per model

    @property
    def node_id(self) -> str:
        return self.config.node_id

    # -- the seed's API ------------------------------------------------------------------

    async def teach(self, student: LearningNode, data: LearningData) -> dict[str, Any]:
        """Take ``student`` on (within ``max_students``) and let it learn ``data`` from us."""
        if student is self:
            raise LearningStateError(f"node {self.node_id} cannot teach itself")
        if student.node_id not in self.students and len(self.students) >= self.config.max_students:
            raise LearningStateError(
                f"node {self.node_id} already teaches {self.config.max_students} students"
            )
        if self._model is None:
            raise LearningStateError(f"node {self.node_id} has learned nothing yet to teach")
        self.students.add(student.node_id)
        student.teachers.add(self.node_id)
        metrics = await student.learn(data, teacher=self)
        self.teaching_events += 1
        return metrics

    async def learn(
        self, data: LearningData, teacher: LearningNode | None = None
    ) -> dict[str, Any]:
        """One learning event: ``teach_interval`` steps on ``data``, distilled from ``teacher``
        when one is given, then a fresh knowledge level."""
        soft = None
        if teacher is not None:
            soft = await teacher.logits(data)
        return await asyncio.to_thread(
            self._learn_sync,
            data,
            soft,
            self.config.distillation_weight if teacher is not None else 0.0,
            "distillation" if teacher is not None else "local",
            teacher.node_id if teacher is not None else None,
        )

    async def collaborate(
        self, peers: Sequence[LearningNode], data: LearningData
    ) -> dict[str, Any]:
        """Learn from the peers' ensemble: their predictions on ``data`` weighted by their
        knowledge levels become soft targets with weight ``collaboration_weight``."""
        others = [p for p in peers if p is not self]
        if not others:
            raise LearningStateError("collaboration needs at least one other peer")
        predictions = [await p.predict(data) for p in others]
        weights = knowledge_weights([p.knowledge_level for p in others])
        ensemble = weighted_average(predictions, weights)
        soft_logits = np.log(np.clip(ensemble, 1e-8, 1.0)) * self.config.distillation_temperature
        metrics = await asyncio.to_thread(
            self._learn_sync,
            data,
            soft_logits.astype(np.float32),
            self.config.collaboration_weight,
            "collaboration",
            None,
        )
        metrics["peers"] = [p.node_id for p in others]
        metrics["peer_weights"] = [round(w, 4) for w in weights]
        return metrics

    async def predict(self, data: LearningData) -> np.ndarray:
        """Class probabilities, one row per example."""
        logits = await self.logits(data)
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return np.asarray(shifted / shifted.sum(axis=1, keepdims=True))

    def get_knowledge_state(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "knowledge_level": self.knowledge_level,
            "learning_history": list(self.learning_history[-10:]),
            "students": sorted(self.students),
            "teachers": sorted(self.teachers),
            "learning_events": self.learning_events,
            "teaching_events": self.teaching_events,
        }

    # -- parameters, for federated rounds and checkpoints ----------------------------------

    async def logits(self, data: LearningData) -> np.ndarray:
        return await asyncio.to_thread(self._logits_sync, data)

    def get_parameters(self) -> list[np.ndarray]:
        if self._model is None:
            raise LearningStateError(f"node {self.node_id} has no model yet")
        with self._lock:
            return get_arrays(self._model)

    def set_parameters(self, arrays: list[np.ndarray], like: LearningData) -> None:
        with self._lock:
            set_arrays(self._ensure_model(like), arrays)

    def evaluate(self, data: LearningData | None = None) -> float:
        target = data if data is not None else self.validation
        if target is None or self._model is None:
            return 0.0
        with self._lock:
            return accuracy(self._model, target)

    def release_student(self, student: LearningNode) -> None:
        self.students.discard(student.node_id)
        student.teachers.discard(self.node_id)

    # -- internals -------------------------------------------------------------------------

    def _ensure_model(self, like: LearningData) -> nn.Module:
        spec = ModelSpec(
            self.config.model_type,
            like.num_features,
            like.num_classes,
            like.sequence_shape,
            hidden_size=self.config.hidden_size,
            num_layers=self.config.num_layers,
            num_heads=self.config.num_heads,
            dropout=self.config.dropout,
        )
        if self._model is None:
            self._spec, self._model = spec, build_model(spec, self.config.seed)
        elif spec != self._spec:
            raise InvalidRequestError(
                f"node {self.node_id} was built for {self._spec}, not for data shaped {spec}"
            )
        return self._model

    def _logits_sync(self, data: LearningData) -> np.ndarray:
        if self._model is None:
            raise LearningStateError(f"node {self.node_id} has learned nothing yet")
        with self._lock:
            return logits_of(self._model, data.x)

    def _learn_sync(
        self,
        data: LearningData,
        soft: np.ndarray | None,
        soft_weight: float,
        kind: str,
        teacher: str | None,
    ) -> dict[str, Any]:
        if data.y is None and soft is None:
            raise InvalidRequestError("unlabelled data can only be learned from a teacher")
        started = time.perf_counter()
        with self._lock:
            model = self._ensure_model(data)
            result = train_local(
                model,
                data,
                LocalTraining(
                    steps=self.config.teach_interval,
                    batch_size=self.config.batch_size,
                    learning_rate=self.config.learning_rate,
                    seed=self.config.seed + self.learning_events,
                    temperature=self.config.distillation_temperature,
                    soft_weight=soft_weight,
                ),
                teacher_logits=soft,
            )
        before = self.knowledge_level
        self.knowledge_level = self.evaluate()
        self.learning_events += 1
        entry: dict[str, Any] = {
            "event": kind,
            "teacher": teacher,
            "samples": len(data),
            "loss": round(result["loss"], 5),
            "knowledge_before": round(before, 4),
            "knowledge_level": round(self.knowledge_level, 4),
            "seconds": round(time.perf_counter() - started, 3),
            "at": time.time(),
        }
        self.learning_history.append(entry)
        del self.learning_history[:-_HISTORY_KEPT]
        return dict(entry)
