"""Datasets and partitions: real scikit-learn data, split and cut exactly as documented."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from neurons.errors import InvalidRequestError
from neurons.learning.data import DATASETS, LearningData, load_dataset, partition


def _rows(data: LearningData) -> set[bytes]:
    return {row.tobytes() for row in data.x}


@pytest.mark.parametrize("name", DATASETS)
def test_splits_are_disjoint_and_cover_the_dataset(name: str) -> None:
    from sklearn import datasets

    raw = getattr(datasets, f"load_{name}")()
    dataset = load_dataset(name)
    splits = (dataset.train, dataset.validation, dataset.test)
    assert sum(len(s) for s in splits) == len(raw.target)
    # The same per-feature scaling maps every raw row to one scaled row, so the splits hold
    # each raw example exactly once when their rows repeat exactly as often as the raw rows.
    raw_counts = Counter(row.tobytes() for row in np.asarray(raw.data, dtype=np.float32))
    split_counts = Counter(row.tobytes() for s in splits for row in s.x)
    assert sorted(split_counts.values()) == sorted(raw_counts.values())
    if max(raw_counts.values()) == 1:  # iris repeats a few rows; the others do not
        train, val, test = (_rows(s) for s in splits)
        assert not train & val and not train & test and not val & test
    # 70 / 10 / 20
    assert abs(len(dataset.test) - 0.2 * len(raw.target)) <= 1
    assert abs(len(dataset.validation) - 0.1 * len(raw.target)) <= 2


@pytest.mark.parametrize("name", DATASETS)
def test_splits_are_stratified(name: str) -> None:
    dataset = load_dataset(name)
    splits = (dataset.train, dataset.validation, dataset.test)
    labels = np.concatenate([s.y for s in splits if s.y is not None])
    overall = np.bincount(labels) / len(labels)
    for split in splits:
        assert split.y is not None
        share = np.bincount(split.y, minlength=len(overall)) / len(split)
        # each class's share within one example's worth (+ a little) of the overall share
        assert np.all(np.abs(share - overall) <= 1.5 / len(split) + 0.01), (split, share)


def test_standardisation_uses_training_statistics_only() -> None:
    dataset = load_dataset("digits")
    train = dataset.train.x.astype(np.float64)
    assert np.allclose(train.mean(axis=0), 0.0, atol=1e-4)
    varying = train.std(axis=0) > 1e-3
    assert varying.sum() > 50  # digits has a few always-blank pixels
    assert np.allclose(train.std(axis=0)[varying], 1.0, atol=1e-3)
    # held-out splits are scaled with the training mean and std, so they are *not* centred
    for held_out in (dataset.validation, dataset.test):
        means = held_out.x.astype(np.float64).mean(axis=0)
        assert np.abs(means).max() > 0.05


def test_split_is_seeded() -> None:
    first, again, other = load_dataset("wine", 0), load_dataset("wine", 0), load_dataset("wine", 1)
    assert np.array_equal(first.test.x, again.test.x)
    assert not np.array_equal(first.test.x, other.test.x)


def test_digits_carry_their_image_shape() -> None:
    dataset = load_dataset("digits")
    assert dataset.num_classes == 10
    assert dataset.train.num_features == 64
    assert dataset.train.sequence_shape == (8, 8)
    assert load_dataset("iris").train.sequence_shape is None


def _toy(labels: list[int], classes: int = 4) -> LearningData:
    y = np.asarray(labels, dtype=np.int64)
    x = np.arange(len(y) * 2, dtype=np.float32).reshape(len(y), 2)
    return LearningData(x, y, classes)


@pytest.mark.parametrize(
    ("labels", "parts", "expected"),
    [
        # sorted by label, cut into contiguous parts: each part holds one or two classes
        ([3, 0, 2, 1, 0, 3, 2, 1], 4, [[2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 2, 0], [0, 0, 0, 2]]),
        ([0, 1, 2, 3] * 3, 2, [[3, 3, 0, 0], [0, 0, 3, 3]]),
        ([0, 0, 0, 1, 1, 2, 2, 2, 3], 3, [[3, 0, 0, 0], [0, 2, 1, 0], [0, 0, 2, 1]]),
        ([1, 0] * 5, 1, [[5, 5, 0, 0]]),
    ],
)
def test_skewed_partition_label_counts(
    labels: list[int], parts: int, expected: list[list[int]]
) -> None:
    shares = partition(_toy(labels), parts, "skewed")
    assert [np.bincount(s.y, minlength=4).tolist() for s in shares if s.y is not None] == expected


@pytest.mark.parametrize(
    ("mode", "parts", "min_classes", "max_classes"),
    [("iid", 4, 10, 10), ("iid", 8, 10, 10), ("skewed", 4, 3, 4), ("skewed", 10, 1, 3)],
)
def test_digits_partitions(mode: str, parts: int, min_classes: int, max_classes: int) -> None:
    train = load_dataset("digits").train
    shares = partition(train, parts, mode, seed=0)
    assert len(shares) == parts
    sizes = [len(s) for s in shares]
    assert sum(sizes) == len(train) and max(sizes) - min(sizes) <= 1
    rows = [_rows(s) for s in shares]
    assert len(set().union(*rows)) == len(train)  # disjoint and complete
    classes = [len(np.unique(s.y)) for s in shares if s.y is not None]
    assert len(classes) == parts
    assert min(classes) >= min_classes and max(classes) <= max_classes


def test_iid_partition_is_seeded() -> None:
    train = load_dataset("digits").train
    a, b = partition(train, 4, "iid", seed=0), partition(train, 4, "iid", seed=0)
    c = partition(train, 4, "iid", seed=1)
    assert all(np.array_equal(x.x, y.x) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0].x, c[0].x)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: load_dataset("mnist"), "unknown dataset"),
        (lambda: partition(_toy([0, 1, 2, 3]), 2, "dirichlet"), "unknown partition"),
        (lambda: partition(_toy([0, 1, 2, 3]), 0), "cannot cut"),
        (lambda: partition(_toy([0, 1, 2, 3]), 5), "cannot cut"),
        (lambda: partition(_toy([0, 1, 2, 3]).unlabelled(), 2, "skewed"), "needs labels"),
        (lambda: LearningData(np.zeros(3, dtype=np.float32), None, 2), "2-D"),
        (lambda: LearningData(np.zeros((3, 2)), np.zeros(2, dtype=np.int64), 2), "rows"),
        (lambda: LearningData(np.zeros((3, 2)), None, 1), "num_classes"),
    ],
)
def test_bad_requests_are_rejected(call: object, message: str) -> None:
    assert callable(call)
    with pytest.raises(InvalidRequestError, match=message):
        call()


def test_subset_and_unlabelled_keep_the_shape() -> None:
    data = load_dataset("digits").test
    part = data.subset(np.array([0, 2, 4]))
    assert len(part) == 3 and part.num_classes == 10 and part.sequence_shape == (8, 8)
    assert part.y is not None and data.y is not None
    assert part.y.tolist() == data.y[[0, 2, 4]].tolist()
    blind = part.unlabelled()
    assert blind.y is None and np.array_equal(blind.x, part.x)
