"""Seed 003's auto-scaling, dynamic learning rate and adaptive batch size: the schedules'
contract, the system's scaling decisions as events, and a run that scales, stops and resumes
to exactly the uninterrupted result (the added node rebuilt from the checkpoint)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neurons.errors import InvalidRequestError
from neurons.learning.data import load_dataset
from neurons.learning.node import LearningNode, NodeConfig
from neurons.learning.runs import RunConfig, execute
from neurons.learning.schedules import AdaptiveBatch, Constant, PlateauLR, make_schedule
from neurons.learning.system import DistributedLearningSystem, SystemConfig

Events = list[tuple[str, dict[str, Any]]]


def test_plateau_lr_halves_after_patience_down_to_its_floor() -> None:
    schedule = PlateauLR(patience=2, min_delta=0.01, factor=0.5, floor=0.25)
    rates = []
    rate = 0.1
    for level in (0.5, 0.6, 0.605, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.7):
        rate = schedule.next_value("a", level, rate)
        rates.append(rate)
    # gains, then two stalls halve it, two more halve it to the floor (0.025), where it stays
    assert rates == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.025, 0.025, 0.025])
    assert schedule.next_value("b", 0.1, 0.3) == 0.3  # every node has its own memory


def test_adaptive_batch_doubles_up_to_its_ceiling_and_constant_never_moves() -> None:
    schedule = AdaptiveBatch(patience=1, ceiling=100)
    sizes = []
    size = 32.0
    for level in (0.5, 0.5, 0.5, 0.5):
        size = schedule.next_value("a", level, size)
        sizes.append(size)
    assert sizes == [32, 64, 100, 100]
    assert Constant().next_value("a", 0.0, 7.0) == 7.0
    with pytest.raises(InvalidRequestError, match="lr_schedule must be one of constant, plateau"):
        make_schedule("adaptive", "lr")


def test_schedule_memory_survives_a_checkpoint() -> None:
    schedule = PlateauLR(patience=2)
    schedule.next_value("a", 0.5, 0.1)
    schedule.next_value("a", 0.5, 0.1)  # one stall of two
    again = PlateauLR(patience=2)
    again.restore(schedule.state())
    assert again.next_value("a", 0.5, 0.1) == 0.05  # the second stall halves it
    again.forget("a")
    assert again.next_value("a", 0.5, 0.1) == 0.1


def _system(**fields: Any) -> DistributedLearningSystem:
    system = DistributedLearningSystem(SystemConfig(**fields))
    for name in ("a", "b"):
        system.add_node(LearningNode(NodeConfig(name, hidden_size=8, teach_interval=5)))
    return system


def test_a_stall_adds_nodes_until_it_stops_paying_then_retires_the_weakest() -> None:
    # min_delta 0.99: every evaluation after the first is a stall
    system = _system(
        min_nodes=2, max_nodes=3, evaluation_interval=5, auto_scale=True, min_delta=0.99
    )
    train = load_dataset("digits").train
    events: Events = []
    asyncio.run(system.start_learning(train, rounds=2, on_event=lambda k, p: events.append((k, p))))
    # an added node learns from its own sample, as large as an original node's share
    share = system.spawned_shares["auto-1"].labelled
    assert share is not None and len(share) == len(system.pool or ()) // 2
    assert system.get_system_state()["nodes"]["auto-1"]["added_by_auto_scale"]
    asyncio.run(system.start_learning(train, rounds=3, on_event=lambda k, p: events.append((k, p))))
    scaled = [p for kind, p in events if kind == "scaled"]
    # at max_nodes the stall turns it: it retires one and, at min_nodes, stops
    assert [(p["round"], p["action"], p["node_id"], p["nodes"]) for p in scaled][:1] == [
        (2, "added", "auto-1", 3)
    ]
    assert [(p["round"], p["action"], p["nodes"]) for p in scaled] == [
        (2, "added", 3),
        (3, "retired", 2),
    ]
    assert all("gained less than 0.99 in 5 steps" in p["reason"] for p in scaled)
    # the retired node was the one with the lowest knowledge level at that moment
    assert round(scaled[1]["knowledge_level"], 4) <= min(
        p["knowledge_level"] for k, p in events if k == "learned" and p["round"] == 3
    )
    assert system.get_system_state()["num_nodes"] == 2 and not system.growing


def test_an_added_node_starts_from_the_best_nodes_weights() -> None:
    system = _system(min_nodes=2, max_nodes=3, evaluation_interval=5, auto_scale=True)
    asyncio.run(system.start_learning(load_dataset("digits").train, rounds=1))
    best = max(system.nodes.values(), key=lambda n: n.knowledge_level)
    node = system.spawn()
    for mine, theirs in zip(node.get_parameters(), best.get_parameters(), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert node.validation is best.validation
    assert node.knowledge_level == best.knowledge_level  # it knows what the best knows


def test_without_auto_scale_nothing_scales_and_no_gain_is_no_stall() -> None:
    system = _system(min_nodes=2, max_nodes=3, evaluation_interval=5, min_delta=0.99)
    events: Events = []
    asyncio.run(
        system.start_learning(
            load_dataset("digits").train, rounds=3, on_event=lambda k, p: events.append((k, p))
        )
    )
    assert "scaled" not in [kind for kind, _ in events] and len(system.nodes) == 2


def test_schedules_change_every_stalled_nodes_rate_and_batch_as_events() -> None:
    system = _system(
        min_nodes=2,
        evaluation_interval=5,
        lr_schedule="plateau",
        batch_schedule="adaptive",
        min_delta=0.99,
    )
    events: Events = []
    asyncio.run(
        system.start_learning(
            load_dataset("digits").train, rounds=3, on_event=lambda k, p: events.append((k, p))
        )
    )
    rates = [(p["round"], p["node_id"], p["from"], p["to"]) for k, p in events if k == "lr_changed"]
    sizes = [(p["round"], p["node_id"], p["to"]) for k, p in events if k == "batch_changed"]
    assert rates == [
        (2, "a", 0.001, 0.0005),
        (2, "b", 0.001, 0.0005),
        (3, "a", 0.0005, 0.00025),
        (3, "b", 0.0005, 0.00025),
    ]
    assert sizes == [(2, "a", 64), (2, "b", 64), (3, "a", 128), (3, "b", 128)]
    assert system.nodes["a"].config.learning_rate == 0.00025
    assert system.get_system_state()["nodes"]["b"]["batch_size"] == 128


def test_the_systems_rate_and_batch_size_become_every_nodes() -> None:
    system = _system(min_nodes=2, learning_rate=0.01, batch_size=16)
    assert {(n.config.learning_rate, n.config.batch_size) for n in system.nodes.values()} == {
        (0.01, 16)
    }


def test_a_run_that_scales_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    config = RunConfig(
        mode="ensemble",
        partition="skewed",
        nodes=3,
        rounds=6,
        local_steps=10,
        auto_scale=True,
        min_nodes=2,
        max_nodes=4,
        lr_schedule="plateau",
        batch_schedule="adaptive",
    )
    whole: Events = []
    uninterrupted = execute(config, lambda k, p: whole.append((k, p)), checkpoint=tmp_path / "a")
    scaled = [p["node_id"] for kind, p in whole if kind == "scaled"]
    assert scaled, "the skewed ensemble stalls and scales"
    assert {"lr_changed", "batch_changed"} <= {kind for kind, _ in whole}
    cut: Events = []
    execute(replace(config, rounds=3), lambda k, p: cut.append((k, p)), checkpoint=tmp_path / "b")
    resumed = execute(config, lambda k, p: cut.append((k, p)), checkpoint=tmp_path / "b")
    assert ("resumed", {"round": 3}) in cut
    assert resumed["members"] == uninterrupted["members"]  # the added node is rebuilt
    assert resumed["test_accuracy"] == uninterrupted["test_accuracy"]
    assert set(scaled) <= set(uninterrupted["members"]) | {
        p["node_id"] for kind, p in whole if kind == "scaled" and p["action"] == "retired"
    }


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"auto_scale": True, "mode": "fedavg"}, "apply to the distill and ensemble modes"),
        ({"lr_schedule": "cosine", "mode": "distill"}, "lr_schedule must be one of"),
        ({"auto_scale": True, "mode": "distill", "nodes": 12}, "min_nodes <= nodes <= max_nodes"),
        ({"min_nodes": 5, "max_nodes": 4}, "min_nodes <= max_nodes"),
    ],
)
def test_run_config_refuses_scaling_it_cannot_do(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        RunConfig(**fields)
