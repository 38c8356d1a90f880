"""Public ids name rows only as plain ASCII numbers (found by the API fuzz: ``'³'``)."""

from __future__ import annotations

import doctest

import pytest

from neurons.errors import JobNotFoundError, LearningRunNotFoundError, SessionNotFoundError
from neurons.store import Store, ids


def test_docstring_examples() -> None:
    result = doctest.testmod(ids)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("bad", ["³", "¹6", "٣", "1\n2", "+1", "1_000"])
def test_unicode_and_odd_digits_name_no_row(store: Store, bad: str) -> None:
    with pytest.raises(SessionNotFoundError):
        store.optimization.get(bad)
    with pytest.raises(JobNotFoundError):
        store.fine_tuning.get(bad)
    with pytest.raises(LearningRunNotFoundError):
        store.learning.get(bad)
