"""Knowledge-weighted ensembles."""

from __future__ import annotations

import numpy as np
import pytest

from neurons.learning.ensemble import ensemble_accuracy, knowledge_weights, weighted_average


@pytest.mark.parametrize(
    ("levels", "weights"),
    [
        ([0.5, 0.5], [0.5, 0.5]),
        ([0.9, 0.3], [0.75, 0.25]),
        ([0.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]),
        ([0.8, -0.2], [1.0, 0.0]),  # negative levels count as zero
        ([0.0, 0.4], [0.0, 1.0]),
        ([0.7], [1.0]),
    ],
)
def test_knowledge_weights(levels: list[float], weights: list[float]) -> None:
    assert knowledge_weights(levels) == pytest.approx(weights)
    assert sum(knowledge_weights(levels)) == pytest.approx(1.0)


def test_knowledge_weights_needs_peers() -> None:
    with pytest.raises(ValueError, match="no peers"):
        knowledge_weights([])


def test_weighted_average_is_normalised() -> None:
    a = np.array([[1.0, 0.0], [0.5, 0.5]])
    b = np.array([[0.0, 1.0], [0.1, 0.9]])
    mixed = weighted_average([a, b], [3.0, 1.0])  # weights need not sum to 1
    assert np.allclose(mixed, [[0.75, 0.25], [0.4, 0.6]])
    assert np.allclose(mixed.sum(axis=1), 1.0)
    assert np.allclose(weighted_average([a], [0.2]), a)


@pytest.mark.parametrize(
    ("predictions", "weights", "message"),
    [
        ([], [], "at least one"),
        ([np.ones((2, 2))], [0.5, 0.5], "one weight per"),
        ([np.ones((2, 2)), np.ones((3, 2))], [1.0, 1.0], "differ in shape"),
        ([np.ones((2, 2)), np.ones((2, 2))], [0.0, 0.0], "must not all be zero"),
    ],
)
def test_weighted_average_rejects(
    predictions: list[np.ndarray], weights: list[float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        weighted_average(predictions, weights)


def test_a_weighted_ensemble_beats_its_members() -> None:
    """Two members each wrong on a different half; the ensemble's weights break ties."""
    labels = np.array([0, 1, 0, 1])
    first = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.6, 0.4]])  # right on 0-1
    second = np.array([[0.45, 0.55], [0.55, 0.45], [0.95, 0.05], [0.1, 0.9]])  # right on 2-3
    assert ensemble_accuracy([first], [1.0], labels) == 0.5
    assert ensemble_accuracy([second], [1.0], labels) == 0.5
    assert ensemble_accuracy([first, second], [0.5, 0.5], labels) == 1.0
    # all the weight on one member: the ensemble is that member
    assert ensemble_accuracy([first, second], [1.0, 0.0], labels) == 0.5
