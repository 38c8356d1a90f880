"""Local training: hard labels, distillation, and FedProx's proximal term, in one loop.

The distillation loss (Hinton, Vinyals & Dean 2015)::

    loss = (1 − w) · CE(student, y) + w · T² · KL(softmax(teacher/T) ‖ softmax(student/T))

``w`` is the *soft weight*: 1.0 learns from the teacher alone (no labels needed), 0.0 ignores
the teacher. The T² keeps the soft term's gradients the same size whatever T is. Where an
example has no label, only the soft term applies.

FedProx adds ``μ/2 · ‖w − w_global‖²`` to every local step (Flower's FedProx only sends μ).

A run that is cancelled drops the round in progress: every step asks :data:`abandoning`,
so a long round (a transformer's, thousands of steps) stops within one step, not at its end.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neurons.learning.data import LearningData
from neurons.torch_threads import learning_threads, use_torch_threads

__all__ = [
    "LocalTraining",
    "TrainingAbandoned",
    "abandoning",
    "accuracy",
    "distillation_loss",
    "logits_of",
    "train_local",
]


class TrainingAbandoned(Exception):
    """Raised by a training step once :data:`abandoning` says the round is to be dropped."""


# A context variable, not an argument: local training is reached through Flower's ClientApp
# and the nodes' worker threads, which carry no argument from the run down to this loop, but
# do copy the context (``asyncio.to_thread``, ``asyncio.run``'s tasks, a direct call).
abandoning: ContextVar[Callable[[], bool] | None] = ContextVar("abandoning", default=None)


@dataclass(frozen=True)
class LocalTraining:
    steps: int = 100
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0
    temperature: float = 2.0
    soft_weight: float = 0.0
    proximal_mu: float = 0.0


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    labels: torch.Tensor | None,
    temperature: float,
    soft_weight: float,
) -> torch.Tensor:
    """The module docstring's loss; either term drops out where its input is missing."""
    hard = F.cross_entropy(student_logits, labels) if labels is not None else None
    if teacher_logits is None or soft_weight <= 0.0:
        if hard is None:
            raise ValueError("nothing to learn from: no labels and no teacher")
        return hard
    t = temperature
    soft = F.kl_div(
        F.log_softmax(student_logits / t, dim=-1),
        F.log_softmax(teacher_logits / t, dim=-1),
        reduction="batchmean",
        log_target=True,
    ) * (t * t)
    if hard is None or soft_weight >= 1.0:
        return soft
    return (1.0 - soft_weight) * hard + soft_weight * soft


def train_local(
    model: nn.Module,
    data: LearningData,
    config: LocalTraining,
    *,
    teacher_logits: np.ndarray | None = None,
    global_arrays: list[np.ndarray] | None = None,
) -> dict[str, float]:
    """``config.steps`` Adam steps on minibatches of ``data``; returns the mean loss."""
    if len(data) == 0:
        raise ValueError("no examples to train on")
    # In this thread (Flower's and the nodes' worker threads each have their own count); a
    # run's setting travels in the context, as ``abandoning`` does.
    use_torch_threads("learning", learning_threads.get())
    generator = torch.Generator().manual_seed(config.seed)
    soft = None if teacher_logits is None else torch.as_tensor(teacher_logits, dtype=torch.float32)
    anchors = None
    if config.proximal_mu > 0 and global_arrays is not None:
        anchors = [t.detach().clone() for t in _parameter_arrays(model, global_arrays)]
    # Dropout draws from torch's global generator: fork it, seeded per call, so runs repeat
    # and resume exactly and callers' random state is left alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return _loop(model, data, config, soft, anchors, generator)


def _loop(
    model: nn.Module,
    data: LearningData,
    config: LocalTraining,
    soft: torch.Tensor | None,
    anchors: list[torch.Tensor] | None,
    generator: torch.Generator,
) -> dict[str, float]:
    x = torch.as_tensor(data.x)
    y = None if data.y is None else torch.as_tensor(data.y)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    model.train()
    total, batch = 0.0, min(config.batch_size, len(data))
    order = torch.randperm(len(data), generator=generator)
    cursor = 0
    abandon = abandoning.get()
    for _ in range(config.steps):
        if abandon is not None and abandon():
            raise TrainingAbandoned("the round was dropped")
        if cursor + batch > len(order):
            order, cursor = torch.randperm(len(data), generator=generator), 0
        idx = order[cursor : cursor + batch]
        cursor += batch
        loss = distillation_loss(
            model(x[idx]),
            None if soft is None else soft[idx],
            None if y is None else y[idx],
            config.temperature,
            config.soft_weight,
        )
        if anchors is not None:
            prox = sum(
                ((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchors, strict=True)
            )
            loss = loss + config.proximal_mu / 2 * prox
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        total += float(loss.detach())
    return {"loss": total / max(config.steps, 1), "steps": float(config.steps)}


def _parameter_arrays(model: nn.Module, arrays: list[np.ndarray]) -> list[torch.Tensor]:
    """The trainable tensors among ``arrays`` (state_dict order also holds buffers)."""
    names = [name for name, _ in model.named_parameters()]
    keyed = dict(zip(model.state_dict().keys(), arrays, strict=True))
    return [torch.as_tensor(keyed[name]) for name in names]


@torch.no_grad()
def logits_of(model: nn.Module, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    model.eval()
    out = [model(torch.as_tensor(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)


def accuracy(model: nn.Module, data: LearningData) -> float:
    if data.y is None or len(data) == 0:
        raise ValueError("accuracy needs labelled examples")
    predicted = logits_of(model, data.x).argmax(axis=1)
    return float((predicted == data.y).mean())
