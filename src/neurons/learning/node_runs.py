"""The node-based run modes (``distill`` and ``ensemble``): setting the nodes up, one round of
each, and the snapshot a checkpoint holds. ``runs.py`` describes what the modes mean."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from neurons.learning.data import Dataset, LearningData, partition
from neurons.learning.ensemble import ensemble_accuracy, knowledge_weights
from neurons.learning.node import LearningNode
from neurons.learning.system import DistributedLearningSystem, NodeShare, SystemConfig

if TYPE_CHECKING:
    from neurons.learning.runs import Emit, RunConfig

__all__ = ["NodeSetup", "distill_round", "ensemble_round", "setup_nodes"]


@dataclass
class NodeSetup:
    system: DistributedLearningSystem
    shares: dict[str, NodeShare]
    partition: str  # how the training split was cut, so validation is cut the same way
    seed: int
    # distill only: each student's scratch twin (same model and labels, never taught)
    twins: dict[str, LearningNode] = field(default_factory=dict)

    def every_node(self) -> dict[str, LearningNode]:
        nodes = dict(self.system.nodes)
        nodes.update({f"{key}~scratch": twin for key, twin in self.twins.items()})
        return nodes

    def snapshot(self) -> tuple[dict[str, list[np.ndarray]], dict[str, Any]]:
        arrays, state = {}, {}
        for key, node in self.every_node().items():
            if node.learning_events:
                arrays[key] = node.get_parameters()
            state[key] = {
                "learning_rate": node.config.learning_rate,
                "batch_size": node.config.batch_size,
                "knowledge_level": node.knowledge_level,
                "learning_events": node.learning_events,
                "teaching_events": node.teaching_events,
                "students": sorted(node.students),
                "teachers": sorted(node.teachers),
            }
        system = self.system
        return arrays, {
            "nodes": state,
            "members": list(system.nodes),
            "scaling": system.scaling_state(),
            "system": {
                "total_learning_events": system.total_learning_events,
                "teaching_events": system.teaching_events,
                "rounds_done": system.rounds_done,
            },
        }

    def restore(
        self, arrays: dict[str, list[np.ndarray]], state: dict[str, Any], dataset: Dataset
    ) -> None:
        members = state.get("members", list(self.system.nodes))
        self.system.restore_scaling(state.get("scaling", {}), members)
        for key, node in self.every_node().items():
            if key in arrays:
                node.set_parameters(arrays[key], dataset.train)
            saved = state["nodes"].get(key, {})
            node.config = replace(
                node.config,
                learning_rate=float(saved.get("learning_rate", node.config.learning_rate)),
                batch_size=int(saved.get("batch_size", node.config.batch_size)),
            )
            node.knowledge_level = float(saved.get("knowledge_level", 0.0))
            node.learning_events = int(saved.get("learning_events", 0))
            node.teaching_events = int(saved.get("teaching_events", 0))
            node.students = set(saved.get("students", []))
            node.teachers = set(saved.get("teachers", []))
        for name, value in state["system"].items():
            setattr(self.system, name, value)


def setup_nodes(config: RunConfig, dataset: Dataset) -> NodeSetup:
    parts = partition(dataset.train, config.nodes, config.partition, config.seed)
    validation = dataset.validation
    system = DistributedLearningSystem(
        SystemConfig(
            min_nodes=min(config.min_nodes, config.nodes),
            max_nodes=max(config.nodes, config.max_nodes),
            evaluation_interval=config.steps_between_evaluations,
            auto_scale=config.auto_scale,
            lr_schedule=config.lr_schedule,
            batch_schedule=config.batch_schedule,
            seed=config.seed,
        )
    )
    shares: dict[str, NodeShare] = {}
    twins: dict[str, LearningNode] = {}
    rng = np.random.default_rng(config.seed)
    for index, part in enumerate(parts):
        node_id = f"node-{index}"
        if config.mode == "distill" and index > 0:
            shares[node_id] = _few_labels(part, config.labelled_fraction, rng)
            twin = LearningNode(config.node_config(node_id, seed=config.seed + index), validation)
            twins[node_id] = twin
        else:
            shares[node_id] = NodeShare(part)
        node = LearningNode(config.node_config(node_id, seed=config.seed + index), validation)
        system.add_node(node)
    system.set_pool(shares)
    return NodeSetup(system, shares, config.partition, config.seed, twins)


def _few_labels(part: LearningData, fraction: float, rng: np.random.Generator) -> NodeShare:
    """``fraction`` of ``part`` keeps its labels (at least one example); the rest hides them."""
    keep = max(1, round(len(part) * fraction))
    order = rng.permutation(len(part))
    return NodeShare(
        part.subset(np.sort(order[:keep])), part.subset(np.sort(order[keep:])).unlabelled()
    )


async def distill_round(setup: NodeSetup, dataset: Dataset, emit: Emit) -> dict[str, Any]:
    await setup.system.start_learning(setup.shares, rounds=1, on_event=emit)
    for node_id, twin in setup.twins.items():
        if node_id not in setup.system.nodes:
            continue  # its student was retired by auto-scaling
        labelled = setup.shares[node_id].labelled
        if labelled is not None:
            await twin.learn(labelled)
    twins = {k: twin for k, twin in setup.twins.items() if k in setup.system.nodes}
    students = {k: setup.system.nodes[k].evaluate(dataset.test) for k in twins}
    scratch = {k: twin.evaluate(dataset.test) for k, twin in twins.items()}
    state = setup.system.get_system_state()
    return {
        "test_accuracy": max(n.evaluate(dataset.test) for n in setup.system.nodes.values()),
        # None once auto-scaling has retired every student
        "student_accuracy": float(np.mean(list(students.values()))) if students else None,
        "scratch_accuracy": float(np.mean(list(scratch.values()))) if scratch else None,
        "nodes": len(setup.system.nodes),
        "students": students,
        "scratch": scratch,
        "teaching_events": state["teaching_events"],
        "pairs": [
            [teacher, student]
            for teacher, node in state["nodes"].items()
            for student in node["students"]
        ],
        "knowledge": {k: round(v["knowledge_level"], 4) for k, v in state["nodes"].items()},
    }


async def ensemble_round(setup: NodeSetup, dataset: Dataset, emit: Emit) -> dict[str, Any]:
    system = setup.system
    system.rounds_done += 1
    nodes = list(system.nodes.values())
    shares = setup.shares | system.spawned_shares
    first = all(node.learning_events == 0 for node in nodes)
    for node in nodes:
        labelled = shares[node.node_id].labelled
        assert labelled is not None  # ensemble shares always carry labels
        if first or node.config.collaboration_weight == 0:
            metrics = await node.learn(labelled)
        else:
            metrics = await node.collaborate(nodes, labelled)
        system.total_learning_events += 1
        emit("learned", {"round": system.rounds_done, "node_id": node.node_id, **metrics})
    system.after_learning(emit)
    nodes = list(system.nodes.values())
    test = dataset.test
    assert test.y is not None
    predictions = [await node.predict(test) for node in nodes]
    weights = knowledge_weights([node.knowledge_level for node in nodes])
    members = {node.node_id: node.evaluate(test) for node in nodes}
    ensemble = ensemble_accuracy(predictions, weights, test.y)
    return {
        "test_accuracy": ensemble,
        "ensemble_accuracy": ensemble,
        "best_member_accuracy": max(members.values()),
        "nodes": len(nodes),
        "members": members,
        "weights": {n.node_id: round(w, 4) for n, w in zip(nodes, weights, strict=True)},
        "cross_validation": _cross_validation(setup, nodes, dataset),
    }


def _cross_validation(
    setup: NodeSetup, nodes: list[LearningNode], dataset: Dataset
) -> dict[str, dict[str, float]]:
    """Each node's model scored on every node's share of the validation split."""
    shares = partition(dataset.validation, len(nodes), setup.partition, setup.seed)
    return {
        node.node_id: {
            other.node_id: round(node.evaluate(share), 4)
            for other, share in zip(nodes, shares, strict=True)
        }
        for node in nodes
    }
