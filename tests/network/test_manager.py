"""NetworkManager (the seed's four verbs and more) against a real store and the real neuron."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from neurons.config import Settings
from neurons.errors import InvalidRequestError, NodeExistsError, NodeNotFoundError
from neurons.network.manager import NetworkManager, check_url, detect_kind, node_name_for
from neurons.neuron.process import NeuronProcess
from neurons.store import Store
from tests.conftest import free_port

SMOL = "smollm2:135m"


def run(store: Store, scenario: Callable[[NetworkManager], Awaitable[None]]) -> None:
    async def main() -> None:
        manager = NetworkManager(store, Settings(home=Path(str(store.engine.url.database)).parent))
        try:
            await scenario(manager)
        finally:
            await manager.aclose()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("http://10.0.0.5:11434", "10.0.0.5-11434"),
        ("http://gpu-1:8000/", "gpu-1-8000"),
        ("http://gpu-1", "gpu-1-80"),
        ("https://gpu-1", "gpu-1-443"),
    ],
)
def test_node_name_for(url: str, name: str) -> None:
    assert node_name_for(url) == name


@pytest.mark.parametrize(
    "url",
    ["ftp://x", "localhost:11434", "http://h:1/path", "", "http://", "http://h:1/?q=1"],
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidRequestError):
        check_url(url)


@pytest.mark.parametrize("url", ["ftp://x", "localhost:11434", "http://h:1/path", ""])
def test_add_neuron_refuses_bad_urls(store: Store, url: str) -> None:
    async def scenario(manager: NetworkManager) -> None:
        with pytest.raises(InvalidRequestError):
            await manager.add_neuron(url)

    run(store, scenario)
    assert store.nodes.list() == []


def test_check_url_strips_the_trailing_slash() -> None:
    assert check_url("http://h:1/") == "http://h:1"


def test_detect_kind(neuron: NeuronProcess) -> None:
    async def detect() -> list[str]:
        async with httpx.AsyncClient() as http:
            dead = f"http://127.0.0.1:{free_port()}"
            return [await detect_kind(http, neuron.url), await detect_kind(http, dead)]

    assert asyncio.run(detect()) == ["embedded", "ollama"]


def test_add_connect_manage_and_remove(store: Store, neuron: NeuronProcess) -> None:
    dead = f"http://127.0.0.1:{free_port()}"

    async def scenario(manager: NetworkManager) -> None:
        added = await manager.add_neuron(neuron.url + "/", labels={"zone": "a"}, priority=2)
        assert added["name"] == node_name_for(neuron.url)
        assert (added["kind"], added["state"], added["url"]) == ("embedded", "online", neuron.url)
        assert (added["labels"], added["priority"]) == ({"zone": "a"}, 2)
        assert SMOL in added["models"]
        with pytest.raises(NodeExistsError):
            await manager.add_neuron(neuron.url, name=added["name"])
        with pytest.raises(InvalidRequestError):
            await manager.add_neuron(neuron.url, name="odd", kind="vllm")
        gone = await manager.add_neuron(dead, name="gone", kind="ollama")
        assert (gone["kind"], gone["state"]) == ("ollama", "offline")

        assert await manager.connect_neurons() == {added["name"]: "online", "gone": "offline"}
        described = await manager.manage_state()
        assert [d["name"] for d in described] == [added["name"], "gone"]  # priority first
        assert described[0]["state"] == "online" and described[0]["version"]

        status = manager.status()
        assert (status["healthy"], status["total"]) == (1, 2)
        assert status["models"][SMOL] == [added["name"]]
        assert status["models"]["gemma3:270m"] == [added["name"]]
        assert status["routing_policy"] == "balanced"
        assert [n["name"] for n in status["nodes"]] == [added["name"], "gone"]

        await manager.remove_neuron("gone")
        assert [v.name for v in manager.neurons] == [added["name"]]
        with pytest.raises(NodeNotFoundError):
            await manager.remove_neuron("gone")

    run(store, scenario)
    record = store.nodes.get(node_name_for(neuron.url))
    assert (record.kind, record.labels, record.priority) == ("embedded", {"zone": "a"}, 2)
    assert [n.name for n in store.nodes.list()] == [record.name]


def test_add_a_neuron_process_and_drain(store: Store, neuron: NeuronProcess) -> None:
    async def scenario(manager: NetworkManager) -> None:
        added = await manager.add_neuron(neuron, name="proc")  # anything with a .url
        assert added["url"] == neuron.url and added["state"] == "online"
        drained = await manager.drain("proc")
        assert drained["state"] == "draining" and manager.status()["healthy"] == 0
        resumed = await manager.drain("proc", drain=False)
        assert resumed["state"] == "online" and manager.status()["healthy"] == 1

    run(store, scenario)


def test_synchronize_with_nothing_to_do(store: Store, neuron: NeuronProcess) -> None:
    store.placements.set(SMOL, replicas=1)

    async def scenario(manager: NetworkManager) -> None:
        await manager.add_neuron(neuron, name="only")
        report: dict[str, Any] = (await manager.synchronize_neurons()).to_dict()
        assert report["transfers"] == [] and report["problems"] == []
        assert report["skipped"] == [{"model": SMOL, "node": "only", "reason": "present"}]

    run(store, scenario)
