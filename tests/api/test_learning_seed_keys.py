"""Seed 003's keys through ``POST /api/ai/learning/runs``: each of the seventeen, nested in its
section or dotted under ``set`` (and the seed's second spelling), lands in the run's stored
config; each changes what a tiny run on digits does (its checkpoint's weights, who teaches,
how nodes learn, how often they are evaluated, how the system scales); bad ones are a 400
naming the key; and the configured defaults (``Settings.learning_defaults``) go under the
request's fields."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from neurons.api.app import create_control_plane
from neurons.config import Settings
from neurons.learning.runs import RunConfig
from tests.api.envelope import error, ok

BASE = "/api/ai/learning"
# A node run whose nodes may be 3 whatever min_nodes/max_nodes/auto_scale say below.
NODE_RUN: dict[str, Any] = {"mode": "distill", "nodes": 3, "start": False}
# Each seed key, a value other than its default, and the stored field it sets.
KEYS: list[tuple[str, Any, str]] = [
    ("distributed_learning.node_config.learning_rate", 0.01, "node_learning_rate"),
    ("distributed_learning.node_config.knowledge_threshold", 0.5, "knowledge_threshold"),
    ("distributed_learning.node_config.teach_interval", 7, "local_steps"),
    ("distributed_learning.node_config.max_students", 2, "max_students"),
    ("distributed_learning.node_config.distillation_temperature", 4.0, "distillation_temperature"),
    ("distributed_learning.node_config.collaboration_weight", 0.6, "collaboration_weight"),
    ("model.type", "transformer", "model_type"),
    ("model.hidden_size", 64, "hidden_size"),
    ("model.num_layers", 3, "num_layers"),
    ("model.num_heads", 4, "num_heads"),
    ("model.dropout", 0.2, "dropout"),
    ("learning_system.auto_scale", True, "auto_scale"),
    ("learning_system.min_nodes", 3, "min_nodes"),
    ("learning_system.max_nodes", 6, "max_nodes"),
    ("learning_system.learning_rate", 0.01, "learning_rate"),
    ("learning_system.batch_size", 16, "batch_size"),
    ("learning_system.evaluation_interval", 50, "evaluation_interval"),
]
TINY: dict[str, Any] = {"nodes": 3, "rounds": 1, "local_steps": 4, "model": {"hidden_size": 16}}


def _nested(key: str, value: Any) -> dict[str, Any]:
    """``a.b.c`` = v as ``{"a": {"b": {"c": v}}}``."""
    *path, last = key.split(".")
    body: dict[str, Any] = {last: value}
    for part in reversed(path):
        body = {part: body}
    return body


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def client(home: Path) -> Iterator[TestClient]:
    settings = Settings(home=home, health_interval_s=0.5, ollama_base_url="", torch_threads=1)
    with TestClient(create_control_plane(settings, [])) as test_client:
        yield test_client


def _create(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    run: dict[str, Any] = ok(client.post(f"{BASE}/runs", json=body))["run"]
    return run


def _stored(client: TestClient, run_id: str) -> dict[str, Any]:
    config: dict[str, Any] = ok(client.get(f"{BASE}/runs/{run_id}"))["run"]["config"]
    return config


@pytest.mark.parametrize(("key", "value", "field"), KEYS, ids=[k for k, _, _ in KEYS])
def test_each_seed_key_lands_in_the_stored_config(
    client: TestClient, key: str, value: Any, field: str
) -> None:
    nested = _create(client, {**NODE_RUN, **_nested(key, value)})
    dotted = _create(client, {**NODE_RUN, "set": {key: value}})
    short = _create(client, {**NODE_RUN, "set": {key.removeprefix("distributed_learning."): value}})
    for run in (nested, dotted, short):
        assert run["status"] == "pending"
        stored = _stored(client, run["run_id"])
        assert stored[field] == value
        assert stored[field] != getattr(RunConfig(), field) and run["config"] == stored


def test_the_seeds_second_spelling_and_all_keys_at_once(client: TestClient) -> None:
    body = {
        **NODE_RUN,
        "distributed_learning": {
            "node": {"max_students": 1, "teach_interval": 3},
            "system": {"min_nodes": 3, "max_nodes": 4, "evaluation_interval": 9},
        },
    }
    stored = _stored(client, _create(client, body)["run_id"])
    assert (stored["max_students"], stored["local_steps"]) == (1, 3)
    assert (stored["min_nodes"], stored["max_nodes"], stored["evaluation_interval"]) == (3, 4, 9)
    everything: dict[str, Any] = dict(NODE_RUN)
    for key, value, _ in KEYS:
        section = everything
        *path, last = key.split(".")
        for part in path:
            section = section.setdefault(part, {})
        section[last] = value
    stored = _stored(client, _create(client, everything)["run_id"])
    assert {field: stored[field] for _, _, field in KEYS} == {f: v for _, v, f in KEYS}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"learning_system": {"min_nodes": 5, "max_nodes": 3}},
            "learning_system.max_nodes: invalid learning run: need 1 <= min_nodes <= max_nodes",
        ),
        (
            {"set": {"model.type": "transformer", "model.hidden_size": 30, "model.num_heads": 4}},
            "hidden_size 30 must be a multiple of num_heads",
        ),
        ({"set": {"learning_system.auto_scale": "maybe"}}, "learning_system.auto_scale: must be"),
        ({"model": {"colour": "red"}}, "model.colour: unknown learning run key"),
        ({"set": {"node_config.max_student": 1}}, "did you mean 'node_config.max_students'"),
        ({"learning_system": 3}, "learning_system: must be a mapping"),
        ({"mode": "fedavg", "learning_system": {"auto_scale": True}}, "learning_system.auto_scale"),
    ],
)
def test_bad_keys_are_400_naming_the_key(
    client: TestClient, body: dict[str, Any], message: str
) -> None:
    before = ok(client.get(f"{BASE}/runs"))["total"]
    answer = error(
        client.post(f"{BASE}/runs", json={**body, "start": False}), 400, "invalid_request"
    )
    assert message in answer
    assert ok(client.get(f"{BASE}/runs"))["total"] == before  # nothing was stored


# -- behaviour: tiny runs trained in the control plane's background ------------------------


def _train(client: TestClient, home: Path, body: dict[str, Any]) -> dict[str, Any]:
    """Train ``body`` to its end; its state, events and checkpoint weights."""
    run_id = _create(client, {**body, "start": True})["run_id"]
    deadline = time.monotonic() + 180
    while (state := ok(client.get(f"{BASE}/runs/{run_id}"))["run"])["status"] == "running":
        assert time.monotonic() < deadline, state
        time.sleep(0.1)
    assert state["status"] == "completed", state
    events = ok(client.get(f"{BASE}/runs/{run_id}/events", params={"limit": 5000}))["events"]
    with np.load(home / "learning" / "runs" / run_id / "weights.npz") as saved:
        weights = {key: saved[key] for key in saved.files}
    return {"state": state, "events": events, "weights": weights}


def _kinds(run: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["payload"] for e in run["events"] if e["kind"] == kind]


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_the_model_block_shapes_the_checkpoint(client: TestClient, home: Path) -> None:
    base = {"mode": "fedavg", "nodes": 2, "rounds": 1, "local_steps": 2}
    small = _train(client, home, {**base, "model": {"hidden_size": 16, "num_layers": 1}})
    wide = _train(client, home, {**base, "set": {"model.hidden_size": 24, "model.num_layers": 1}})
    deep = _train(client, home, {**base, "model": {"hidden_size": 16, "num_layers": 3}})
    assert len(deep["weights"]) > len(small["weights"]) == len(wide["weights"])
    assert sum(w.size for w in wide["weights"].values()) > sum(
        w.size for w in small["weights"].values()
    )
    shape = {"type": "transformer", "hidden_size": 16, "num_layers": 1, "num_heads": 2}
    transformer = _train(client, home, {**base, "model": shape})
    assert transformer["weights"].keys() != small["weights"].keys() or any(
        transformer["weights"][k].shape != small["weights"][k].shape for k in small["weights"]
    )
    # heads and dropout shape the transformer's training, not its weight shapes
    again = _train(client, home, {**base, "model": shape})
    assert _same(again["weights"], transformer["weights"])  # the same run is reproducible
    for change in ({"num_heads": 4}, {"dropout": 0.5}):
        other = _train(client, home, {**base, "model": {**shape, **change}})
        assert other["state"]["config"]["num_heads"] == change.get("num_heads", 2)
        assert not _same(other["weights"], transformer["weights"]), change


def test_who_teaches_follows_max_students_and_knowledge_threshold(
    client: TestClient, home: Path
) -> None:
    body = {**TINY, "mode": "distill", "rounds": 2}
    anyone = {"knowledge_threshold": 0.0}
    taught = _train(client, home, {**body, "distributed_learning": {"node_config": anyone}})
    assert len(_kinds(taught, "taught")) > 0
    none = {**anyone, "max_students": 0}
    untaught = _train(client, home, {**body, "distributed_learning": {"node_config": none}})
    assert _kinds(untaught, "taught") == [] and _kinds(untaught, "learned")
    assert untaught["state"]["result"]["teaching_events"] == 0
    nobody = _train(client, home, {**body, "set": {"node_config.knowledge_threshold": 1.0}})
    assert _kinds(nobody, "taught") == []


def test_collaboration_weight_zero_makes_ensemble_nodes_learn_alone(
    client: TestClient, home: Path
) -> None:
    body = {**TINY, "mode": "ensemble", "rounds": 2}
    together = _train(client, home, body)
    assert {p["event"] for p in _kinds(together, "learned")} == {"local", "collaboration"}
    alone = _train(client, home, {**body, "set": {"node.collaboration_weight": 0}})
    assert {p["event"] for p in _kinds(alone, "learned")} == {"local"}


@pytest.mark.parametrize(
    "change",
    [
        {"distributed_learning.node_config.learning_rate": 0.02},
        {"distributed_learning.node_config.teach_interval": 8},
        {"distributed_learning.node_config.distillation_temperature": 6.0},
        {"learning_system.learning_rate": 0.02},
        {"learning_system.batch_size": 8},
    ],
    ids=lambda change: next(iter(change)),
)
def test_the_rates_steps_and_batches_change_what_nodes_learn(
    client: TestClient, home: Path, change: dict[str, Any]
) -> None:
    steps = {"distributed_learning.node_config.teach_interval": 4}
    fields = {k: v for k, v in TINY.items() if k != "local_steps"}
    assigned: dict[str, Any] = {"node_config.knowledge_threshold": 0.0, **steps}
    body = {**fields, "mode": "distill", "set": assigned}
    baseline = _train(client, home, body)
    assert _kinds(baseline, "taught")  # students are taught, so the temperature counts
    changed = _train(client, home, {**body, "set": {**assigned, **change}})
    assert not _same(changed["weights"], baseline["weights"])
    assert _same(_train(client, home, body)["weights"], baseline["weights"])


def test_evaluation_interval_sets_how_often_teachers_are_chosen(
    client: TestClient, home: Path
) -> None:
    body = {**TINY, "mode": "distill", "rounds": 4}
    every_round = _train(client, home, body)  # 0: an evaluation every round (4 steps)
    assert [p["round"] for p in _kinds(every_round, "paired")] == [1, 2, 3, 4]
    every_other = _train(client, home, {**body, "set": {"learning_system.evaluation_interval": 8}})
    assert [p["round"] for p in _kinds(every_other, "paired")] == [2, 4]


def test_auto_scale_and_its_bounds_add_and_retire_nodes(client: TestClient, home: Path) -> None:
    """A learning rate of 1e-9 keeps every level where it is, so every evaluation after the
    first is a stall: the system adds a node up to max_nodes, then retires down to
    min_nodes."""
    frozen = {**TINY, "mode": "ensemble", "rounds": 4, "learning_rate": 1e-9}

    def scaled(system: dict[str, Any]) -> list[tuple[int, str, int]]:
        run = _train(client, home, {**frozen, "learning_system": system})
        return [(p["round"], p["action"], p["nodes"]) for p in _kinds(run, "scaled")]

    assert scaled({"min_nodes": 2, "max_nodes": 4}) == []  # auto_scale is off by default
    bounds = {"auto_scale": True, "min_nodes": 2, "max_nodes": 4}
    assert scaled(bounds) == [(2, "added", 4), (3, "retired", 3), (4, "retired", 2)]
    assert scaled({**bounds, "max_nodes": 3}) == [(2, "retired", 2)]
    assert scaled({**bounds, "min_nodes": 3}) == [(2, "added", 4), (3, "retired", 3)]


def test_configured_defaults_go_under_the_request(tmp_path: Path) -> None:
    defaults = {"max_students": 1, "model_type": "transformer", "num_heads": 2, "auto_scale": True}
    settings = Settings(
        home=tmp_path, health_interval_s=0.5, ollama_base_url="", learning_defaults=defaults
    )
    with TestClient(create_control_plane(settings, [])) as client:
        stored = _stored(
            client, _create(client, {**NODE_RUN, "set": {"max_students": 3}})["run_id"]
        )
        assert (stored["max_students"], stored["model_type"], stored["num_heads"]) == (
            3,
            "transformer",
            2,
        )
        assert stored["auto_scale"] is True
        # auto_scale is a node modes' default: a federated run goes without it
        federated = _stored(client, _create(client, {"mode": "fedavg", "start": False})["run_id"])
        assert federated["auto_scale"] is False and federated["model_type"] == "transformer"
        answer = error(
            client.post(f"{BASE}/runs", json={**NODE_RUN, "nodes": 12}), 400, "invalid_request"
        )
        assert "auto_scale" in answer and "configured default" in answer
