"""Capabilities across the network, with two real neurons behind a real gateway.

Both neurons serve smollm2:135m (completion, tools) and gemma3:270m (completion). Each also
holds ``capx:1``, made from smollm2:135m: on ``a`` with a bare ``{{ .Prompt }}`` template, on
``b`` with smollm2's tools template, so the two copies of one name differ in what they can do
(and the most preferred node, ``a``, has the lesser copy).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import ollama
import pytest

from neurons.network.gateway import Clock, Gateway, upstream_session
from neurons.network.health import HealthMonitor
from neurons.network.routing import BalancedPolicy
from neurons.neuron.process import NeuronProcess
from neurons.ollama.capabilities import CapabilityError
from neurons.store import Store
from tests.network.conftest import Cluster, cluster

MODEL = "smollm2:135m"
GEMMA = "gemma3:270m"
TWIN = "capx:1"
SHORT = {"num_predict": 4, "temperature": 0}
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
HI = [{"role": "user", "content": "Hi"}]
WANTS_TOOLS = ["completion", "tools"]
# Ollama's messages, word for word (the quotes differ between them in Ollama too).
NO_TOOLS = f"{GEMMA} does not support tools"
NO_THINKING = f'"{MODEL}" does not support thinking'
NO_INSERT = f"{GEMMA} does not support insert"


def create(url: str, body: dict[str, Any]) -> None:
    response = httpx.post(url + "/api/create", json={**body, "stream": False}, timeout=120)
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with cluster(tmp_path_factory.mktemp("caps"), ["a", "b"]) as running:
        create(
            running.neurons["a"].url, {"model": TWIN, "from": MODEL, "template": "{{ .Prompt }}"}
        )
        create(running.neurons["b"].url, {"model": TWIN, "from": MODEL})
        running.wait_until(lambda s: all(TWIN in n["capabilities"] for n in s.values()), timeout=30)
        yield running


def test_each_copy_reports_its_own_capabilities(twins: Cluster) -> None:
    status = twins.status()
    assert status["a"]["capabilities"][TWIN] == ["completion"]
    assert status["b"]["capabilities"][TWIN] == ["completion", "tools"]
    for node in status.values():
        assert node["capabilities"][MODEL] == ["completion", "tools"]
        assert node["capabilities"][GEMMA] == ["completion"]


def test_tags_union_and_show_carry_capabilities(twins: Cluster) -> None:
    models = httpx.get(twins.url + "/api/tags", timeout=30).json()["models"]
    by_name = {m["name"]: m for m in models}
    assert by_name[MODEL]["capabilities"] == ["completion", "tools"]
    assert by_name[GEMMA]["capabilities"] == ["completion"]
    # The union over the copies: a's copy (listed first) cannot call tools, b's can.
    assert sorted(by_name[TWIN]["nodes"]) == ["a", "b"]
    assert by_name[TWIN]["capabilities"] == ["completion", "tools"]
    client = ollama.Client(host=twins.url)
    assert client.show(MODEL).capabilities == ["completion", "tools"]
    assert client.show(GEMMA).capabilities == ["completion"]


def test_a_request_goes_only_to_a_copy_that_can_serve_it(twins: Cluster) -> None:
    plain = {"model": TWIN, "messages": HI, "stream": False, "options": SHORT}
    # Load a's copy: the routing policy now prefers a for TWIN (no load time there).
    warm = httpx.post(twins.url + "/api/chat?node=a", json=plain, timeout=120)
    assert warm.status_code == 200, warm.text
    twins.wait_until(lambda s: TWIN in s["a"]["loaded"] and TWIN not in s["b"]["loaded"])
    routed = httpx.post(twins.url + "/api/chat", json=plain, timeout=120)
    assert routed.headers["x-neurons-node"] == "a"  # the policy's choice, without tools

    with_tools = {**plain, "tools": [TOOL]}
    for _ in range(4):
        response = httpx.post(twins.url + "/api/chat", json=with_tools, timeout=120)
        assert response.status_code == 200, response.text
        assert response.headers["x-neurons-node"] == "b"
    # Named explicitly, a gets the request and refuses it itself, with the message the
    # gateway gives when no copy can.
    refused = httpx.post(twins.url + "/api/chat?node=a", json=with_tools, timeout=120)
    assert refused.status_code == 400 and refused.headers["x-neurons-node"] == "a"
    assert refused.json() == {"error": f"{TWIN} does not support tools"}


@pytest.mark.parametrize(
    ("path", "body", "error"),
    [
        ("/api/chat", {"model": GEMMA, "messages": HI, "tools": [TOOL]}, NO_TOOLS),
        ("/api/chat", {"model": MODEL, "messages": HI, "think": True}, NO_THINKING),
        ("/api/generate", {"model": MODEL, "prompt": "Hi", "think": "high"}, NO_THINKING),
        ("/api/generate", {"model": GEMMA, "prompt": "def f(", "suffix": "\n"}, NO_INSERT),
    ],
    ids=["tools", "think", "think-level", "suffix"],
)
def test_the_gateway_refuses_what_no_copy_can_do_as_a_node_would(
    twins: Cluster, path: str, body: dict[str, Any], error: str
) -> None:
    body = {**body, "stream": False, "options": SHORT}
    response = httpx.post(twins.url + path, json=body, timeout=60)
    assert response.status_code == 400
    assert response.json() == {"error": error}
    assert "x-neurons-node" not in response.headers  # answered without asking a node
    direct = httpx.post(twins.neurons["a"].url + path, json=body, timeout=60)
    assert (direct.status_code, direct.json()) == (400, {"error": error})


def test_the_ollama_client_gets_the_400(twins: Cluster) -> None:
    client = ollama.Client(host=twins.url)
    with pytest.raises(ollama.ResponseError) as refused:
        client.chat(model=GEMMA, messages=HI, tools=[TOOL], options=SHORT)
    assert refused.value.status_code == 400
    assert refused.value.error == NO_TOOLS
    reply = client.chat(model=MODEL, messages=HI, tools=[TOOL], options=SHORT)
    assert reply.done


class OlderOllama(httpx.AsyncBaseTransport):
    """The session's real neuron seen as an Ollama whose ``/api/tags`` lists no capabilities
    (the field is dropped on the way back); ``/api/show`` calls are counted, and those for a
    model in ``broken`` fail with a 500."""

    def __init__(self, broken: set[str]) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.broken = broken
        self.shown: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/show":
            model = json.loads(request.content)["model"]
            self.shown[model] += 1
            if model in self.broken:
                return httpx.Response(500, json={"error": "boom"})
        response = await self.inner.handle_async_request(request)
        if request.url.path != "/api/tags":
            return response
        data = json.loads(await response.aread())
        for entry in data["models"]:
            entry.pop("capabilities", None)
        return httpx.Response(response.status_code, json=data)

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_without_them_in_tags_they_come_from_show_once_per_digest(
    store: Store, neuron: NeuronProcess
) -> None:
    store.nodes.add("old", neuron.url, "ollama")
    transport = OlderOllama(broken={GEMMA})

    async def main() -> None:
        async with httpx.AsyncClient(transport=transport) as http, upstream_session() as session:
            monitor = HealthMonitor(store, http)
            gateway = Gateway(monitor, http, session, BalancedPolicy())
            await monitor.check_all()
            view = monitor.find("old")
            assert view is not None and view.state.routable
            assert view.capabilities[MODEL] == ("completion", "tools")
            # gemma's /api/show failed: unknown, which keeps the node a candidate.
            assert GEMMA not in view.capabilities
            assert gateway.candidates(GEMMA, WANTS_TOOLS, "chat") == [view]
            tags = {m["name"]: m for m in await gateway.union("/api/tags", Clock())}
            assert tags[MODEL]["capabilities"] == ["completion", "tools"]
            assert "capabilities" not in tags[GEMMA]

            await monitor.check_all()  # smollm2's digest is cached; gemma is asked again
            assert (transport.shown[MODEL], transport.shown[GEMMA]) == (1, 2)
            transport.broken.clear()
            await monitor.check_all()
            assert view.capabilities[GEMMA] == ("completion",)
            with pytest.raises(CapabilityError, match=f"^{NO_TOOLS}$"):
                gateway.candidates(GEMMA, WANTS_TOOLS, "chat")
            assert gateway.candidates(MODEL, WANTS_TOOLS, "chat") == [view]
            assert transport.shown[GEMMA] == 3  # known now: not asked again
            await monitor.check_all()
            assert transport.shown[GEMMA] == 3

    asyncio.run(main())
