"""Tests of the distributed-learning package (``neurons.learning``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """The models here are tiny. On two busy cores a second OpenMP thread makes each step
    tens of times slower (it waits at every barrier), so these tests train on one thread.
    A module imports this fixture to use it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
