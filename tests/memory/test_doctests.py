"""The memory package's docstring examples are run, so they stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["neurons.cli.memory", "neurons.memory.service", "neurons.memory.synthesis"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
