"""Seed 003's ``DistributedLearningSystem``: nodes that learn, and teach whoever needs it.

Each round every node takes one learning event on its own labelled examples. Every
``evaluation_interval`` optimizer steps the system measures each node's knowledge level and
re-pairs teachers and students (:meth:`DistributedLearningSystem.assign_teachers`):

- a node may teach once its level reaches its ``knowledge_threshold``;
- a student goes to the best teacher that still has room (``max_students``) and whose level
  beats the student's by at least ``margin``;
- a pairing ends as soon as the teacher no longer beats the student by that margin, so
  relationships follow the measured levels.

Then every teacher teaches each of its students on that student's own examples, labels
hidden where the student has none (distillation needs only the teacher's predictions).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from neurons.errors import InvalidRequestError, LearningStateError
from neurons.learning.choices import checked_fields
from neurons.learning.data import LearningData, partition
from neurons.learning.node import LearningNode

__all__ = ["DistributedLearningSystem", "NodeShare", "SystemConfig"]

EventSink = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class SystemConfig:
    """Seed 003's ``learning_system`` block."""

    min_nodes: int = 3
    max_nodes: int = 10
    evaluation_interval: int = 100
    margin: float = 0.02

    def __post_init__(self) -> None:
        if not 1 <= self.min_nodes <= self.max_nodes:
            raise InvalidRequestError("need 1 <= min_nodes <= max_nodes")
        if self.evaluation_interval < 1:
            raise InvalidRequestError("evaluation_interval must be at least 1")
        if not 0 <= self.margin < 1:
            raise InvalidRequestError("margin must be in [0, 1)")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SystemConfig:
        return cls(**checked_fields(cls, data, "system config"))


@dataclass(frozen=True)
class NodeShare:
    """One node's examples: some with labels, and (optionally) more without."""

    labelled: LearningData | None
    unlabelled: LearningData | None = None

    def everything(self) -> LearningData:
        """All the node's examples with labels hidden: what a teacher teaches it on."""
        parts = [p for p in (self.labelled, self.unlabelled) if p is not None]
        if not parts:
            raise InvalidRequestError("a node share needs some examples")
        x = np.concatenate([p.x for p in parts])
        return LearningData(x, None, parts[0].num_classes, parts[0].sequence_shape)


class DistributedLearningSystem:
    def __init__(self, config: SystemConfig | None = None) -> None:
        self.config = config or SystemConfig()
        self.nodes: dict[str, LearningNode] = {}
        self.total_learning_events = 0
        self.teaching_events = 0
        self.rounds_done = 0
        self._steps_since_evaluation = 0

    def add_node(self, node: LearningNode) -> None:
        if node.node_id in self.nodes:
            raise InvalidRequestError(f"node {node.node_id} is already in the system")
        if len(self.nodes) >= self.config.max_nodes:
            raise LearningStateError(f"the system is full ({self.config.max_nodes} nodes)")
        self.nodes[node.node_id] = node

    def remove_node(self, node_id: str) -> LearningNode:
        node = self.nodes.pop(node_id, None)
        if node is None:
            raise InvalidRequestError(f"no node {node_id!r} in the system")
        for other in self.nodes.values():
            if node_id in other.students:
                other.release_student(node)
            if node_id in other.teachers:
                node.release_student(other)
        return node

    def assign_teachers(self) -> list[tuple[str, str]]:
        """Re-pair by measured knowledge (see the module docstring); returns the pairs."""
        margin = self.config.margin
        by_level = sorted(self.nodes.values(), key=lambda n: n.knowledge_level, reverse=True)
        for teacher in by_level:  # end pairings the levels no longer justify
            for student_id in sorted(teacher.students):
                student = self.nodes.get(student_id)
                if student is None or teacher.knowledge_level < student.knowledge_level + margin:
                    if student is not None:
                        teacher.release_student(student)
                    else:
                        teacher.students.discard(student_id)
        eligible = [n for n in by_level if n.knowledge_level >= n.config.knowledge_threshold]
        for student in reversed(by_level):
            if student.teachers:
                continue
            for teacher in eligible:
                if teacher is student:
                    continue
                if teacher.knowledge_level < student.knowledge_level + margin:
                    break  # eligible is sorted: nobody after this one is better
                if len(teacher.students) < teacher.config.max_students:
                    teacher.students.add(student.node_id)
                    student.teachers.add(teacher.node_id)
                    break
        return sorted(
            (teacher.node_id, student_id)
            for teacher in self.nodes.values()
            for student_id in teacher.students
        )

    async def start_learning(
        self,
        training_data: LearningData | Mapping[str, NodeShare],
        rounds: int = 1,
        *,
        on_event: EventSink | None = None,
    ) -> dict[str, Any]:
        """``rounds`` rounds of local learning and teaching (see the module docstring).

        ``training_data`` is one labelled set (split evenly across the nodes) or each node's
        :class:`NodeShare` by node id."""
        if len(self.nodes) < self.config.min_nodes:
            raise LearningStateError(
                f"need at least {self.config.min_nodes} nodes, the system has {len(self.nodes)}"
            )
        shares = self._shares(training_data)
        emit = on_event or (lambda kind, payload: None)
        for _ in range(rounds):
            self.rounds_done += 1
            for node_id, node in self.nodes.items():
                labelled = shares[node_id].labelled
                if labelled is not None and len(labelled):
                    metrics = await node.learn(labelled)
                    self.total_learning_events += 1
                    emit("learned", {"round": self.rounds_done, "node_id": node_id, **metrics})
            steps = max(n.config.teach_interval for n in self.nodes.values())
            self._steps_since_evaluation += steps
            if self._steps_since_evaluation >= self.config.evaluation_interval:
                self._steps_since_evaluation = 0
                pairs = self.assign_teachers()
                emit("paired", {"round": self.rounds_done, "pairs": pairs})
            for teacher in list(self.nodes.values()):
                for student_id in sorted(teacher.students):
                    student = self.nodes[student_id]
                    metrics = await teacher.teach(student, shares[student_id].everything())
                    self.total_learning_events += 1
                    self.teaching_events += 1
                    emit(
                        "taught",
                        {"round": self.rounds_done, "node_id": student_id, **metrics},
                    )
        return self.get_system_state()

    def get_system_state(self) -> dict[str, Any]:
        return {
            "num_nodes": len(self.nodes),
            "rounds": self.rounds_done,
            "total_learning_events": self.total_learning_events,
            "teaching_events": self.teaching_events,
            "nodes": {
                node_id: {
                    "knowledge_level": node.knowledge_level,
                    "num_students": len(node.students),
                    "num_teachers": len(node.teachers),
                    "students": sorted(node.students),
                    "teachers": sorted(node.teachers),
                }
                for node_id, node in self.nodes.items()
            },
        }

    def _shares(
        self, training_data: LearningData | Mapping[str, NodeShare]
    ) -> dict[str, NodeShare]:
        if isinstance(training_data, LearningData):
            parts = partition(training_data, len(self.nodes), "iid")
            return {
                node_id: NodeShare(part) for node_id, part in zip(self.nodes, parts, strict=True)
            }
        missing = sorted(set(self.nodes) - set(training_data))
        if missing:
            raise InvalidRequestError(f"no training data for nodes {', '.join(missing)}")
        return {node_id: training_data[node_id] for node_id in self.nodes}
