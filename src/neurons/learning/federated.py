"""Federated rounds on Flower's strategies: model updates, aggregation, and the server loop.

Aggregation is never re-implemented here: FedAvg, FedProx, FedMedian and trimmed mean are
Flower's own strategies (``flwr.serverapp.strategy``), driven through their Message API. The
same loop (:func:`run_federated`) runs

- in one process, over :class:`neurons.learning.flower_app.LocalGrid` (no Ray, no sockets),
  which is what ``neurons learn run`` and the REST API use;
- on a real Flower deployment (SuperLink + SuperNodes on several machines), from the
  ``server_app`` in ``flower_app.py``.

FedProx's proximal term lives in the client (``training.train_local``); Flower only sends μ.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.exception import InconsistentMessageReplies
from flwr.serverapp.strategy import FedAvg, FedMedian, FedProx, FedTrimmedAvg, Strategy

from neurons.errors import InvalidRequestError
from neurons.learning.choices import FEDERATED_MODES
from neurons.learning.data import DATASETS, PARTITIONS, LearningData, load_dataset, partition
from neurons.learning.models import MODEL_TYPES, ModelSpec, build_model, get_arrays, set_arrays
from neurons.learning.training import accuracy

__all__ = [
    "FEDERATED_MODES",
    "FederatedSettings",
    "ModelUpdate",
    "aggregate_updates",
    "make_strategy",
    "run_federated",
]

RoundCallback = Callable[[int, list[np.ndarray], dict[str, float]], None]


@dataclass(frozen=True)
class FederatedSettings:
    """One federated run, as Flower run config (keys with dashes, flat scalar values)."""

    mode: str = "fedavg"
    dataset: str = "digits"
    partition: str = "iid"
    num_nodes: int = 4
    rounds: int = 20
    model_type: str = "mlp"
    local_steps: int = 20
    batch_size: int = 32
    learning_rate: float = 1e-3
    proximal_mu: float = 0.1
    trim_beta: float = 0.25
    hidden_size: int = 0
    num_layers: int = 0
    num_heads: int = 8
    dropout: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.mode not in FEDERATED_MODES:
            problems.append(f"mode must be one of {', '.join(FEDERATED_MODES)}")
        if self.dataset not in DATASETS:
            problems.append(f"dataset must be one of {', '.join(DATASETS)}")
        if self.partition not in PARTITIONS:
            problems.append("partition must be iid or skewed")
        if self.model_type not in MODEL_TYPES:
            problems.append(f"model_type must be one of {', '.join(MODEL_TYPES)}")
        if not 2 <= self.num_nodes <= 64:
            problems.append("num_nodes must be 2-64 (Flower aggregates at least two)")
        if not 1 <= self.rounds <= 10_000:
            problems.append("rounds must be 1-10000")
        if self.local_steps < 1 or self.batch_size < 1:
            problems.append("local_steps and batch_size must be positive")
        if not 0 < self.learning_rate <= 1:
            problems.append("learning_rate must be in (0, 1]")
        if self.proximal_mu < 0:
            problems.append("proximal_mu must not be negative")
        if not 0 <= self.trim_beta < 0.5:
            problems.append("trim_beta must be in [0, 0.5)")
        if problems:
            raise InvalidRequestError("invalid federated settings: " + "; ".join(problems))

    def to_run_config(self) -> dict[str, str | int | float | bool]:
        return {name.replace("_", "-"): value for name, value in asdict(self).items()}

    @classmethod
    def from_run_config(cls, config: dict[str, Any]) -> FederatedSettings:
        known = {f.name: f.type for f in fields(cls)}
        picked: dict[str, Any] = {}
        for key, value in config.items():
            name = key.replace("-", "_")
            if name in known:
                picked[name] = value
        return cls(**picked)

    def spec(self, data: LearningData) -> ModelSpec:
        return ModelSpec(
            self.model_type,
            data.num_features,
            data.num_classes,
            data.sequence_shape,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            dropout=self.dropout,
        )


def node_share(settings: FederatedSettings, partition_id: int) -> tuple[LearningData, LearningData]:
    """Node ``partition_id``'s training examples and its share of the validation split."""
    if not 0 <= partition_id < settings.num_nodes:
        raise InvalidRequestError(f"partition-id {partition_id} outside 0-{settings.num_nodes - 1}")
    dataset = load_dataset(settings.dataset, settings.seed)
    train = partition(dataset.train, settings.num_nodes, settings.partition, settings.seed)
    val = partition(dataset.validation, settings.num_nodes, settings.partition, settings.seed)
    return train[partition_id], val[partition_id]


@dataclass
class ModelUpdate:
    """What a node sends back after a round: seed 001's ``ModelUpdate``.

    ``parameters`` are full weights, or changes from the round's global weights when
    ``is_delta`` is true; ``num_examples`` weights FedAvg and FedProx."""

    node_id: str
    round: int
    parameters: list[np.ndarray]
    num_examples: int
    metrics: dict[str, float] = field(default_factory=dict)
    is_delta: bool = False

    def __post_init__(self) -> None:
        if self.num_examples < 1:
            raise InvalidRequestError(f"update from {self.node_id} carries no examples")

    def content(self) -> RecordDict:
        metrics: dict[str, int | float | list[int] | list[float]] = {
            k: float(v) for k, v in self.metrics.items()
        }
        metrics["num-examples"] = int(self.num_examples)
        return RecordDict(
            {"arrays": ArrayRecord(self.parameters), "metrics": MetricRecord(metrics)}
        )

    @classmethod
    def from_reply(cls, reply: Message, node_id: str, server_round: int) -> ModelUpdate:
        content = reply.content
        arrays = next(iter(content.array_records.values())).to_numpy_ndarrays()
        metrics = dict(next(iter(content.metric_records.values())))
        examples = metrics.pop("num-examples")
        if not isinstance(examples, (int, float)):
            raise InvalidRequestError(f"update from {node_id} has no usable num-examples")
        floats = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        return cls(node_id, server_round, arrays, int(examples), floats)


def make_strategy(
    mode: str, num_nodes: int, *, proximal_mu: float = 0.1, trim_beta: float = 0.25
) -> Strategy:
    """Flower's strategy for ``mode``, waiting for all ``num_nodes`` every round."""
    common: dict[str, Any] = {
        "min_train_nodes": num_nodes,
        "min_evaluate_nodes": num_nodes,
        "min_available_nodes": num_nodes,
    }
    if mode == "fedavg":
        return FedAvg(**common)
    if mode == "fedprox":
        return FedProx(proximal_mu=proximal_mu, **common)
    if mode == "fedmedian":
        return FedMedian(**common)
    if mode == "fedtrimmedavg":
        return FedTrimmedAvg(beta=trim_beta, **common)
    raise InvalidRequestError(f"unknown federated mode {mode!r}")


# Runs share the process's one identity: the first to enter sets it (when no Flower runtime
# has), the last to leave restores it, so one run ending never unsets it under another.
_identity_lock = threading.Lock()
_identity_users = 0
_identity_saved: tuple[int | None, int | None, int | None] | None = None


@contextmanager
def flower_identity(run_id: int = 1) -> Iterator[None]:
    """Flower stamps every Message with the process's task identity, which its runtimes set;
    in-process rounds have no runtime, so we set it ourselves (and restore it after the last
    concurrent run leaves)."""
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.supercore.task_identity import TaskIdentity

    global _identity_users, _identity_saved
    with _identity_lock:
        if _identity_users == 0:
            _identity_saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
            if _identity_saved[1] is None:
                TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = (
                    1,
                    run_id,
                    SUPERLINK_NODE_ID,
                )
        _identity_users += 1
    try:
        yield
    finally:
        with _identity_lock:
            _identity_users -= 1
            if _identity_users == 0 and _identity_saved is not None:
                # mypy reads flwr's ids as int; they are None until a runtime sets them
                TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = _identity_saved  # type: ignore[assignment]
                _identity_saved = None


def aggregate_updates(
    updates: Sequence[ModelUpdate],
    mode: str = "fedavg",
    *,
    base: list[np.ndarray] | None = None,
    trim_beta: float = 0.25,
) -> list[np.ndarray]:
    """Aggregate ``updates`` with Flower's strategy for ``mode``; deltas are aggregated and
    then added to ``base``."""
    if not updates:
        raise InvalidRequestError("no updates to aggregate")
    deltas = {u.is_delta for u in updates}
    if len(deltas) > 1:
        raise InvalidRequestError("cannot mix full weights and deltas in one aggregation")
    if updates[0].is_delta and base is None:
        raise InvalidRequestError("aggregating deltas needs the base weights")
    strategy = make_strategy(mode, len(updates), trim_beta=trim_beta)
    with flower_identity():
        replies = []
        for number, update in enumerate(updates):
            asked = Message(RecordDict(), number + 1, "train")
            asked.metadata.__dict__["_message_id"] = f"update-{number}"
            replies.append(Message(update.content(), reply_to=asked))
        try:
            arrays, _ = strategy.aggregate_train(updates[0].round, replies)
        except (InconsistentMessageReplies, ValueError) as exc:
            raise InvalidRequestError(f"updates do not fit together: {exc}") from exc
    if arrays is None:
        raise InvalidRequestError("Flower rejected the updates (mismatched arrays or metrics)")
    merged = arrays.to_numpy_ndarrays()
    if updates[0].is_delta and base is not None:
        merged = [b + d for b, d in zip(base, merged, strict=True)]
    return merged


def run_federated(
    settings: FederatedSettings,
    grid: Grid,
    on_round: RoundCallback,
    *,
    initial: list[np.ndarray] | None = None,
    first_round: int = 1,
) -> dict[str, float]:
    """Rounds ``first_round``…``settings.rounds`` on ``grid``; after each, the global model is
    scored centrally on the validation and test splits and handed to ``on_round``."""
    dataset = load_dataset(settings.dataset, settings.seed)
    model = build_model(settings.spec(dataset.train), settings.seed)
    if initial is not None:
        set_arrays(model, initial)
    remaining = settings.rounds - first_round + 1
    if remaining < 1:
        raise InvalidRequestError("no rounds left to run")
    strategy = make_strategy(
        settings.mode,
        settings.num_nodes,
        proximal_mu=settings.proximal_mu,
        trim_beta=settings.trim_beta,
    )
    last: dict[str, float] = {}

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        weights = arrays.to_numpy_ndarrays()
        set_arrays(model, weights)
        metrics: dict[str, float] = {
            "val_accuracy": accuracy(model, dataset.validation),
            "test_accuracy": accuracy(model, dataset.test),
        }
        if server_round > 0:  # round 0 is the initial model, already reported
            on_round(server_round + first_round - 1, weights, metrics)
        last.update(metrics)
        return MetricRecord(dict(metrics))

    logging.getLogger("flwr").setLevel(logging.WARNING)
    strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(get_arrays(model)),
        num_rounds=remaining,
        train_config=ConfigRecord({"round-offset": first_round - 1}),
        evaluate_fn=evaluate,
    )
    return last
