"""The data learning runs train on: scikit-learn's bundled datasets, split and partitioned.

Every dataset here ships inside the scikit-learn wheel, so runs work offline. A
:class:`Dataset` is split once, stratified and seeded, into train / validation / test;
features are standardised with the training split's statistics only.

Partitions hand each node a share of the training split:

- ``iid``: a seeded shuffle cut into equal parts; every node sees every class.
- ``skewed``: the training split sorted by label and cut into contiguous parts, so each node
  holds two or three of digits' ten classes (the harsh label skew of McMahan et al. 2017).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from neurons.errors import InvalidRequestError

__all__ = [
    "DATASETS",
    "PARTITIONS",
    "Dataset",
    "LearningData",
    "load_dataset",
    "partition",
]

PARTITIONS: tuple[str, ...] = ("iid", "skewed")


def _loader(name: str) -> Callable[[], Any]:
    from sklearn import datasets  # imported late: scikit-learn takes ~1 s to import

    loaders: dict[str, Callable[[], Any]] = {
        "digits": datasets.load_digits,
        "iris": datasets.load_iris,
        "wine": datasets.load_wine,
        "breast_cancer": datasets.load_breast_cancer,
    }
    return loaders[name]


# Datasets whose rows are images: the transformer reads them as a sequence of pixel rows.
_SEQUENCE_SHAPES: dict[str, tuple[int, int]] = {"digits": (8, 8)}
DATASETS: tuple[str, ...] = ("digits", "iris", "wine", "breast_cancer")


@dataclass(frozen=True)
class LearningData:
    """Examples a node learns from or is judged on. ``y`` is ``None`` for an unlabelled
    transfer set (distillation needs only the teacher's predictions)."""

    x: np.ndarray
    y: np.ndarray | None
    num_classes: int
    sequence_shape: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.x.ndim != 2:
            raise InvalidRequestError(f"x must be a 2-D array, got shape {self.x.shape}")
        if self.y is not None and len(self.y) != len(self.x):
            raise InvalidRequestError(f"x has {len(self.x)} rows but y has {len(self.y)}")
        if self.num_classes < 2:
            raise InvalidRequestError("num_classes must be at least 2")

    def __len__(self) -> int:
        return len(self.x)

    @property
    def num_features(self) -> int:
        return int(self.x.shape[1])

    def subset(self, indices: np.ndarray) -> LearningData:
        y = None if self.y is None else self.y[indices]
        return LearningData(self.x[indices], y, self.num_classes, self.sequence_shape)

    def unlabelled(self) -> LearningData:
        return LearningData(self.x, None, self.num_classes, self.sequence_shape)


@dataclass(frozen=True)
class Dataset:
    name: str
    train: LearningData
    validation: LearningData
    test: LearningData

    @property
    def num_classes(self) -> int:
        return self.train.num_classes


@lru_cache(maxsize=8)
def load_dataset(name: str, seed: int = 0) -> Dataset:
    """``name`` split 70/10/20 into train / validation / test, stratified with ``seed``."""
    if name not in DATASETS:
        raise InvalidRequestError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    from sklearn.model_selection import train_test_split

    bunch = _loader(name)()
    x = np.asarray(bunch.data, dtype=np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=0.2, random_state=seed, stratify=y
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=0.125, random_state=seed, stratify=y_rest
    )
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0) + 1e-6  # digits has always-blank pixels

    def wrap(xs: np.ndarray, ys: np.ndarray) -> LearningData:
        scaled = ((xs - mean) / std).astype(np.float32)
        return LearningData(scaled, ys, int(y.max()) + 1, _SEQUENCE_SHAPES.get(name))

    return Dataset(name, wrap(x_train, y_train), wrap(x_val, y_val), wrap(x_test, y_test))


def partition(
    data: LearningData, parts: int, mode: str = "iid", seed: int = 0
) -> list[LearningData]:
    """``data`` cut into ``parts`` disjoint shares (see the module docstring for ``mode``)."""
    if mode not in PARTITIONS:
        raise InvalidRequestError(f"unknown partition {mode!r}; choose iid or skewed")
    if not 1 <= parts <= len(data):
        raise InvalidRequestError(f"cannot cut {len(data)} examples into {parts} parts")
    if mode == "skewed":
        if data.y is None:
            raise InvalidRequestError("a skewed partition needs labels")
        order = np.argsort(data.y, kind="stable")
    else:
        order = np.random.default_rng(seed).permutation(len(data))
    return [data.subset(np.sort(chunk)) for chunk in np.array_split(order, parts)]
