"""Shared fixtures: free loopback ports and real embedded neuron subprocesses.

Nothing here is mocked: the neuron is ``neurons serve-node`` in its own process, on a free
loopback port, with a models directory in a temp dir, importing the offline default models.
"""

from __future__ import annotations

import importlib
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from neurons.neuron.process import NeuronProcess
from neurons.store import Store, open_store
from tests.pg import postgres_server  # noqa: F401  (session-scoped: one server, if any)

EXAMPLE_PLUGIN = Path(__file__).parent / "fixtures" / "neurons-example-plugin"


@pytest.fixture(scope="session", autouse=True)
def example_plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """pip-install the example plugin package into a directory on ``sys.path`` for this test
    session: its entry points are found exactly as an installed third-party package's, and it
    stays out of the venv that ``neurons up`` runs from (its ``broken`` entry point would be
    reported on every command there)."""
    target = tmp_path_factory.mktemp("site-packages")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--target", str(target), str(EXAMPLE_PLUGIN)],
        check=True,
    )  # fmt: skip
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    try:
        yield target
    finally:
        sys.path.remove(str(target))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def neuron_status(neuron: NeuronProcess) -> dict[str, Any]:
    """The neuron's own counters (``/api/neuron/status``)."""
    result: dict[str, Any] = httpx.get(neuron.url + "/api/neuron/status", timeout=10).json()
    return result


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll until ``predicate`` holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached")


def start_neuron(home: Path, *extra: str, env: dict[str, str] | None = None) -> NeuronProcess:
    return NeuronProcess(
        home=home,
        port=free_port(),
        extra_args=list(extra),
        env=env,
        log_path=home.parent / f"{home.name}.log",
    ).start()


@pytest.fixture(scope="session")
def neuron(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NeuronProcess]:
    """One embedded neuron for the whole session (model loads are the slow part)."""
    home = tmp_path_factory.mktemp("neuron") / "home"
    process = start_neuron(home)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def ollama_client(neuron: NeuronProcess):  # type: ignore[no-untyped-def]
    import ollama

    return ollama.Client(host=neuron.url)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A real SQLite file of the test's own; nested, so opening it also creates the parent."""
    return f"sqlite:///{tmp_path / 'home' / 'neurons.db'}"


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """A store opened (and migrated) on :func:`db_url`, closed after the test."""
    opened = open_store(db_url)
    try:
        yield opened
    finally:
        opened.close()
