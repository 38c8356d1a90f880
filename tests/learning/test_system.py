"""The distributed learning system: membership, the teacher/student pairing table, rounds."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest

from neurons.errors import InvalidRequestError, LearningStateError
from neurons.learning.data import load_dataset, partition
from neurons.learning.node import LearningNode, NodeConfig
from neurons.learning.system import DistributedLearningSystem, NodeShare, SystemConfig
from tests.learning import one_torch_thread  # noqa: F401  (autouse)


def _system(
    levels: dict[str, float],
    *,
    margin: float = 0.02,
    max_students: dict[str, int] | None = None,
    threshold: float = 0.8,
) -> DistributedLearningSystem:
    system = DistributedLearningSystem(SystemConfig(min_nodes=1, max_nodes=10, margin=margin))
    for node_id, level in levels.items():
        limit = (max_students or {}).get(node_id, 5)
        node = LearningNode(NodeConfig(node_id, knowledge_threshold=threshold, max_students=limit))
        node.knowledge_level = level
        system.add_node(node)
    return system


def _relationships(system: DistributedLearningSystem) -> list[tuple[str, str]]:
    """(teacher, student) pairs as both sides record them (they must agree)."""
    taught = sorted((t, s.node_id) for s in system.nodes.values() for t in s.teachers)
    teaching = sorted((t.node_id, s) for t in system.nodes.values() for s in t.students)
    assert taught == teaching
    return teaching


@pytest.mark.parametrize(
    ("levels", "options", "pairs"),
    [
        # everyone below the best learns from it
        ({"a": 0.9, "b": 0.5, "c": 0.85}, {}, [("a", "b"), ("a", "c")]),
        # nobody has reached the threshold: nobody teaches, however far ahead
        ({"a": 0.7, "b": 0.1, "c": 0.2}, {}, []),
        ({"a": 0.79, "b": 0.1}, {}, []),
        ({"a": 0.8, "b": 0.1}, {}, [("a", "b")]),
        ({"a": 0.7, "b": 0.1}, {"threshold": 0.6}, [("a", "b")]),
        # the margin: a teacher must beat its student by at least that much
        ({"a": 0.81, "b": 0.80}, {}, []),
        ({"a": 0.81, "b": 0.80}, {"margin": 0.0}, [("a", "b")]),
        ({"a": 0.9, "b": 0.85}, {"margin": 0.1}, []),
        ({"a": 0.95, "b": 0.85}, {"margin": 0.1}, [("a", "b")]),
        # a full teacher sends the weakest students to the next best teacher
        (
            {"a": 0.95, "c": 0.9, "b": 0.5, "d": 0.6},
            {"max_students": {"a": 1}},
            [("a", "b"), ("c", "d")],
        ),
        ({"a": 0.95, "b": 0.5, "d": 0.6}, {"max_students": {"a": 1}}, [("a", "b")]),
        ({"a": 0.95, "b": 0.5, "d": 0.6}, {"max_students": {"a": 0}}, []),
        # the next teacher must still beat the student by the margin
        (
            {"a": 0.95, "c": 0.85, "d": 0.84},
            {"max_students": {"a": 1}},
            [("a", "d")],
        ),
    ],
)
def test_pairing_table(
    levels: dict[str, float], options: dict[str, Any], pairs: list[tuple[str, str]]
) -> None:
    system = _system(levels, **options)
    assert system.assign_teachers() == pairs
    assert _relationships(system) == pairs
    # pairing again with unchanged levels changes nothing
    assert system.assign_teachers() == pairs


def test_relationships_follow_the_levels() -> None:
    system = _system({"a": 0.9, "b": 0.5, "c": 0.6})
    assert system.assign_teachers() == [("a", "b"), ("a", "c")]
    nodes = system.nodes
    # b overtakes its teacher: that pairing ends, and b now teaches a (a still needs no teacher
    # from c, which is behind it)
    nodes["b"].knowledge_level = 0.97
    assert system.assign_teachers() == [("a", "c"), ("b", "a")]
    assert nodes["b"].teachers == set() and nodes["a"].teachers == {"b"}
    # c closes in on a (within the margin): that pairing ends, and c moves to b, the best
    # teacher still ahead of it
    nodes["c"].knowledge_level = 0.89
    assert system.assign_teachers() == [("b", "a"), ("b", "c")]
    # everyone level: no teaching at all
    for node in nodes.values():
        node.knowledge_level = 0.9
    assert system.assign_teachers() == []
    assert all(not n.students and not n.teachers for n in nodes.values())


def test_a_taught_node_keeps_its_teacher_while_it_is_still_ahead() -> None:
    system = _system({"a": 0.9, "b": 0.5, "c": 0.95})
    assert system.assign_teachers() == [("c", "a"), ("c", "b")]
    system.nodes["c"].knowledge_level = 0.93  # still ahead of both by the margin
    assert system.assign_teachers() == [("c", "a"), ("c", "b")]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"min_nodes": 0}, "min_nodes"),
        ({"min_nodes": 4, "max_nodes": 3}, "min_nodes"),
        ({"evaluation_interval": 0}, "evaluation_interval"),
        ({"margin": 1.0}, "margin"),
        ({"margin": -0.1}, "margin"),
    ],
)
def test_system_config_validation(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        SystemConfig(**fields)


def test_system_config_round_trip() -> None:
    config = SystemConfig(min_nodes=2, max_nodes=4, evaluation_interval=50, margin=0.05)
    assert SystemConfig.from_dict(json.loads(config.to_json())) == config
    assert SystemConfig() == SystemConfig(3, 10, 100, 0.02)  # the seed's defaults
    with pytest.raises(InvalidRequestError, match="unknown system config fields"):
        SystemConfig.from_dict({"min_nodes": 1, "nodes": 3})
    with pytest.raises(InvalidRequestError, match="margin must be float"):
        SystemConfig.from_dict({"margin": "0.1"})


def test_min_and_max_nodes() -> None:
    system = DistributedLearningSystem(SystemConfig(min_nodes=2, max_nodes=3))
    train = load_dataset("digits").train
    system.add_node(LearningNode(NodeConfig("a")))
    with pytest.raises(LearningStateError, match="at least 2 nodes"):
        asyncio.run(system.start_learning(train))
    with pytest.raises(InvalidRequestError, match="already in the system"):
        system.add_node(LearningNode(NodeConfig("a")))
    system.add_node(LearningNode(NodeConfig("b")))
    system.add_node(LearningNode(NodeConfig("c")))
    with pytest.raises(LearningStateError, match="full"):
        system.add_node(LearningNode(NodeConfig("d")))
    system.remove_node("c")
    system.add_node(LearningNode(NodeConfig("d")))
    assert list(system.nodes) == ["a", "b", "d"]


def test_remove_node_drops_its_relationships() -> None:
    system = _system({"a": 0.95, "b": 0.5, "c": 0.9}, max_students={"a": 1})
    assert system.assign_teachers() == [("a", "b")]
    # b catches up and c falls back: b keeps its teacher and takes c as its own student
    system.nodes["b"].knowledge_level, system.nodes["c"].knowledge_level = 0.9, 0.5
    assert system.assign_teachers() == [("a", "b"), ("b", "c")]
    removed = system.remove_node("b")
    assert removed.node_id == "b"
    assert not removed.students and not removed.teachers
    for node in system.nodes.values():
        assert "b" not in node.students and "b" not in node.teachers
    _relationships(system)
    with pytest.raises(InvalidRequestError, match="no node"):
        system.remove_node("b")


def test_remove_a_teacher_and_a_student() -> None:
    system = _system({"a": 0.95, "b": 0.5, "c": 0.6})
    system.assign_teachers()
    system.remove_node("b")  # a student
    assert system.nodes["a"].students == {"c"}
    system.remove_node("a")  # a teacher
    assert system.nodes["c"].teachers == set()
    assert system.assign_teachers() == []


def test_start_learning_state() -> None:
    dataset = load_dataset("digits")
    system = DistributedLearningSystem(
        SystemConfig(min_nodes=3, max_nodes=3, evaluation_interval=30)
    )
    for index in range(3):
        config = NodeConfig(
            f"node-{index}",
            hidden_size=16,
            learning_rate=1e-2,
            teach_interval=30,
            knowledge_threshold=0.5,
            seed=index,
        )
        system.add_node(LearningNode(config, dataset.validation))
    parts = partition(dataset.train, 3, "iid")
    # node-0 holds all its labels; the others a handful, and the rest unlabelled
    shares = {"node-0": NodeShare(parts[0])}
    for index in (1, 2):
        part = parts[index]
        shares[f"node-{index}"] = NodeShare(
            part.subset(np.arange(10)), part.subset(np.arange(10, len(part))).unlabelled()
        )
    events: list[tuple[str, dict[str, Any]]] = []
    state = asyncio.run(
        system.start_learning(shares, rounds=2, on_event=lambda k, p: events.append((k, p)))
    )
    assert {"num_nodes", "total_learning_events", "teaching_events", "nodes"} <= set(state)
    assert state["num_nodes"] == 3 and state["rounds"] == 2
    for node_id, node in state["nodes"].items():
        assert {"knowledge_level", "num_students", "num_teachers"} <= set(node)
        assert node["knowledge_level"] == system.nodes[node_id].knowledge_level
        assert node["num_students"] == len(node["students"])
        assert node["num_teachers"] == len(node["teachers"])
    kinds = [kind for kind, _ in events]
    assert kinds.count("learned") == 6 and kinds.count("paired") == 2
    assert state["teaching_events"] == kinds.count("taught") > 0
    assert state["total_learning_events"] == 6 + state["teaching_events"]
    # node-0 learned from all its labels and teaches the others on their unlabelled examples
    assert state["nodes"]["node-0"]["students"] == ["node-1", "node-2"]
    taught = [payload for kind, payload in events if kind == "taught"]
    assert {p["teacher"] for p in taught} == {"node-0"}
    assert all(p["samples"] == len(shares[p["node_id"]].everything()) for p in taught)
    json.dumps(state)


def test_start_learning_splits_one_labelled_set() -> None:
    dataset = load_dataset("digits")
    system = DistributedLearningSystem(SystemConfig(min_nodes=2, evaluation_interval=1000))
    for name in ("a", "b"):
        system.add_node(LearningNode(NodeConfig(name, hidden_size=8, teach_interval=5)))
    events: list[tuple[str, dict[str, Any]]] = []
    state = asyncio.run(
        system.start_learning(dataset.train, on_event=lambda k, p: events.append((k, p)))
    )
    assert state["total_learning_events"] == 2 and state["teaching_events"] == 0
    samples = sorted(p["samples"] for k, p in events if k == "learned")
    # 1257 training examples: 126 held out as the nodes' validation, the rest halved
    assert samples == [565, 566]
    assert system.nodes["a"].validation is system.nodes["b"].validation
    assert len(system.nodes["a"].validation or ()) == 126
    assert "paired" not in [k for k, _ in events]  # 5 steps < evaluation_interval


def test_start_learning_needs_every_share() -> None:
    system = _system({"a": 0.0, "b": 0.0})
    train = load_dataset("digits").train
    with pytest.raises(InvalidRequestError, match="no training data for nodes b"):
        asyncio.run(system.start_learning({"a": NodeShare(train)}))
    with pytest.raises(InvalidRequestError, match="needs some examples"):
        NodeShare(None).everything()
