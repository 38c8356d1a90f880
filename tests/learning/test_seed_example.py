"""Seed 003's distributed-learning examples, run as the seed writes them: only the import
paths are adapted (``src.integration.ml.distributed_learning`` is ``neurons.learning``) and
digits is the ``training_data`` the seed leaves undefined. No node is given validation
examples, as in the seed, so the system holds them out itself and the levels are real."""

from __future__ import annotations

import asyncio

import numpy as np
from sklearn.datasets import load_digits

from neurons.learning import DistributedLearningSystem, LearningNode, NodeConfig
from neurons.learning.data import load_dataset

training_data = load_dataset("digits").train


def test_distributed_learning_setup_and_knowledge_transfer(capsys: object) -> None:
    # -- "Distributed Learning Setup", verbatim -------------------------------------------
    # Create learning nodes
    node1 = LearningNode(NodeConfig(node_id="node1"))
    node2 = LearningNode(NodeConfig(node_id="node2"))
    node3 = LearningNode(NodeConfig(node_id="node3"))

    # Add nodes to the system
    learning_system = DistributedLearningSystem()
    learning_system.add_node(node1)
    learning_system.add_node(node2)
    learning_system.add_node(node3)

    async def main() -> None:
        # Start distributed learning
        await learning_system.start_learning(training_data)

    asyncio.run(main())

    # -- "Knowledge Transfer", verbatim ---------------------------------------------------
    # Get node states
    node_states = learning_system.get_system_state()

    # Check learning progress
    for node_id, state in node_states["nodes"].items():
        print(f"Node {node_id}:")
        print(f"  Knowledge level: {state['knowledge_level']:.2f}")
        print(f"  Students: {state['num_students']}")
        print(f"  Teachers: {state['num_teachers']}")

    levels = [s["knowledge_level"] for s in node_states["nodes"].values()]
    assert max(levels) > 0.8, levels
    assert node_states["teaching_events"] > 0
    students = sum(s["num_students"] for s in node_states["nodes"].values())
    teachers = sum(s["num_teachers"] for s in node_states["nodes"].values())
    assert students == teachers == node_states["teaching_events"]
    # the held-out examples are the same for every node, and nobody trained on them
    held = node1.validation
    assert held is not None and node2.validation is held and node3.validation is held
    assert len(held) == round(len(training_data) * 0.1)
    learned = sum(e["samples"] for n in (node1, node2, node3) for e in n.learning_history[:1])
    assert learned == len(training_data) - len(held)


def test_the_example_workflow_with_arrays_as_training_data() -> None:
    # -- "Example Workflow", verbatim but for its endless monitoring loop --------------------
    training_data = load_digits(return_X_y=True)  # plain (x, y) arrays

    # Create system
    system = DistributedLearningSystem()

    # Initialize nodes
    nodes = [
        LearningNode(NodeConfig(node_id=f"node{i}", learning_rate=0.001, max_students=5))
        for i in range(5)
    ]

    # Add nodes to system
    for node in nodes:
        system.add_node(node)

    totals: list[int] = []

    # Start learning
    async def main() -> None:
        await system.start_learning(training_data)

        # Monitor progress
        for _ in range(1):  # the seed loops forever, printing every minute
            state = system.get_system_state()
            print(f"Total learning events: {state['total_learning_events']}")
            totals.append(state["total_learning_events"])

    # Run system
    asyncio.run(main())

    state = system.get_system_state()
    assert totals == [5 + state["teaching_events"]]
    assert max(n["knowledge_level"] for n in state["nodes"].values()) > 0.8
    assert np.isclose(
        sum(n["num_students"] for n in state["nodes"].values()), state["teaching_events"]
    )
