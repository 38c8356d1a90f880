"""Seed 003's keys as RunConfig fields: every spelling resolved, values read and checked,
nested sections flattened, and a refused run naming the key to blame."""

from __future__ import annotations

import doctest
import subprocess
import sys
from dataclasses import fields
from typing import Any

import pytest

import neurons.learning.seed_keys
from neurons.errors import LearningKeyError
from neurons.learning.runs import RunConfig
from neurons.learning.seed_keys import (
    RUN_FIELDS,
    SEED_KEYS,
    Entry,
    RunRequest,
    build_run_config,
    check_defaults,
    flatten,
    parse_assignment,
    resolve,
)

# The seventeen keys, in the seed's own spelling, with the field each sets.
SEVENTEEN = {
    "distributed_learning.node_config.learning_rate": "node_learning_rate",
    "distributed_learning.node_config.knowledge_threshold": "knowledge_threshold",
    "distributed_learning.node_config.teach_interval": "local_steps",
    "distributed_learning.node_config.max_students": "max_students",
    "distributed_learning.node_config.distillation_temperature": "distillation_temperature",
    "distributed_learning.node_config.collaboration_weight": "collaboration_weight",
    "model.type": "model_type",
    "model.hidden_size": "hidden_size",
    "model.num_layers": "num_layers",
    "model.num_heads": "num_heads",
    "model.dropout": "dropout",
    "learning_system.auto_scale": "auto_scale",
    "learning_system.min_nodes": "min_nodes",
    "learning_system.max_nodes": "max_nodes",
    "learning_system.learning_rate": "learning_rate",
    "learning_system.batch_size": "batch_size",
    "learning_system.evaluation_interval": "evaluation_interval",
}


def test_the_field_table_mirrors_run_config() -> None:
    declared = {f.name: f.type for f in fields(RunConfig)}
    assert {name: kind.__name__ for name, kind in RUN_FIELDS.items()} == declared


def test_every_seed_key_and_its_aliases_name_a_field() -> None:
    assert {k: v for k, v in SEED_KEYS.items() if k in SEVENTEEN} == SEVENTEEN
    assert len(SEVENTEEN) == 17
    for key, field in SEVENTEEN.items():
        assert resolve(key) == field
    for short in ("node_config.max_students", "node.max_students", "max_students"):
        assert resolve(short) == "max_students"
    assert resolve("distributed_learning.node.teach_interval") == "local_steps"
    assert resolve("distributed_learning.system.min_nodes") == "min_nodes"
    assert resolve("system.evaluation_interval") == "evaluation_interval"
    assert resolve("system.auto_scale") == "auto_scale"
    assert resolve("node.learning_rate") == "node_learning_rate"
    assert resolve("learning_rate") == "learning_rate"  # the plain field: the run's
    assert all(field in RUN_FIELDS for field in SEED_KEYS.values())


def test_an_unknown_key_is_refused_with_the_nearest() -> None:
    with pytest.raises(LearningKeyError) as caught:
        resolve("node_config.max_student")
    assert str(caught.value).startswith("node_config.max_student: unknown learning run key")
    assert "did you mean 'node_config.max_students'" in str(caught.value)
    assert caught.value.keys == ("node_config.max_student",)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("learning_system.auto_scale=true", ("learning_system.auto_scale", True)),
        ("model.num_layers=3", ("model.num_layers", 3)),
        ("model.dropout=0.5", ("model.dropout", 0.5)),
        ("model.type=transformer", ("model.type", "transformer")),
        ("superlink=10.0.0.1:9092", ("superlink", "10.0.0.1:9092")),
        ("dataset=123", ("dataset", "123")),  # a text field keeps the text
        (" rounds = 4 ", ("rounds", 4)),
    ],
)
def test_assignments_read_yaml_scalars(text: str, expected: tuple[str, Any]) -> None:
    assert parse_assignment(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rounds", "expected KEY=VALUE"),
        ("=3", "expected KEY=VALUE"),
        ("rounds=", "rounds: has no value"),
        ("colour=blue", "colour: unknown learning run key"),
        ("rounds=[1, 2]", "rounds: must be a whole number"),
    ],
)
def test_bad_assignments_name_the_key(text: str, message: str) -> None:
    with pytest.raises(LearningKeyError, match=message.replace("[", r"\[")):
        parse_assignment(text)


def test_nested_sections_flatten_into_fields() -> None:
    entries = flatten(
        {
            "learning_system": {"min_nodes": 3, "auto_scale": True},
            "model": {"type": "transformer"},
            "distributed_learning": {"node_config": {"max_students": 1}, "system": {}},
        }
    )
    assert entries == [
        Entry("min_nodes", 3, "learning_system.min_nodes"),
        Entry("auto_scale", True, "learning_system.auto_scale"),
        Entry("model_type", "transformer", "model.type"),
        Entry("max_students", 1, "distributed_learning.node_config.max_students"),
    ]
    with pytest.raises(LearningKeyError, match="model.colour: unknown"):
        flatten({"model": {"colour": "red"}})
    with pytest.raises(LearningKeyError, match="distributed_learning.node_config: must be a"):
        flatten({"distributed_learning": {"node_config": 3}})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"learning_system": {"max_nodes": 1}},
            "learning_system.max_nodes: invalid learning run: need 1 <= min_nodes <= max_nodes",
        ),
        (
            {"model": {"type": "transformer", "hidden_size": 30, "num_heads": 4}},
            "hidden_size 30 must be a multiple of num_heads",
        ),
        ({"set": {"learning_system.auto_scale": "maybe"}}, "learning_system.auto_scale: must be"),
        ({"set": {"model.dropout": True}}, "model.dropout: must be a number, got True"),
        ({"rounds": 2, "set": {"rounds": 3}}, "rounds is given twice; keep one"),
        (
            {"local_steps": 2, "distributed_learning": {"node": {"teach_interval": 3}}},
            "local_steps and distributed_learning.node.teach_interval both set local_steps",
        ),
        ({"set": 3}, "set: must be an object"),
        ({"mode": "fedavg", "set": {"system.auto_scale": True}}, "system.auto_scale: invalid"),
    ],
)
def test_a_refused_run_names_the_key(body: dict[str, Any], message: str) -> None:
    with pytest.raises(LearningKeyError) as caught:
        build_run_config(body)
    assert message in str(caught.value)


def test_the_key_to_blame_is_the_one_that_breaks_the_run() -> None:
    with pytest.raises(LearningKeyError) as caught:
        build_run_config({"mode": "distill", "set": {"max_nodes": 5, "min_nodes": 6}})
    assert caught.value.keys == ("max_nodes", "min_nodes")  # either one alone would do
    with pytest.raises(LearningKeyError) as caught:
        build_run_config({"rounds": 0, "nodes": 1, "seed": 3})
    assert caught.value.keys == ("rounds", "nodes")  # two problems: both named


def test_layers_request_over_defaults_over_run_config() -> None:
    defaults = {"max_students": 1, "model_type": "transformer", "num_heads": 2}
    request = RunRequest.from_body({"mode": "distill", "set": {"node.max_students": 3}})
    config = build_run_config(request, defaults)
    assert (config.max_students, config.model_type, config.num_heads) == (3, "transformer", 2)
    assert config.rounds == RunConfig().rounds
    # A default only the node modes take is left out of another mode's run...
    assert build_run_config({"mode": "fedavg"}, {"auto_scale": True}).auto_scale is False
    assert build_run_config({"mode": "ensemble"}, {"auto_scale": True}).auto_scale is True
    # ...and a default that breaks the run is named as one.
    with pytest.raises(LearningKeyError, match=r"^learning_system.min_nodes \(configured default"):
        build_run_config({"mode": "distill", "nodes": 2, "auto_scale": True}, {"min_nodes": 3})


def test_the_command_line_request_names_its_flags() -> None:
    request = RunRequest.of([("--rounds", "rounds", 2)], ["model.num_layers=2"])
    assert build_run_config(request).num_layers == 2
    with pytest.raises(LearningKeyError, match="--rounds and rounds both set rounds"):
        RunRequest.of([("--rounds", "rounds", 2)], ["rounds=3"])


def test_configured_defaults_are_checked_as_a_node_run_would_take_them() -> None:
    seed = flatten(
        {
            "learning_system": {"auto_scale": True, "min_nodes": 5, "max_nodes": 10},
            "model": {"type": "transformer", "hidden_size": 256, "num_heads": 8},
        }
    )
    assert check_defaults(seed)["min_nodes"] == 5
    # max_nodes 1 bounds only auto-scaling: alone it is a fine default, with it it never runs
    assert check_defaults(flatten({"learning_system": {"min_nodes": 1, "max_nodes": 1}}))
    with pytest.raises(LearningKeyError, match="auto_scale needs min_nodes <= nodes"):
        check_defaults(
            flatten({"learning_system": {"max_nodes": 1, "min_nodes": 1, "auto_scale": True}})
        )
    with pytest.raises(
        LearningKeyError, match="^model.type, model.num_heads: invalid learning run"
    ):
        check_defaults(flatten({"model": {"type": "transformer", "num_heads": 7}}))


def test_doctests() -> None:
    result = doctest.testmod(neurons.learning.seed_keys, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_importable_without_torch() -> None:
    code = "import sys, neurons.learning.seed_keys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
