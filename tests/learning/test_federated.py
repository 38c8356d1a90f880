"""Federated learning on Flower's own strategies: aggregation, settings, and real rounds."""

from __future__ import annotations

import threading
from dataclasses import asdict
from typing import Any

import numpy as np
import pytest
from flwr.app import Message, RecordDict
from flwr.serverapp.exception import InconsistentMessageReplies
from flwr.serverapp.strategy import FedAvg, FedMedian, FedProx, FedTrimmedAvg

from neurons.errors import InvalidRequestError
from neurons.learning.federated import (
    FEDERATED_MODES,
    FederatedSettings,
    ModelUpdate,
    aggregate_updates,
    flower_identity,
    make_strategy,
    node_share,
    run_federated,
)
from neurons.learning.flower_app import LocalGrid
from tests.learning import one_torch_thread  # noqa: F401  (autouse)


def _update(value: float, examples: int = 1, *, delta: bool = False) -> ModelUpdate:
    arrays = [np.full((2, 3), value, dtype=np.float32), np.array([value], dtype=np.float32)]
    return ModelUpdate("node", 1, arrays, examples, {"loss": value}, is_delta=delta)


def _values(arrays: list[np.ndarray]) -> list[float]:
    """Every array here is constant: its one value, per array."""
    for array in arrays:
        assert np.all(array == array.flat[0])
    return [float(array.flat[0]) for array in arrays]


@pytest.mark.parametrize(
    ("mode", "updates", "beta", "expected"),
    [
        # FedAvg and FedProx weight by num_examples
        ("fedavg", [(1.0, 1), (3.0, 3)], 0.25, 2.5),
        ("fedavg", [(1.0, 1), (3.0, 1)], 0.25, 2.0),
        ("fedavg", [(2.0, 5), (4.0, 5), (9.0, 10)], 0.25, 6.0),
        ("fedprox", [(1.0, 3), (5.0, 1)], 0.25, 2.0),
        # the median ignores how many examples stood behind each update
        ("fedmedian", [(1.0, 1), (2.0, 100), (10.0, 1)], 0.25, 2.0),
        ("fedmedian", [(1.0, 1), (2.0, 1), (4.0, 1), (100.0, 1)], 0.25, 3.0),
        # trimmed mean: beta of the updates cut from each end, the rest averaged
        ("fedtrimmedavg", [(1.0, 1), (2.0, 1), (3.0, 1), (100.0, 1)], 0.25, 2.5),
        ("fedtrimmedavg", [(1.0, 1), (2.0, 1), (3.0, 1), (4.0, 1), (-90.0, 1)], 0.2, 2.0),
        ("fedtrimmedavg", [(1.0, 1), (2.0, 1), (3.0, 1), (4.0, 1), (100.0, 1)], 0.0, 22.0),
    ],
)
def test_aggregate_updates(
    mode: str, updates: list[tuple[float, int]], beta: float, expected: float
) -> None:
    merged = aggregate_updates([_update(v, n) for v, n in updates], mode, trim_beta=beta)
    assert [a.shape for a in merged] == [(2, 3), (1,)]
    assert _values(merged) == pytest.approx([expected, expected])


def test_aggregate_per_element() -> None:
    first = ModelUpdate("a", 1, [np.array([0.0, 10.0], dtype=np.float32)], 1)
    second = ModelUpdate("b", 1, [np.array([4.0, 2.0], dtype=np.float32)], 3)
    (merged,) = aggregate_updates([first, second])
    assert merged.tolist() == pytest.approx([3.0, 4.0])


def test_deltas_are_added_to_the_base() -> None:
    base = [np.full((2, 3), 10.0, dtype=np.float32), np.array([-1.0], dtype=np.float32)]
    merged = aggregate_updates(
        [_update(1.0, 1, delta=True), _update(3.0, 3, delta=True)], base=base
    )
    assert _values(merged) == pytest.approx([12.5, 1.5])
    median = aggregate_updates(
        [_update(v, 1, delta=True) for v in (0.0, 1.0, 7.0)], "fedmedian", base=base
    )
    assert _values(median) == pytest.approx([11.0, 0.0])


@pytest.mark.parametrize(
    ("updates", "base", "message"),
    [
        ([], None, "no updates"),
        ([_update(1.0), _update(2.0, delta=True)], None, "cannot mix"),
        ([_update(1.0, delta=True), _update(2.0)], [np.zeros((2, 3)), np.zeros(1)], "cannot mix"),
        ([_update(1.0, delta=True), _update(2.0, delta=True)], None, "needs the base"),
    ],
)
def test_bad_aggregations(
    updates: list[ModelUpdate], base: list[np.ndarray] | None, message: str
) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        aggregate_updates(updates, base=base)


@pytest.mark.parametrize("odd", [[np.zeros(3, dtype=np.float32)], [np.zeros((2, 2)), np.zeros(1)]])
def test_mismatched_updates_are_rejected(odd: list[np.ndarray]) -> None:
    # Flower 1.41 raises its own InconsistentMessageReplies for a different number of arrays
    # and numpy's ValueError for different shapes (aggregate_updates does not translate them)
    with pytest.raises((InvalidRequestError, InconsistentMessageReplies, ValueError)):
        aggregate_updates([_update(1.0), ModelUpdate("odd", 1, odd, 1)])


def test_model_update_needs_examples() -> None:
    with pytest.raises(InvalidRequestError, match="carries no examples"):
        _update(1.0, 0)


def test_model_update_travels_as_a_flower_message() -> None:
    update = _update(2.0, 7)
    with flower_identity():
        asked = Message(RecordDict(), 5, "train")
        reply = Message(update.content(), reply_to=asked)
    back = ModelUpdate.from_reply(reply, "node-5", 3)
    assert (back.node_id, back.round, back.num_examples) == ("node-5", 3, 7)
    assert back.metrics == {"loss": 2.0}
    assert _values(back.parameters) == [2.0, 2.0]


def test_flower_identity_outlives_an_overlapping_run() -> None:
    # Runs in threads overlap: the first one to leave must not unset the identity under the
    # other (found by the API fuzz, which starts learning runs side by side).
    from flwr.supercore.task_identity import TaskIdentity

    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: list[int] = []

    def first() -> None:
        with flower_identity():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    thread = threading.Thread(target=first)
    thread.start()
    assert first_in.wait(5)
    with flower_identity():
        second_in.set()
        assert first_out.wait(5)
        seen.append(TaskIdentity.run_id)
    thread.join()
    assert seen == [1]
    assert TaskIdentity._run_id is None


@pytest.mark.parametrize(
    ("mode", "cls"),
    [
        ("fedavg", FedAvg),
        ("fedprox", FedProx),
        ("fedmedian", FedMedian),
        ("fedtrimmedavg", FedTrimmedAvg),
    ],
)
def test_make_strategy_returns_flowers_classes(mode: str, cls: type) -> None:
    strategy = make_strategy(mode, 3, proximal_mu=0.3, trim_beta=0.1)
    assert type(strategy) is cls
    assert type(strategy).__module__.startswith("flwr.")
    assert isinstance(strategy, FedAvg)
    assert strategy.min_train_nodes == strategy.min_available_nodes == 3
    if isinstance(strategy, FedProx):
        assert strategy.proximal_mu == 0.3
    if isinstance(strategy, FedTrimmedAvg):
        assert strategy.beta == 0.1


def test_make_strategy_rejects_unknown_modes() -> None:
    with pytest.raises(InvalidRequestError, match="unknown federated mode"):
        make_strategy("krum", 3)


def test_settings_run_config_round_trip() -> None:
    settings = FederatedSettings(
        mode="fedprox", partition="skewed", num_nodes=3, rounds=7, proximal_mu=0.5, seed=4
    )
    config = settings.to_run_config()
    assert config["num-nodes"] == 3 and config["proximal-mu"] == 0.5 and "num_nodes" not in config
    assert all("_" not in key for key in config)
    assert all(isinstance(v, (str, int, float, bool)) for v in config.values())
    assert FederatedSettings.from_run_config(config) == settings
    # other keys of a Flower run config (out-path, ...) are not settings
    assert FederatedSettings.from_run_config({**config, "out-path": "/tmp/x"}) == settings
    assert FederatedSettings.from_run_config({}) == FederatedSettings()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"mode": "krum"}, "mode"),
        ({"dataset": "mnist"}, "dataset"),
        ({"partition": "dirichlet"}, "partition"),
        ({"model_type": "cnn"}, "model_type"),
        ({"num_nodes": 1}, "num_nodes"),
        ({"num_nodes": 65}, "num_nodes"),
        ({"rounds": 0}, "rounds"),
        ({"local_steps": 0}, "local_steps"),
        ({"batch_size": 0}, "batch_size"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"proximal_mu": -1.0}, "proximal_mu"),
        ({"trim_beta": 0.5}, "trim_beta"),
    ],
)
def test_settings_validation(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        FederatedSettings(**fields)


def test_node_shares_cut_the_training_split() -> None:
    settings = FederatedSettings(num_nodes=4, partition="skewed")
    shares = [node_share(settings, i) for i in range(4)]
    assert sum(len(train) for train, _ in shares) == 1257
    assert sum(len(val) for _, val in shares) == 180
    assert all(train.y is not None and len(np.unique(train.y)) <= 4 for train, _ in shares)
    with pytest.raises(InvalidRequestError, match="partition-id 4"):
        node_share(settings, 4)


def test_run_federated_learns_on_digits() -> None:
    settings = FederatedSettings(
        mode="fedavg", num_nodes=3, rounds=4, local_steps=10, learning_rate=3e-3, hidden_size=32
    )
    rounds: list[tuple[int, dict[str, float]]] = []
    updates: list[str] = []

    def observe(node_id: str, reply: Message) -> None:
        if reply.content.array_records:
            updates.append(node_id)

    with flower_identity():
        last = run_federated(
            settings,
            LocalGrid(settings, observe=observe),
            lambda r, weights, metrics: rounds.append((r, metrics)),
        )
    assert [r for r, _ in rounds] == [1, 2, 3, 4]
    accuracies = [metrics["test_accuracy"] for _, metrics in rounds]
    assert accuracies[-1] > accuracies[0] and accuracies[-1] > 0.8
    assert last == rounds[-1][1]
    # every node trained in every round
    assert sorted(updates) == sorted([f"node-{i}" for i in range(3)] * 4)


def test_run_federated_continues_from_a_round() -> None:
    settings = FederatedSettings(rounds=3, num_nodes=2, local_steps=5, hidden_size=8)
    seen: list[int] = []
    with flower_identity():
        run_federated(settings, LocalGrid(settings), lambda r, w, m: seen.append(r), first_round=3)
    assert seen == [3]
    with pytest.raises(InvalidRequestError, match="no rounds left"), flower_identity():
        run_federated(settings, LocalGrid(settings), lambda r, w, m: None, first_round=4)


def test_every_mode_is_a_flower_strategy() -> None:
    assert set(FEDERATED_MODES) == {"fedavg", "fedprox", "fedmedian", "fedtrimmedavg"}
    assert asdict(FederatedSettings())["mode"] == "fedavg"
