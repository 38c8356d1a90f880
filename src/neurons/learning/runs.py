"""A learning run: one experiment on real data, by any of the modes, with events and checkpoints.

Modes, all on the same dataset split and node partitions:

- ``centralized``: one model on all training examples: the yardstick;
- ``fedavg`` / ``fedprox`` / ``fedmedian`` / ``fedtrimmedavg``: Flower strategies over
  ``nodes`` in-process nodes (``federated.py``); with ``deploy="flower"`` the same apps run
  through a Flower SuperLink instead (``deployment.py``): a loopback one with the run's
  SuperNodes started here, or, with ``superlink`` set, one whose SuperNodes were started on
  other machines with ``neurons learn node``;
- ``distill``: a :class:`DistributedLearningSystem`. Node 0 holds its share with labels; the
  others keep labels on only ``labelled_fraction`` of theirs. Teachers emerge from measured
  knowledge levels and teach on the students' unlabelled examples. Beside every student a
  *scratch twin* (same model, same labels, no teacher) is trained, so the run reports what
  distillation added;
- ``ensemble``: nodes learn locally and collaborate; the knowledge-weighted ensemble is scored
  against its best member, with a cross-node validation matrix.

Every round ends with one ``round`` event (test and validation accuracy) and a checkpoint;
``execute`` resumes from the latest checkpoint when one exists (a run through a SuperLink
keeps no weights here, so it starts again from round 1). A ``stop`` set meanwhile ends
the run after the round's checkpoint; ``abandon`` answering True drops the round in progress
at the next local training step (its work is lost, the previous checkpoint stays).

Torch trains on ``threads`` threads (``NEURONS_TORCH_THREADS``; None: the measured default of
:mod:`neurons.torch_threads`), in every thread the run trains in; the run's first event,
``threads``, says how many its own thread got.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from neurons.errors import InvalidRequestError, LearningStateError
from neurons.jobs import JobStopped
from neurons.learning.choices import (
    BATCH_SCHEDULES,
    DEPLOYS,
    FEDERATED_MODES,
    LR_SCHEDULES,
    MODES,
    NODE_MODES,
    checked_fields,
    shape_problems,
)
from neurons.learning.data import DATASETS, PARTITIONS, Dataset, load_dataset
from neurons.learning.deployment import check_address
from neurons.learning.federated import (
    FederatedSettings,
    ModelUpdate,
    flower_identity,
    run_federated,
)
from neurons.learning.flower_app import LocalGrid
from neurons.learning.models import ModelSpec, build_model, get_arrays, set_arrays
from neurons.learning.node import NodeConfig
from neurons.learning.training import (
    LocalTraining,
    TrainingAbandoned,
    abandoning,
    accuracy,
    train_local,
)
from neurons.torch_threads import learning_threads, use_torch_threads

__all__ = ["DEPLOYS", "MODES", "RunConfig", "RunStopped", "execute"]


Emit = Callable[[str, dict[str, Any]], None]
_FLOWER_TIMEOUT_S = 24 * 3600.0  # a deployed run may be long; cancel stops it sooner


class RunStopped(JobStopped):
    """Raised inside a run when its stop event is set; the last checkpoint stays."""


@dataclass(frozen=True)
class RunConfig:
    dataset: str = "digits"
    nodes: int = 4
    mode: str = "fedavg"
    partition: str = "iid"
    rounds: int = 20
    model_type: str = "mlp"
    local_steps: int = 20
    batch_size: int = 32
    learning_rate: float = 3e-3
    labelled_fraction: float = 0.05
    proximal_mu: float = 0.1
    hidden_size: int = 0
    seed: int = 0
    deploy: str = "local"  # or "flower": through a SuperLink (federated modes only)
    superlink: str = ""  # HOST:PORT of a running SuperLink; empty: a loopback one
    # Seed 003's model block (models.py says which type takes which).
    num_layers: int = 0  # 0: the type's default
    num_heads: int = 8
    dropout: float = 0.1
    # Seed 003's node_config, for the node modes (distill, ensemble); teach_interval is
    # local_steps, and the node learning rate defaults to the run's.
    node_learning_rate: float = 0.0  # 0: learning_rate
    knowledge_threshold: float = 0.8
    max_students: int = 5
    distillation_temperature: float = 2.0
    collaboration_weight: float = 0.3
    # Seed 003's learning_system, for the node modes: evaluation every evaluation_interval
    # optimizer steps (0: every round), auto-scaling between min_nodes and max_nodes, and
    # the learning-rate and batch-size schedules (schedules.py).
    evaluation_interval: int = 0
    auto_scale: bool = False
    min_nodes: int = 2
    max_nodes: int = 10
    lr_schedule: str = "constant"
    batch_schedule: str = "constant"

    def __post_init__(self) -> None:
        problems = []
        if self.dataset not in DATASETS:
            problems.append(f"dataset must be one of {', '.join(DATASETS)}")
        if self.mode not in MODES:
            problems.append(f"mode must be one of {', '.join(MODES)}")
        if self.partition not in PARTITIONS:
            problems.append("partition must be iid or skewed")
        if not 2 <= self.nodes <= 32:
            problems.append("nodes must be 2-32")
        if not 1 <= self.rounds <= 1000:
            problems.append("rounds must be 1-1000")
        if not 1 <= self.local_steps <= 10_000 or not 1 <= self.batch_size <= 4096:
            problems.append("local_steps must be 1-10000 and batch_size 1-4096")
        if not 0 < self.learning_rate <= 1:
            problems.append("learning_rate must be in (0, 1]")
        if not 0 < self.labelled_fraction <= 1:
            problems.append("labelled_fraction must be in (0, 1]")
        if self.proximal_mu < 0:
            problems.append("proximal_mu must not be negative")
        problems += shape_problems(
            self.model_type, self.hidden_size, self.num_layers, self.num_heads, self.dropout
        )
        problems += self._node_problems()
        if self.deploy not in DEPLOYS:
            problems.append(f"deploy must be one of {', '.join(DEPLOYS)}")
        elif self.deploy == "flower" and self.mode not in FEDERATED_MODES:
            problems.append(f"deploy flower runs the federated modes only, not {self.mode}")
        if self.superlink and self.deploy != "flower":
            problems.append("superlink needs deploy flower")
        elif self.superlink:
            try:
                check_address(self.superlink)
            except InvalidRequestError as exc:
                problems.append(exc.message)
        if problems:
            raise InvalidRequestError("invalid learning run: " + "; ".join(problems))

    def _node_problems(self) -> list[str]:
        problems = []
        if not 0 <= self.node_learning_rate <= 1:
            problems.append("node_learning_rate must be in [0, 1] (0: learning_rate)")
        if not 0 <= self.knowledge_threshold <= 1:
            problems.append("knowledge_threshold must be in [0, 1]")
        if not 0 <= self.max_students <= 32:
            problems.append("max_students must be 0-32")
        if not 0 < self.distillation_temperature <= 100:
            problems.append("distillation_temperature must be in (0, 100]")
        if not 0 <= self.collaboration_weight <= 1:
            problems.append("collaboration_weight must be in [0, 1]")
        if not 0 <= self.evaluation_interval <= 1_000_000:
            problems.append("evaluation_interval must be 0-1000000 (0: every round)")
        if self.lr_schedule not in LR_SCHEDULES:
            problems.append(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}")
        if self.batch_schedule not in BATCH_SCHEDULES:
            problems.append(f"batch_schedule must be one of {', '.join(BATCH_SCHEDULES)}")
        if not 1 <= self.min_nodes <= self.max_nodes <= 32:
            problems.append("need 1 <= min_nodes <= max_nodes <= 32")
        elif self.auto_scale and not self.min_nodes <= self.nodes <= self.max_nodes:
            problems.append(
                f"auto_scale needs min_nodes <= nodes <= max_nodes "
                f"({self.min_nodes} <= {self.nodes} <= {self.max_nodes})"
            )
        adaptive = self.auto_scale or self.lr_schedule != "constant"
        if (adaptive or self.batch_schedule != "constant") and self.mode not in NODE_MODES:
            problems.append(
                f"auto_scale and the schedules apply to the {' and '.join(NODE_MODES)} modes, "
                f"not {self.mode}"
            )
        return problems

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        return cls(**checked_fields(cls, data, "learning run"))

    @property
    def steps_between_evaluations(self) -> int:
        return self.evaluation_interval or self.local_steps

    def federated(self) -> FederatedSettings:
        return FederatedSettings(
            mode=self.mode,
            dataset=self.dataset,
            partition=self.partition,
            num_nodes=self.nodes,
            rounds=self.rounds,
            model_type=self.model_type,
            local_steps=self.local_steps,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            proximal_mu=self.proximal_mu,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            dropout=self.dropout,
            seed=self.seed,
        )

    def node_config(self, node_id: str, **overrides: Any) -> NodeConfig:
        return replace(
            NodeConfig(
                node_id=node_id,
                model_type=self.model_type,
                learning_rate=self.node_learning_rate or self.learning_rate,
                knowledge_threshold=self.knowledge_threshold,
                teach_interval=self.local_steps,
                max_students=self.max_students,
                distillation_temperature=self.distillation_temperature,
                collaboration_weight=self.collaboration_weight,
                batch_size=self.batch_size,
                hidden_size=self.hidden_size,
                num_layers=self.num_layers,
                num_heads=self.num_heads,
                dropout=self.dropout,
                seed=self.seed,
            ),
            **overrides,
        )


class _Checkpoint:
    """The latest round's weights (``weights.npz``) and bookkeeping (``state.json``)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    def save(
        self, round_done: int, arrays: dict[str, list[np.ndarray]], state: dict[str, Any]
    ) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        flat = {f"{owner}::{i}": a for owner, items in arrays.items() for i, a in enumerate(items)}
        partial = self.folder / "weights.tmp.npz"
        np.savez(partial, **flat)  # type: ignore[arg-type]
        partial.replace(self.folder / "weights.npz")
        text = json.dumps({"round": round_done, **state})
        (self.folder / "state.tmp.json").write_text(text, encoding="utf-8")
        (self.folder / "state.tmp.json").replace(self.folder / "state.json")

    def load(self) -> tuple[int, dict[str, list[np.ndarray]], dict[str, Any]] | None:
        if self.folder is None or not (self.folder / "state.json").exists():
            return None
        state = json.loads((self.folder / "state.json").read_text(encoding="utf-8"))
        arrays: dict[str, list[np.ndarray]] = {}
        with np.load(self.folder / "weights.npz") as saved:
            keys = sorted(
                saved.files, key=lambda k: (k.rsplit("::", 1)[0], int(k.rsplit("::", 1)[1]))
            )
            for key in keys:
                arrays.setdefault(key.rsplit("::", 1)[0], []).append(saved[key])
        return int(state.pop("round")), arrays, state


def execute(
    config: RunConfig,
    emit: Emit,
    *,
    checkpoint: Path | None = None,
    stop: threading.Event | None = None,
    abandon: Callable[[], bool] | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Run ``config`` to the end (or resume it) and return the final summary (see the module
    docstring for ``stop``, ``abandon`` and ``threads``)."""
    dataset = load_dataset(config.dataset, config.seed)
    saved = _Checkpoint(checkpoint)
    stopper = stop or threading.Event()
    token = abandoning.set(abandon)
    threads_token = learning_threads.set(threads)
    emit("threads", {"torch_threads": use_torch_threads("learning", threads)})
    try:
        if config.mode in FEDERATED_MODES and config.deploy == "flower":
            return _through_superlink(config, emit, checkpoint, stopper)
        if config.mode in FEDERATED_MODES:
            return _federated(config, dataset, emit, saved, stopper)
        if config.mode == "centralized":
            return _centralized(config, dataset, emit, saved, stopper)
        return asyncio.run(_nodes(config, dataset, emit, saved, stopper))
    except TrainingAbandoned as exc:
        raise RunStopped("the round in progress was dropped") from exc
    finally:
        abandoning.reset(token)
        learning_threads.reset(threads_token)


def _federated(
    config: RunConfig, dataset: Dataset, emit: Emit, saved: _Checkpoint, stop: threading.Event
) -> dict[str, Any]:
    settings = config.federated()
    resumed = saved.load()
    first, initial = 1, None
    if resumed is not None:
        first, initial = resumed[0] + 1, resumed[1]["global"]
        emit("resumed", {"round": resumed[0]})
        if first > config.rounds:
            return dict(resumed[2].get("summary", {}))

    def observe(node_id: str, reply: Any) -> None:
        if reply.has_content() and reply.content.array_records:
            update = ModelUpdate.from_reply(reply, node_id, 0)
            emit(
                "update",
                {"node_id": node_id, "num_examples": update.num_examples, **update.metrics},
            )

    def on_round(server_round: int, weights: list[np.ndarray], metrics: dict[str, float]) -> None:
        emit("round", {"round": server_round, **metrics})
        summary = {
            "test_accuracy": metrics["test_accuracy"],
            "val_accuracy": metrics["val_accuracy"],
        }
        saved.save(server_round, {"global": weights}, {"summary": summary})
        if stop.is_set() and server_round < config.rounds:
            raise RunStopped(f"stopped after round {server_round}")

    with flower_identity():
        last = run_federated(
            settings,
            LocalGrid(settings, observe=observe),
            on_round,
            initial=initial,
            first_round=first,
        )
    return {"test_accuracy": last["test_accuracy"], "val_accuracy": last["val_accuracy"]}


def _through_superlink(
    config: RunConfig, emit: Emit, folder: Path | None, stop: threading.Event
) -> dict[str, Any]:
    """The federated run by ``flwr run`` through a SuperLink; every round it reports becomes
    a ``round`` event as it arrives, as in-process rounds do."""
    from neurons.learning.deployment import FlowerDeployment, SuperLinkClient

    settings = config.federated()
    last: dict[str, Any] = {}

    def on_round(row: dict[str, float]) -> None:
        emit("round", dict(row))
        last.update(test_accuracy=row["test_accuracy"], val_accuracy=row["val_accuracy"])

    with tempfile.TemporaryDirectory(prefix="neurons-flower-") as scratch:
        work = folder / "flower" if folder is not None else Path(scratch)
        try:
            if config.superlink:
                client = SuperLinkClient(config.superlink, work)
                client.run(settings, on_round, timeout=_FLOWER_TIMEOUT_S, stop=stop)
            else:
                with FlowerDeployment(config.nodes, work) as deployment:
                    deployment.run(settings, _FLOWER_TIMEOUT_S, on_round=on_round, stop=stop)
        except LearningStateError as exc:
            if stop.is_set():  # we stopped the Flower run ourselves
                raise RunStopped(f"stopped: {exc}") from exc
            raise
    return last


def _centralized(
    config: RunConfig, dataset: Dataset, emit: Emit, saved: _Checkpoint, stop: threading.Event
) -> dict[str, Any]:
    """The same total number of optimizer steps as all nodes of a federated run together."""
    model = build_model(_spec(config, dataset), config.seed)
    first = 1
    resumed = saved.load()
    if resumed is not None:
        set_arrays(model, resumed[1]["global"])
        first = resumed[0] + 1
        emit("resumed", {"round": resumed[0]})
    metrics: dict[str, float] = {}
    for server_round in range(first, config.rounds + 1):
        train_local(
            model,
            dataset.train,
            LocalTraining(
                steps=config.local_steps * config.nodes,
                batch_size=config.batch_size,
                learning_rate=config.learning_rate,
                seed=config.seed * 1000 + server_round,
            ),
        )
        metrics = {
            "val_accuracy": accuracy(model, dataset.validation),
            "test_accuracy": accuracy(model, dataset.test),
        }
        emit("round", {"round": server_round, **metrics})
        saved.save(server_round, {"global": get_arrays(model)}, {"summary": metrics})
        if stop.is_set() and server_round < config.rounds:
            raise RunStopped(f"stopped after round {server_round}")
    if not metrics and resumed is not None:
        return dict(resumed[2].get("summary", {}))
    return metrics


def _spec(config: RunConfig, dataset: Dataset) -> ModelSpec:
    return ModelSpec(
        config.model_type,
        dataset.train.num_features,
        dataset.num_classes,
        dataset.train.sequence_shape,
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        num_heads=config.num_heads,
        dropout=config.dropout,
    )


async def _nodes(
    config: RunConfig, dataset: Dataset, emit: Emit, saved: _Checkpoint, stop: threading.Event
) -> dict[str, Any]:
    from neurons.learning.node_runs import distill_round, ensemble_round, setup_nodes

    setup = setup_nodes(config, dataset)
    first = 1
    resumed = saved.load()
    if resumed is not None:
        setup.restore(resumed[1], resumed[2], dataset)
        first = resumed[0] + 1
        emit("resumed", {"round": resumed[0]})
    summary: dict[str, Any] = dict(resumed[2].get("summary", {})) if resumed else {}
    for server_round in range(first, config.rounds + 1):
        if config.mode == "distill":
            summary = await distill_round(setup, dataset, emit)
        else:
            summary = await ensemble_round(setup, dataset, emit)
        emit("round", {"round": server_round, **summary})
        arrays, state = setup.snapshot()
        saved.save(server_round, arrays, {**state, "summary": summary})
        if stop.is_set() and server_round < config.rounds:
            raise RunStopped(f"stopped after round {server_round}")
    return summary
