"""Fixtures for the plugin tests: a host with the real installed example plugin loaded.

``neurons-example-plugin`` (tests/fixtures/neurons-example-plugin) is pip-installed for the test
session by the root conftest's ``example_plugin`` fixture, so its entry points are found exactly
as a third-party package's are.
"""

from __future__ import annotations

import importlib.metadata

import pytest

from neurons.plugins import PluginHost

EXAMPLE_DIST = "neurons-example-plugin"


def example_entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    try:
        dist = importlib.metadata.distribution(EXAMPLE_DIST)
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(f"{EXAMPLE_DIST} is not installed (see the example_plugin fixture)")
    return {ep.name: ep for ep in dist.entry_points if ep.group == "neurons"}


@pytest.fixture
def host() -> PluginHost:
    """A fresh host with every installed ``neurons`` entry point loaded."""
    host = PluginHost()
    host.load_entry_points()
    return host
