"""Discovery: canonical names, and ``discover()`` against the session's real embedded neuron
(it serves smollm2:135m and gemma3:270m) plus a node on a dead port."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import ollama
import pytest

from neurons.client import NodeClient
from neurons.library.catalog import load_catalog
from neurons.library.discovery import Discovery, discover
from neurons.library.search import Library
from neurons.neuron.process import NeuronProcess
from neurons.ollama.names import canonical_name
from tests.conftest import free_port

HEX64 = re.compile(r"[0-9a-f]{64}")
CATALOG_NAMES = {m.name for m in load_catalog()}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("llama3", "llama3:latest"),
        ("llama3:8b", "llama3:8b"),
        ("llama3:latest", "llama3:latest"),
        ("library/llama3", "llama3:latest"),
        ("library/llama3:8b", "llama3:8b"),
        ("registry.ollama.ai/library/llama3", "llama3:latest"),
        ("registry.ollama.ai/library/llama3:latest", "llama3:latest"),
        ("user/model", "user/model:latest"),
        ("user/model:v1", "user/model:v1"),
        # a port in the host is no tag
        ("localhost:5000/user/model", "localhost:5000/user/model:latest"),
        ("localhost:5000/user/model:v1", "localhost:5000/user/model:v1"),
    ],
    ids=[
        "bare",
        "tagged",
        "latest",
        "library-prefix",
        "library-prefix-tagged",
        "registry-prefix",
        "registry-prefix-tagged",
        "namespace",
        "namespace-tagged",
        "host-port",
        "host-port-tagged",
    ],
)
def test_canonical_name(name: str, expected: str) -> None:
    assert canonical_name(name) == expected


def run_discover(urls: dict[str, str], catalog_names: set[str] = CATALOG_NAMES) -> Discovery:
    async def run() -> Discovery:
        clients = [NodeClient(url, name=name, timeout=10.0) for name, url in urls.items()]
        try:
            return await discover(clients, catalog_names)
        finally:
            for client in clients:
                await client.aclose()

    return asyncio.run(run())


def test_discover_a_real_neuron_and_a_dead_one(neuron: NeuronProcess) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    found = run_discover({"live": neuron.url, "dead": dead})
    assert found.unreachable == ["dead"]
    expected_context = {"smollm2:135m": 8192, "gemma3:270m": 32768}
    for name, context in expected_context.items():
        assert [c.node for c in found.copies[name]] == ["live"]
        copy = found.copies[name][0]
        assert copy.context_length == context
        assert copy.size_bytes > 0
        assert HEX64.fullmatch(copy.digest.removeprefix("sha256:")), copy.digest
        assert copy.parameter_size and copy.quantization
        # Both are in the catalog: no local-only entries for them.
        assert name not in found.local_models
    smol = found.copies["smollm2:135m"][0]
    assert (smol.parameter_size, smol.quantization) == ("134.52M", "Q4_1")
    # What each copy can do, as the node reports it.
    assert smol.capabilities == ("completion", "tools")
    assert found.copies["gemma3:270m"][0].capabilities == ("completion",)


def test_library_entries_list_what_the_nodes_copies_can_do(neuron: NeuronProcess) -> None:
    found = run_discover({"live": neuron.url})
    library = Library(load_catalog(), found.copies, found.local_models)
    smol = library.get("smollm2:135m")
    assert smol.capabilities == ("completion", "tools")
    details = smol.details()
    assert details["capabilities"] == ["completion", "tools"]
    assert details["installed_on"][0]["capabilities"] == ["completion", "tools"]
    assert library.get("gemma3:270m").summary()["capabilities"] == ["completion"]


def test_discover_two_names_for_one_node_merge_sorted(neuron: NeuronProcess) -> None:
    found = run_discover({"b-node": neuron.url, "a-node": neuron.url})
    assert [c.node for c in found.copies["smollm2:135m"]] == ["a-node", "b-node"]
    assert found.unreachable == []


@pytest.fixture
def copied_model(neuron: NeuronProcess) -> Iterator[str]:
    client = ollama.Client(host=neuron.url)
    client.copy("smollm2:135m", "disc:test")
    try:
        yield "disc:test"
    finally:
        client.delete("disc:test")


def test_a_model_outside_the_catalog_becomes_a_local_model(
    neuron: NeuronProcess, copied_model: str
) -> None:
    found = run_discover({"live": neuron.url})
    assert copied_model not in CATALOG_NAMES
    model = found.local_models[copied_model]
    # Built from the node's own metadata (/api/tags details, /api/show model_info).
    assert model.name == copied_model
    assert model.family == "llama"
    assert model.description == "Found on the network (llama, 134.52M)"
    assert model.parameters == 134_515_008
    assert model.parameter_size == "134.52M"
    assert model.quantization == "Q4_1"
    assert model.file_size_bytes == found.copies["smollm2:135m"][0].size_bytes
    assert model.context_length == 8192
    assert "completion" in model.capabilities
    assert model.categories == ("general",)
    assert model.sources == ("node metadata",)
    arch = model.architecture
    assert arch is not None and arch.name == "llama"
    assert (arch.block_count, arch.embedding_length, arch.head_count, arch.head_count_kv) == (
        30,
        576,
        9,
        3,
    )
    assert (arch.feed_forward_length, arch.vocab_size) == (1536, 49152)
    assert model.profile() is not None  # complete enough for the memory estimator
    # In the library it is installed, but not a catalog model.
    library = Library(load_catalog(), found.copies, found.local_models)
    entry = library.get("disc:test")
    assert entry.in_catalog is False
    assert [c.node for c in entry.installed_on] == ["live"]
    assert library.get("smollm2:135m").in_catalog is True


def test_catalog_names_decide_what_is_local(neuron: NeuronProcess) -> None:
    # With an empty catalog every model the node holds is a local model.
    found = run_discover({"live": neuron.url}, set())
    gemma = found.local_models["gemma3:270m"]
    assert gemma.family == "gemma3" and gemma.context_length == 32768
    assert "smollm2:135m" in found.local_models
