"""The learning node: config validation, teaching rules, measured knowledge, distillation."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from typing import Any

import numpy as np
import pytest

from neurons.errors import InvalidRequestError, LearningStateError
from neurons.learning.data import Dataset, LearningData, load_dataset
from neurons.learning.node import LearningNode, NodeConfig
from tests.learning import one_torch_thread  # noqa: F401  (autouse)

FAST: dict[str, Any] = {"hidden_size": 16, "learning_rate": 1e-2, "teach_interval": 20}


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


def test_node_config_defaults_are_the_seed() -> None:
    config = NodeConfig("n")
    assert (config.model_type, config.learning_rate, config.knowledge_threshold) == (
        "mlp",
        0.001,
        0.8,
    )
    assert (config.teach_interval, config.max_students) == (100, 5)
    assert (config.distillation_temperature, config.collaboration_weight) == (2.0, 0.3)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("node_id", "", "node_id"),
        ("node_id", "x" * 65, "node_id"),
        ("model_type", "cnn", "model_type"),
        ("learning_rate", 0.0, "learning_rate"),
        ("learning_rate", 1.5, "learning_rate"),
        ("knowledge_threshold", -0.1, "knowledge_threshold"),
        ("knowledge_threshold", 1.01, "knowledge_threshold"),
        ("teach_interval", 0, "teach_interval"),
        ("max_students", -1, "max_students"),
        ("distillation_temperature", 0.0, "distillation_temperature"),
        ("collaboration_weight", 1.2, "collaboration_weight"),
        ("distillation_weight", -0.5, "distillation_weight"),
        ("batch_size", 0, "batch_size"),
    ],
)
def test_node_config_rejects(field: str, value: Any, message: str) -> None:
    good = asdict(NodeConfig("n"))
    with pytest.raises(InvalidRequestError, match=message):
        NodeConfig(**{**good, field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("node_id", "x" * 64),
        ("learning_rate", 1.0),
        ("knowledge_threshold", 0.0),
        ("knowledge_threshold", 1.0),
        ("max_students", 0),
        ("distillation_weight", 1.0),
        ("model_type", "transformer"),
    ],
)
def test_node_config_accepts_the_edges(field: str, value: Any) -> None:
    assert getattr(NodeConfig(**{**asdict(NodeConfig("n")), field: value}), field) == value


def test_node_config_json_round_trip() -> None:
    config = NodeConfig("node-7", model_type="transformer", max_students=2, seed=9)
    text = config.to_json()
    assert json.loads(text)["node_id"] == "node-7"
    assert NodeConfig.from_json(text) == config
    assert NodeConfig.from_dict(json.loads(text)) == config
    with pytest.raises(InvalidRequestError, match="unknown node config fields: colour"):
        NodeConfig.from_dict({"node_id": "n", "colour": "blue"})
    with pytest.raises(InvalidRequestError, match="max_students must be int"):
        NodeConfig.from_dict({"node_id": "n", "max_students": "5"})
    with pytest.raises(InvalidRequestError, match="teach_interval must be int"):
        NodeConfig.from_dict({"node_id": "n", "teach_interval": True})
    assert NodeConfig.from_dict({"node_id": "n", "learning_rate": 1}).learning_rate == 1


def _node(name: str, validation: LearningData | None, **overrides: Any) -> LearningNode:
    return LearningNode(NodeConfig(name, **{**FAST, **overrides}), validation)


def test_teach_respects_max_students(digits: Dataset) -> None:
    async def run() -> None:
        teacher = _node("teacher", digits.validation, max_students=2)
        students = [_node(f"s{i}", digits.validation, seed=i) for i in range(3)]
        with pytest.raises(LearningStateError, match="learned nothing"):
            await teacher.teach(students[0], digits.train)
        await teacher.learn(digits.train)
        with pytest.raises(LearningStateError, match="cannot teach itself"):
            await teacher.teach(teacher, digits.train)
        share = digits.train.subset(np.arange(100)).unlabelled()
        for student in students[:2]:
            await teacher.teach(student, share)
        with pytest.raises(LearningStateError, match="already teaches 2 students"):
            await teacher.teach(students[2], share)
        # a student already taken on may keep learning
        await teacher.teach(students[0], share)
        assert teacher.students == {"s0", "s1"}
        assert students[0].teachers == {"teacher"} and not students[2].teachers
        assert teacher.teaching_events == 3 and students[0].learning_events == 2
        # releasing a student frees the place
        teacher.release_student(students[1])
        assert not students[1].teachers
        await teacher.teach(students[2], share)
        assert teacher.students == {"s0", "s2"}

    asyncio.run(run())


def test_max_students_zero_never_teaches(digits: Dataset) -> None:
    async def run() -> None:
        teacher = _node("teacher", digits.validation, max_students=0)
        await teacher.learn(digits.train)
        with pytest.raises(LearningStateError):
            await teacher.teach(_node("s", digits.validation), digits.train)

    asyncio.run(run())


def test_knowledge_level_is_measured_validation_accuracy(digits: Dataset) -> None:
    async def run() -> None:
        node = _node("n", digits.validation)
        assert node.knowledge_level == 0.0
        levels = []
        for _ in range(3):
            event = await node.learn(digits.train)
            probabilities = await node.predict(digits.validation)
            assert digits.validation.y is not None
            measured = float((probabilities.argmax(axis=1) == digits.validation.y).mean())
            assert node.knowledge_level == measured
            assert event["knowledge_level"] == round(measured, 4)
            levels.append(node.knowledge_level)
        assert levels[-1] > 0.8
        assert node.learning_history[0]["knowledge_before"] == 0.0
        assert node.learning_history[1]["knowledge_before"] == round(levels[0], 4)
        # without a validation set there is nothing to measure
        blind = _node("blind", None)
        await blind.learn(digits.train)
        assert blind.knowledge_level == 0.0

    asyncio.run(run())


def test_knowledge_state_and_predictions(digits: Dataset) -> None:
    async def run() -> None:
        teacher, student = _node("t", digits.validation), _node("s", digits.validation, seed=1)
        await teacher.learn(digits.train)
        await teacher.teach(student, digits.train.unlabelled())
        state = student.get_knowledge_state()
        assert set(state) == {
            "node_id",
            "knowledge_level",
            "learning_history",
            "students",
            "teachers",
            "learning_events",
            "teaching_events",
        }
        assert state["node_id"] == "s" and state["teachers"] == ["t"]
        assert state["learning_events"] == 1 and state["learning_history"][0]["teacher"] == "t"
        assert state["learning_history"][0]["event"] == "distillation"
        assert teacher.get_knowledge_state()["students"] == ["s"]
        assert teacher.get_knowledge_state()["teaching_events"] == 1
        json.dumps(state)  # the state is plain JSON
        probabilities = await student.predict(digits.test)
        assert probabilities.shape == (len(digits.test), 10)
        assert np.allclose(probabilities.sum(axis=1), 1.0)

    asyncio.run(run())


def test_learning_history_is_bounded(digits: Dataset) -> None:
    async def run() -> None:
        node = _node("n", None, teach_interval=1)
        tiny = digits.train.subset(np.arange(8))
        for _ in range(105):
            await node.learn(tiny)
        assert len(node.learning_history) == 100 and node.learning_events == 105
        assert len(node.get_knowledge_state()["learning_history"]) == 10

    asyncio.run(run())


def test_bad_learning_requests(digits: Dataset) -> None:
    async def run() -> None:
        node = _node("n", digits.validation)
        with pytest.raises(InvalidRequestError, match="unlabelled"):
            await node.learn(digits.train.unlabelled())
        with pytest.raises(LearningStateError, match="at least one other peer"):
            await node.collaborate([node], digits.train)
        with pytest.raises(LearningStateError, match="no model"):
            node.get_parameters()
        await node.learn(digits.train)
        iris = load_dataset("iris").train
        with pytest.raises(InvalidRequestError, match="was built for"):
            await node.learn(iris)

    asyncio.run(run())


def test_collaborate_weights_peers_by_knowledge(digits: Dataset) -> None:
    async def run() -> None:
        nodes = [_node(f"n{i}", digits.validation, seed=i) for i in range(3)]
        for i, node in enumerate(nodes):
            await node.learn(digits.train.subset(np.arange(i * 50, i * 50 + 200)))
        metrics = await nodes[0].collaborate(nodes, digits.train.subset(np.arange(300)))
        assert metrics["event"] == "collaboration" and metrics["peers"] == ["n1", "n2"]
        total = nodes[1].knowledge_level + nodes[2].knowledge_level
        assert metrics["peer_weights"] == [
            round(nodes[1].knowledge_level / total, 4),
            round(nodes[2].knowledge_level / total, 4),
        ]

    asyncio.run(run())


def test_parameters_move_between_nodes(digits: Dataset) -> None:
    async def run() -> None:
        source, target = _node("a", digits.validation), _node("b", digits.validation, seed=5)
        await source.learn(digits.train)
        target.set_parameters(source.get_parameters(), digits.train)
        assert target.evaluate() == source.evaluate() == source.knowledge_level
        assert np.array_equal(await target.logits(digits.test), await source.logits(digits.test))

    asyncio.run(run())


def test_soft_only_distillation_beats_training_on_few_labels(digits: Dataset) -> None:
    """The robust claim from the ML notes: a student taught by a teacher's soft targets on an
    unlabelled transfer set beats the same student trained on the few labels it has."""

    async def run() -> tuple[float, float, float]:
        settings: dict[str, Any] = {"hidden_size": 32, "teach_interval": 200}
        teacher = _node("teacher", digits.validation, **settings)
        await teacher.learn(digits.train)
        rng = np.random.default_rng(0)
        labelled = np.sort(rng.permutation(len(digits.train))[:30])  # about 2% of the labels
        few = digits.train.subset(labelled)
        rest = np.setdiff1d(np.arange(len(digits.train)), labelled)
        transfer = digits.train.subset(rest).unlabelled()
        scratch = _node("scratch", digits.validation, seed=1, **settings)
        await scratch.learn(few)
        student = _node("student", digits.validation, seed=1, distillation_weight=1.0, **settings)
        await teacher.teach(student, transfer)
        return (
            teacher.evaluate(digits.test),
            student.evaluate(digits.test),
            scratch.evaluate(digits.test),
        )

    teacher, student, scratch = asyncio.run(run())
    assert teacher > 0.9
    assert student > scratch + 0.1, (student, scratch)
    assert student > teacher - 0.05
