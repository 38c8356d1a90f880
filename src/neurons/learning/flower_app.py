"""The Flower apps (one ClientApp, one ServerApp) and the in-process grid that runs them.

On a Flower deployment each SuperNode is started with ``--node-config "partition-id=I
num-partitions=N"``; the ServerApp reads :class:`FederatedSettings` from the run config and
prints one ``neurons-round {json}`` line per round (Flower streams the ServerApp's output to
``flwr run --stream``, wherever that runs), and also writes the JSON to ``out-path`` when
that is set. In one process,
:class:`LocalGrid` hands Flower's messages straight to the same ClientApp, so the strategy
code, the messages and the client code are identical in both places.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from uuid import uuid4

import numpy as np
from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.proto.node_pb2 import NodeInfo
from flwr.serverapp import Grid, ServerApp
from flwr.supercore.run import Run
from torch import nn

from neurons.errors import InvalidRequestError
from neurons.learning.data import LearningData
from neurons.learning.deployment import ROUND_MARK
from neurons.learning.federated import FederatedSettings, ModelUpdate, node_share, run_federated
from neurons.learning.models import build_model, get_arrays, set_arrays
from neurons.learning.training import LocalTraining, accuracy, train_local

__all__ = ["LocalGrid", "client_app", "server_app"]

client_app = ClientApp()
server_app = ServerApp()


def _settings(context: Context) -> tuple[FederatedSettings, int]:
    config = dict(context.run_config)
    node = dict(context.node_config)
    if "num-partitions" in node:
        config["num-nodes"] = node["num-partitions"]
    settings = FederatedSettings.from_run_config(config)
    partition_id = node.get("partition-id", 0)
    if not isinstance(partition_id, int):
        raise InvalidRequestError(f"partition-id must be an integer, got {partition_id!r}")
    return settings, partition_id


def _number(record: Any, key: str, default: float) -> Any:
    value = record.get(key, default) if record is not None else default
    if not isinstance(value, (int, float)):
        raise InvalidRequestError(f"{key} must be a number, got {value!r}")
    return value


def _received_model(
    settings: FederatedSettings, data: LearningData, msg: Message
) -> tuple[nn.Module, list[np.ndarray]]:
    """The network with the global weights ``msg`` carries, and those weights."""
    model = build_model(settings.spec(data), settings.seed)
    arrays = msg.content["arrays"].to_numpy_ndarrays()  # type: ignore[union-attr]
    set_arrays(model, arrays)
    return model, arrays


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    settings, partition_id = _settings(context)
    data, _ = node_share(settings, partition_id)
    model, global_arrays = _received_model(settings, data, msg)
    config = msg.content["config"]
    server_round = _number(config, "server-round", 1) + _number(config, "round-offset", 0)
    mu = float(_number(config, "proximal-mu", 0.0))
    result = train_local(
        model,
        data,
        LocalTraining(
            steps=settings.local_steps,
            batch_size=settings.batch_size,
            learning_rate=settings.learning_rate,
            seed=settings.seed * 1000 + server_round * 64 + partition_id,
            proximal_mu=mu,
        ),
        global_arrays=global_arrays if mu > 0 else None,
    )
    update = ModelUpdate(
        node_id=f"node-{partition_id}",
        round=server_round,
        parameters=get_arrays(model),
        num_examples=len(data),
        metrics={"train-loss": result["loss"]},
    )
    return Message(update.content(), reply_to=msg)


@client_app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Cross-node validation: the global model on this node's share of the validation split."""
    settings, partition_id = _settings(context)
    data, validation = node_share(settings, partition_id)
    model, _ = _received_model(settings, data, msg)
    metrics = MetricRecord(
        {"accuracy": accuracy(model, validation), "num-examples": len(validation)}
    )
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    settings = FederatedSettings.from_run_config(dict(context.run_config))
    out = str(context.run_config.get("out-path", ""))

    def report(server_round: int, _: list[np.ndarray], metrics: dict[str, float]) -> None:
        line = json.dumps({"round": server_round, **metrics})
        print(ROUND_MARK + line, flush=True)  # noqa: T201 - the run's log is the channel
        if out:
            with Path(out).open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")

    run_federated(settings, grid, report)


Handler = Callable[[Message, Context], Message]


class LocalGrid(Grid):
    """A Grid whose nodes are ClientApp calls in this process, one after another.

    ``observe`` sees every reply (a :class:`ModelUpdate` for training rounds), which is how
    the learning service records per-node events."""

    def __init__(
        self,
        settings: FederatedSettings,
        app: Handler = client_app,
        observe: Callable[[str, Message], None] | None = None,
    ) -> None:
        self._run = Run.create_empty(1)
        self._app = app
        self._observe = observe
        run_config: dict[str, Any] = dict(settings.to_run_config())
        self._contexts = {
            1000 + i: Context(
                run_id=1,
                node_id=1000 + i,
                node_config={"partition-id": i, "num-partitions": settings.num_nodes},
                state=RecordDict(),
                run_config=run_config,
            )
            for i in range(settings.num_nodes)
        }
        self._replies: dict[str, Message] = {}

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self._contexts)

    def get_nodes(self) -> Iterable[NodeInfo]:
        return [NodeInfo(node_id=node_id) for node_id in self._contexts]

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for message in messages:
            message.metadata.__dict__["_message_id"] = str(uuid4())
            context = self._contexts[message.metadata.dst_node_id]
            reply = self._app(message, context)
            if self._observe is not None:
                self._observe(f"node-{context.node_config['partition-id']}", reply)
            self._replies[message.metadata.message_id] = reply
            ids.append(message.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(i) for i in message_ids if i in self._replies]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        replies = self.pull_messages(self.push_messages(messages))
        # Flower samples nodes in random order; a fixed order keeps float sums reproducible.
        return sorted(replies, key=lambda m: m.metadata.src_node_id)
