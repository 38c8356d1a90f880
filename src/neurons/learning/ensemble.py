"""Combining peers: knowledge-weighted ensembles and cross-node validation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["ensemble_accuracy", "knowledge_weights", "weighted_average"]


def knowledge_weights(levels: Sequence[float]) -> list[float]:
    """Weights proportional to each peer's knowledge level (equal when all are zero)."""
    if not levels:
        raise ValueError("no peers to weight")
    clipped = [max(float(level), 0.0) for level in levels]
    total = sum(clipped)
    if total == 0:
        return [1.0 / len(clipped)] * len(clipped)
    return [level / total for level in clipped]


def weighted_average(predictions: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """The weighted mean of probability matrices of one shape (rows still sum to 1)."""
    if len(predictions) != len(weights) or not predictions:
        raise ValueError("need one weight per prediction matrix, and at least one")
    shape = predictions[0].shape
    if any(p.shape != shape for p in predictions):
        raise ValueError("prediction matrices differ in shape")
    total = float(sum(weights))
    if total <= 0:
        raise ValueError("weights must not all be zero")
    stacked = np.stack([np.asarray(p, dtype=np.float64) for p in predictions])
    mixed = np.tensordot(np.asarray(weights, dtype=np.float64) / total, stacked, axes=1)
    return np.asarray(mixed)


def ensemble_accuracy(
    predictions: Sequence[np.ndarray], weights: Sequence[float], labels: np.ndarray
) -> float:
    return float((weighted_average(predictions, weights).argmax(axis=1) == labels).mean())
