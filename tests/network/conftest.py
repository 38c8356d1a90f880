"""A real network on loopback: embedded neuron subprocesses behind a control plane served by
uvicorn on a thread. Nothing is mocked; fast health intervals and breaker cooldowns keep the
failure tests short."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from neurons.api.app import NodeSpec, create_control_plane
from neurons.api.server import ServerThread
from neurons.config import Settings
from neurons.neuron.process import NeuronProcess
from neurons.store import Store, open_store
from tests.conftest import free_port, start_neuron

FAST = {"health_interval_s": 0.3, "breaker_failures": 2, "breaker_cooldown_s": 1.0}


@dataclass
class Cluster:
    gateway: ServerThread
    neurons: dict[str, NeuronProcess]
    root: Path

    @property
    def url(self) -> str:
        return self.gateway.url

    def client(self, timeout: float = 120.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def status(self) -> dict[str, dict[str, Any]]:
        nodes = httpx.get(self.url + "/api/ai/network/status", timeout=10).json()["nodes"]
        return {n["name"]: n for n in nodes}

    def wait_until(
        self, check: Callable[[dict[str, dict[str, Any]]], bool], timeout: float = 30.0
    ) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if check(status):
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met in {timeout}s: {status}")
            time.sleep(0.1)

    def kill(self, name: str) -> None:
        """SIGKILL: no graceful shutdown, open connections just break."""
        process = self.neurons[name].process
        assert process is not None
        process.kill()
        process.wait(10)

    def restart(self, name: str) -> None:
        old = self.neurons[name]
        self.neurons[name] = NeuronProcess(
            home=old.home, port=old.port, extra_args=old.extra_args, log_path=old.log_path
        ).start()


@contextmanager
def cluster(
    root: Path, names: list[str], bare: tuple[str, ...] = (), **settings: Any
) -> Iterator[Cluster]:
    """Neurons ``names`` behind one gateway; those in ``bare`` start without any model."""
    neurons: dict[str, NeuronProcess] = {}
    try:
        for name in names:
            extra = ("--no-default-models",) if name in bare else ()
            neurons[name] = start_neuron(root / name, *extra)
        config = Settings(home=root / "control", **{**FAST, **settings})
        specs = [NodeSpec(name, n.url, "embedded") for name, n in neurons.items()]
        app = create_control_plane(config, specs)
        with ServerThread(app, port=free_port()) as gateway:
            running = Cluster(gateway, neurons, root)
            running.wait_until(lambda s: all(n["state"] == "online" for n in s.values()))
            yield running
    finally:
        for process in neurons.values():
            process.stop()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh, migrated SQLite store file."""
    opened = open_store(f"sqlite:///{tmp_path}/s.db")
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two neurons (a, b) with the offline models, behind one gateway."""
    with cluster(tmp_path_factory.mktemp("pair"), ["a", "b"]) as running:
        yield running
