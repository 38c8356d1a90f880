"""Local training: the distillation loss term by term, FedProx's pull, and seeded steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neurons.learning.data import LearningData, load_dataset
from neurons.learning.models import ModelSpec, build_model, get_arrays
from neurons.learning.training import (
    LocalTraining,
    accuracy,
    distillation_loss,
    logits_of,
    train_local,
)
from tests.learning import one_torch_thread  # noqa: F401  (autouse)

SPEC = ModelSpec("mlp", 64, 10, (8, 8), hidden_size=16)


@pytest.fixture
def logits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(16, 10, generator=generator) * 2
    teacher = torch.randn(16, 10, generator=generator) * 3
    labels = torch.randint(0, 10, (16,), generator=generator)
    return student, teacher, labels


def _kl(student: torch.Tensor, teacher: torch.Tensor, t: float) -> torch.Tensor:
    """KL(softmax(teacher/T) || softmax(student/T)), averaged over the batch, by hand."""
    p = F.softmax(teacher / t, dim=-1)
    return (p * (p.log() - F.log_softmax(student / t, dim=-1))).sum(dim=-1).mean()


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0, 10.0])
def test_soft_term_is_scaled_by_t_squared(
    logits: tuple[torch.Tensor, torch.Tensor, torch.Tensor], temperature: float
) -> None:
    student, teacher, labels = logits
    loss = distillation_loss(student, teacher, labels, temperature, 1.0)
    expected = temperature**2 * _kl(student, teacher, temperature)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_t_squared_keeps_soft_gradients_the_same_size() -> None:
    """Hinton et al.: the soft term's gradients scale as 1/T²; the T² factor undoes that."""
    generator = torch.Generator().manual_seed(1)
    teacher = torch.randn(64, 10, generator=generator)
    base = torch.randn(64, 10, generator=generator)
    norms = []
    for t in (1.0, 4.0, 16.0):
        student = base.clone().requires_grad_(True)
        distillation_loss(student, teacher, None, t, 1.0).backward()  # type: ignore[no-untyped-call]
        assert student.grad is not None
        norms.append(float(student.grad.norm()))
    # without T² the gradient would be 256 times smaller at T = 16 than at T = 1
    assert max(norms) / min(norms) < 1.25


def test_soft_weight_zero_is_cross_entropy(
    logits: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> None:
    student, teacher, labels = logits
    loss = distillation_loss(student, teacher, labels, 2.0, 0.0)
    assert torch.equal(loss, F.cross_entropy(student, labels))
    assert torch.equal(distillation_loss(student, None, labels, 2.0, 0.7), loss)


def test_soft_weight_one_is_the_soft_term_alone(
    logits: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> None:
    student, teacher, labels = logits
    loss = distillation_loss(student, teacher, labels, 3.0, 1.0)
    # the labels make no difference at w = 1
    assert torch.equal(loss, distillation_loss(student, teacher, 9 - labels, 3.0, 1.0))
    assert loss.item() == pytest.approx(9.0 * _kl(student, teacher, 3.0).item(), rel=1e-5)


@pytest.mark.parametrize("weight", [0.1, 0.5, 0.9])
def test_intermediate_weight_mixes_the_terms(
    logits: tuple[torch.Tensor, torch.Tensor, torch.Tensor], weight: float
) -> None:
    student, teacher, labels = logits
    hard = distillation_loss(student, teacher, labels, 2.0, 0.0)
    soft = distillation_loss(student, teacher, labels, 2.0, 1.0)
    mixed = distillation_loss(student, teacher, labels, 2.0, weight)
    assert mixed.item() == pytest.approx(((1 - weight) * hard + weight * soft).item(), rel=1e-6)


def test_unlabelled_examples_learn_from_the_teacher_only(
    logits: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> None:
    student, teacher, _ = logits
    for weight in (0.3, 1.0):
        loss = distillation_loss(student, teacher, None, 2.0, weight)
        assert loss.item() == pytest.approx(4.0 * _kl(student, teacher, 2.0).item(), rel=1e-5)
    assert distillation_loss(teacher, teacher, None, 2.0, 1.0).item() == pytest.approx(0, abs=1e-6)
    with pytest.raises(ValueError, match="nothing to learn"):
        distillation_loss(student, None, None, 2.0, 1.0)
    with pytest.raises(ValueError, match="nothing to learn"):
        distillation_loss(student, teacher, None, 2.0, 0.0)


def _distance(model: torch.nn.Module, anchor: list[np.ndarray]) -> float:
    return float(sum(((a - b) ** 2).sum() for a, b in zip(get_arrays(model), anchor, strict=True)))


def test_proximal_term_pulls_weights_toward_the_anchor() -> None:
    train = load_dataset("digits").train
    anchor = get_arrays(build_model(SPEC, 0))
    distances = {}
    for mu in (0.0, 0.1, 10.0):
        model = build_model(SPEC, 0)
        config = LocalTraining(steps=60, learning_rate=1e-2, proximal_mu=mu)
        train_local(model, train, config, global_arrays=anchor)
        distances[mu] = _distance(model, anchor)
    assert distances[10.0] < distances[0.1] < distances[0.0]
    assert distances[10.0] < 0.5 * distances[0.0]


def test_proximal_term_needs_global_arrays() -> None:
    """μ > 0 with no global weights trains exactly as μ = 0 (nothing to be pulled toward)."""
    train = load_dataset("digits").train
    plain, prox = build_model(SPEC, 0), build_model(SPEC, 0)
    train_local(plain, train, LocalTraining(steps=10))
    train_local(prox, train, LocalTraining(steps=10, proximal_mu=1.0))
    assert all(
        np.array_equal(a, b) for a, b in zip(get_arrays(plain), get_arrays(prox), strict=True)
    )


def test_training_is_seeded_and_learns() -> None:
    dataset = load_dataset("digits")
    runs = []
    for _ in range(2):
        model = build_model(SPEC, 0)
        before = accuracy(model, dataset.test)
        result = train_local(model, dataset.train, LocalTraining(steps=150, learning_rate=1e-2))
        runs.append(get_arrays(model))
        assert result["steps"] == 150 and result["loss"] > 0
        assert accuracy(model, dataset.test) > max(0.85, before + 0.5)
    assert all(np.array_equal(a, b) for a, b in zip(*runs, strict=True))


def test_soft_targets_alone_teach_without_labels() -> None:
    dataset = load_dataset("digits")
    teacher = build_model(SPEC, 0)
    train_local(teacher, dataset.train, LocalTraining(steps=150, learning_rate=1e-2))
    student = build_model(SPEC, 1)
    soft = logits_of(teacher, dataset.train.x)
    train_local(
        student,
        dataset.train.unlabelled(),
        LocalTraining(steps=150, learning_rate=1e-2, soft_weight=1.0),
        teacher_logits=soft,
    )
    assert accuracy(student, dataset.test) > 0.8


def test_bad_inputs() -> None:
    model = build_model(SPEC)
    empty = LearningData(np.zeros((0, 64), dtype=np.float32), np.zeros(0, dtype=np.int64), 10)
    with pytest.raises(ValueError, match="no examples"):
        train_local(model, empty, LocalTraining(steps=1))
    with pytest.raises(ValueError, match="labelled"):
        accuracy(model, load_dataset("digits").test.unlabelled())
    with pytest.raises(ValueError, match="nothing to learn"):
        train_local(model, load_dataset("digits").test.unlabelled(), LocalTraining(steps=1))
    assert logits_of(model, np.zeros((0, 64), dtype=np.float32)).shape == (0, 0)
