"""Seed 003's ``DistributedLearningSystem``: nodes that learn, and teach whoever needs it.

Each round every node takes one learning event on its own labelled examples. Every
``evaluation_interval`` optimizer steps the system evaluates (:meth:`evaluate`):

- each node's learning rate and batch size go through the configured schedules
  (``schedules.py``: the seed's dynamic learning rate and adaptive batch size);
- with ``auto_scale``, a stall (the best node's validation accuracy gained less than
  ``min_delta`` since the last evaluation) adds a node, up to ``max_nodes``: it starts from
  the best node's weights and learns on its own sample of the system's labelled examples.
  Once adding stops paying (a stall at ``max_nodes``), each stall retires the least useful
  node (the lowest knowledge level) down to ``min_nodes``; the next gain lets it grow
  again. Without that turn a system at its ceiling would swap nodes in and out for ever;
- teachers and students are re-paired (:meth:`DistributedLearningSystem.assign_teachers`):
  a node may teach once its level reaches its ``knowledge_threshold``; a student goes to the
  best teacher that still has room (``max_students``) and whose level beats the student's by
  at least ``margin``; a pairing ends as soon as the teacher no longer beats the student by
  that margin, so relationships follow the measured levels.

Then every teacher teaches each of its students on that student's own examples, labels
hidden where the student has none (distillation needs only the teacher's predictions).

Knowledge levels are validation accuracy, so a node needs validation examples. Nodes built
without them (the seed's ``LearningNode(NodeConfig(node_id=...))``) get a held-out share of
the training data: ``validation_fraction`` of it, the same examples on every call, never
trained on. Every change the system makes is an event: ``learned``, ``taught``, ``paired``,
``lr_changed``, ``batch_changed`` and ``scaled``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from neurons.errors import InvalidRequestError, LearningStateError
from neurons.learning.choices import BATCH_SCHEDULES, LR_SCHEDULES, checked_fields
from neurons.learning.data import LearningData, partition
from neurons.learning.node import LearningNode
from neurons.learning.schedules import make_schedule

__all__ = ["DistributedLearningSystem", "NodeShare", "Spawner", "SystemConfig"]

EventSink = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class SystemConfig:
    """Seed 003's ``learning_system`` block, and how the system evaluates."""

    min_nodes: int = 3
    max_nodes: int = 10
    evaluation_interval: int = 100
    margin: float = 0.02
    auto_scale: bool = False
    learning_rate: float = 0.0  # every node's rate when set; 0: each node's own
    batch_size: int = 0  # every node's batch size when set; 0: each node's own
    lr_schedule: str = "constant"  # or "plateau"
    batch_schedule: str = "constant"  # or "adaptive"
    min_delta: float = 0.005  # a smaller gain in validation accuracy is a stall
    validation_fraction: float = 0.1  # held out for nodes without validation examples
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.min_nodes <= self.max_nodes:
            problems.append("need 1 <= min_nodes <= max_nodes")
        if self.evaluation_interval < 1:
            problems.append("evaluation_interval must be at least 1")
        if not 0 <= self.margin < 1:
            problems.append("margin must be in [0, 1)")
        if not 0 <= self.learning_rate <= 1:
            problems.append("learning_rate must be in [0, 1] (0: each node's own)")
        if self.batch_size < 0:
            problems.append("batch_size must not be negative (0: each node's own)")
        if self.lr_schedule not in LR_SCHEDULES:
            problems.append(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}")
        if self.batch_schedule not in BATCH_SCHEDULES:
            problems.append(f"batch_schedule must be one of {', '.join(BATCH_SCHEDULES)}")
        if not 0 <= self.min_delta < 1:
            problems.append("min_delta must be in [0, 1)")
        if not 0 < self.validation_fraction < 1:
            problems.append("validation_fraction must be in (0, 1)")
        if problems:
            raise InvalidRequestError("invalid system config: " + "; ".join(problems))

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


# Builds the node auto-scaling adds: (its id, the how-many-th addition) -> node and share.
# The same arguments must give the same share, so a resumed run can build it again.
Spawner = Callable[[str, int], tuple[LearningNode, NodeShare]]


class DistributedLearningSystem:
    def __init__(
        self, config: SystemConfig | None = None, *, spawner: Spawner | None = None
    ) -> None:
        self.config = config or SystemConfig()
        self.nodes: dict[str, LearningNode] = {}
        self.total_learning_events = 0
        self.teaching_events = 0
        self.rounds_done = 0
        self._steps_since_evaluation = 0
        # auto-scaling: the best level seen, and the nodes it added (id -> how-many-th)
        self.best_level = -1.0
        self.spawned: dict[str, int] = {}
        self.spawned_shares: dict[str, NodeShare] = {}
        self.spawn_count = 0
        self.growing = True  # adding nodes still paid (see the module docstring)
        self.spawner = spawner
        # the labelled examples an added node samples from (set by start_learning if unset)
        self.pool: LearningData | None = None
        self._originals = 1  # how many nodes shared the pool: an added node takes as much
        delta = self.config.min_delta
        self._lr_schedule = make_schedule(self.config.lr_schedule, "lr", delta)
        self._batch_schedule = make_schedule(self.config.batch_schedule, "batch", delta)
        self._held_out: set[str] = set()  # nodes whose validation the system holds out

    def add_node(self, node: LearningNode) -> None:
        """Add ``node``; the system's ``learning_rate`` and ``batch_size``, when set, become
        the node's."""
        if node.node_id in self.nodes:
            raise InvalidRequestError(f"node {node.node_id} is already in the system")
        if len(self.nodes) >= self.config.max_nodes:
            raise LearningStateError(f"the system is full ({self.config.max_nodes} nodes)")
        if self.config.learning_rate:
            node.config = replace(node.config, learning_rate=self.config.learning_rate)
        if self.config.batch_size:
            node.config = replace(node.config, batch_size=self.config.batch_size)
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
        self.spawned.pop(node_id, None)
        self.spawned_shares.pop(node_id, None)
        for schedule in (self._lr_schedule, self._batch_schedule):
            schedule.forget(node_id)
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
        training_data: LearningData | tuple[Any, Any] | Mapping[str, NodeShare],
        rounds: int = 1,
        *,
        on_event: EventSink | None = None,
    ) -> dict[str, Any]:
        """``rounds`` rounds of local learning and teaching (see the module docstring).

        ``training_data`` is one labelled set (an ``(x, y)`` pair of arrays will do), split
        evenly across the nodes, or each node's :class:`NodeShare` by node id. The nodes
        auto-scaling added learn on their own samples either way."""
        if len(self.nodes) < self.config.min_nodes:
            raise LearningStateError(
                f"need at least {self.config.min_nodes} nodes, the system has {len(self.nodes)}"
            )
        shares = self._shares(_as_learning_data(training_data))
        emit = on_event or (lambda kind, payload: None)
        for _ in range(rounds):
            self.rounds_done += 1
            for node_id, node in list(self.nodes.items()):
                labelled = shares[node_id].labelled
                if labelled is not None and len(labelled):
                    metrics = await node.learn(labelled)
                    self.total_learning_events += 1
                    emit("learned", {"round": self.rounds_done, "node_id": node_id, **metrics})
            if self.after_learning(emit):
                shares.update(self.spawned_shares)
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

    def after_learning(self, emit: EventSink) -> bool:
        """Count a round's optimizer steps; once ``evaluation_interval`` have passed,
        :meth:`evaluate` and answer True (time to re-pair)."""
        steps = max(n.config.teach_interval for n in self.nodes.values())
        self._steps_since_evaluation += steps
        if self._steps_since_evaluation < self.config.evaluation_interval:
            return False
        self._steps_since_evaluation = 0
        self.evaluate(emit)
        return True

    def evaluate(self, emit: EventSink) -> None:
        """The schedules, then auto-scaling (see the module docstring)."""
        where = {"round": self.rounds_done}
        for node in list(self.nodes.values()):
            level, config = node.knowledge_level, node.config
            rate = self._lr_schedule.next_value(node.node_id, level, config.learning_rate)
            if rate != config.learning_rate:
                node.config = replace(node.config, learning_rate=rate)
                change = {"from": config.learning_rate, "to": rate, "knowledge_level": level}
                emit("lr_changed", {**where, "node_id": node.node_id, **change})
            size = int(self._batch_schedule.next_value(node.node_id, level, config.batch_size))
            if size != config.batch_size:
                node.config = replace(node.config, batch_size=size)
                change = {"from": config.batch_size, "to": size, "knowledge_level": level}
                emit("batch_changed", {**where, "node_id": node.node_id, **change})
        if self.config.auto_scale and self.nodes:
            self._scale(emit)

    def spawn(self, node_id: str | None = None, number: int | None = None) -> LearningNode:
        """Add the node auto-scaling adds (``node_id`` and ``number`` given: rebuild that one,
        as a resumed run does)."""
        if number is None:
            self.spawn_count += 1
            number = self.spawn_count
        node_id = node_id or self._free_id(number)
        node, share = (self.spawner or self._spawn_from_pool)(node_id, number)
        self.add_node(node)
        self.spawned[node_id], self.spawned_shares[node_id] = number, share
        self.spawn_count = max(self.spawn_count, number)
        return node

    def set_pool(self, shares: Mapping[str, NodeShare]) -> None:
        """Nodes added by auto-scaling sample from the labelled examples of ``shares``."""
        labelled = [s.labelled for s in shares.values() if s.labelled is not None]
        self._originals = max(1, len(shares))
        if labelled:
            first = labelled[0]
            self.pool = LearningData(
                np.concatenate([p.x for p in labelled]),
                np.concatenate([p.y for p in labelled if p.y is not None]),
                first.num_classes,
                first.sequence_shape,
            )

    def scaling_state(self) -> dict[str, Any]:
        """What a checkpoint keeps of the evaluation's memory (:meth:`restore_scaling`)."""
        return {
            "best_level": self.best_level,
            "spawned": dict(self.spawned),
            "spawn_count": self.spawn_count,
            "growing": self.growing,
            "steps_since_evaluation": self._steps_since_evaluation,
            "lr_schedule": self._lr_schedule.state(),
            "batch_schedule": self._batch_schedule.state(),
        }

    def restore_scaling(self, state: Mapping[str, Any], members: list[str]) -> None:
        """Back to a checkpoint's nodes (``members``) and evaluation memory: added nodes are
        built again, retired ones leave (their weights and levels are restored after)."""
        for node_id, number in dict(state.get("spawned", {})).items():
            if node_id in members and node_id not in self.nodes:
                self.spawn(node_id, int(number))
        for node_id in [n for n in self.nodes if n not in members]:
            self.remove_node(node_id)
        self.best_level = float(state.get("best_level", -1.0))
        self.spawn_count = int(state.get("spawn_count", self.spawn_count))
        self.growing = bool(state.get("growing", True))
        self._steps_since_evaluation = int(state.get("steps_since_evaluation", 0))
        self._lr_schedule.restore(dict(state.get("lr_schedule", {})))
        self._batch_schedule.restore(dict(state.get("batch_schedule", {})))

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
                    "learning_rate": node.config.learning_rate,
                    "batch_size": node.config.batch_size,
                    "added_by_auto_scale": node_id in self.spawned,
                }
                for node_id, node in self.nodes.items()
            },
        }

    # -- internals -------------------------------------------------------------------------

    def _scale(self, emit: EventSink) -> None:
        level = max(n.knowledge_level for n in self.nodes.values())
        if level >= self.best_level + self.config.min_delta:
            self.best_level, self.growing = level, True
            return
        why = (
            f"best validation accuracy {level:.4f} gained less than {self.config.min_delta} "
            f"in {self.config.evaluation_interval} steps"
        )
        event = {"round": self.rounds_done, "reason": why, "best_level": level}
        if self.growing and len(self.nodes) < self.config.max_nodes and self._can_spawn():
            node = self.spawn()
            emit(
                "scaled",
                {**event, "action": "added", "node_id": node.node_id, "nodes": len(self.nodes)},
            )
            return
        self.growing = False
        if len(self.nodes) > self.config.min_nodes:
            weakest = min(reversed(self.nodes.values()), key=lambda n: n.knowledge_level)
            self.remove_node(weakest.node_id)
            emit(
                "scaled",
                {
                    **event,
                    "action": "retired",
                    "node_id": weakest.node_id,
                    "knowledge_level": weakest.knowledge_level,
                    "nodes": len(self.nodes),
                },
            )

    def _can_spawn(self) -> bool:
        return self.spawner is not None or (self.pool is not None and len(self.pool) > 1)

    def _free_id(self, number: int) -> str:
        node_id = f"auto-{number}"
        while node_id in self.nodes:
            number += 1000
            node_id = f"auto-{number}"
        return node_id

    def _spawn_from_pool(self, node_id: str, number: int) -> tuple[LearningNode, NodeShare]:
        """A copy of the best node (config and weights) on a seeded sample of the pool as
        large as an original node's share."""
        if self.pool is None or not self.nodes:
            raise LearningStateError("auto-scaling needs a running system with training data")
        best = max(self.nodes.values(), key=lambda n: n.knowledge_level)
        # The seed and the sample depend on the number only, so a resumed run rebuilds them.
        config = replace(best.config, node_id=node_id, seed=self.config.seed + 7919 * number)
        node = LearningNode(config, best.validation)
        if best.learning_events:
            node.set_parameters(best.get_parameters(), self.pool)
            node.knowledge_level = node.evaluate()  # what it knows already: the best's level
        size = max(1, len(self.pool) // self._originals)
        rng = np.random.default_rng([self.config.seed, number])
        picked = np.sort(rng.choice(len(self.pool), size=size, replace=False))
        return node, NodeShare(self.pool.subset(picked))

    def _shares(
        self, training_data: LearningData | Mapping[str, NodeShare]
    ) -> dict[str, NodeShare]:
        own = [node_id for node_id in self.nodes if node_id not in self.spawned]
        if isinstance(training_data, LearningData):
            train = self._hold_out(training_data, own)
            parts = partition(train, len(own), "iid", self.config.seed)
            shares = {node_id: NodeShare(part) for node_id, part in zip(own, parts, strict=True)}
        else:
            missing = sorted(set(own) - set(training_data))
            if missing:
                raise InvalidRequestError(f"no training data for nodes {', '.join(missing)}")
            shares = {}
            for node_id in own:
                share = training_data[node_id]
                if share.labelled is not None and len(share.labelled) > 1:
                    held = self._hold_out(share.labelled, [node_id])
                    share = replace(share, labelled=held)
                shares[node_id] = share
        if self.pool is None:
            self.set_pool(shares)
        return shares | self.spawned_shares

    def _hold_out(self, data: LearningData, node_ids: list[str]) -> LearningData:
        """``data`` less the validation examples of those ``node_ids`` that have none of
        their own (the same seeded examples every call); they get what was held out."""
        needy = [n for n in node_ids if self.nodes[n].validation is None or n in self._held_out]
        if not needy or data.y is None:
            return data
        order = np.random.default_rng(self.config.seed).permutation(len(data))
        cut = max(1, round(len(data) * self.config.validation_fraction))
        held, kept = data.subset(np.sort(order[:cut])), data.subset(np.sort(order[cut:]))
        for node_id in needy:
            self.nodes[node_id].validation = held
            self._held_out.add(node_id)
        return kept


def _as_learning_data(
    data: LearningData | tuple[Any, Any] | Mapping[str, NodeShare],
) -> LearningData | Mapping[str, NodeShare]:
    """An ``(x, y)`` pair of arrays as labelled data (classes counted from ``y``)."""
    if isinstance(data, tuple):
        if len(data) != 2:
            raise InvalidRequestError("training data as a tuple must be (x, y)")
        x = np.asarray(data[0], dtype=np.float32)
        y = np.asarray(data[1], dtype=np.int64)
        if y.ndim != 1 or len(y) == 0 or y.min() < 0:
            raise InvalidRequestError("y must be a non-empty 1-D array of class indices")
        return LearningData(x.reshape(len(x), -1), y, max(2, int(y.max()) + 1))
    return data
