"""The version bridge, on a real control plane: each node's Ollama version is read and shown,
an old node's ``/api/embed`` is served through ``/api/embeddings``, and the management API
answers under ``/api/ai/v1`` with its version header, the access check included.

The old node is a tiny real HTTP server written here: it says it is Ollama 0.1.30 and serves
only what 0.1.30 had of what the control plane asks (``/api/version``, ``/api/tags``,
``/api/embeddings``; no ``/api/ps``, no ``/api/embed``). A real old Ollama cannot run in
this sandbox, so this stands in for one on the wire. The new node is a real neuron, in mock
mode so that no model has to load.
"""

from __future__ import annotations

import doctest
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from neurons.api import versioning
from neurons.api.app import NodeSpec, create_control_plane
from neurons.api.server import ServerThread
from neurons.config import Settings
from neurons.network import versions
from neurons.neuron.process import NeuronProcess
from neurons.ollama import OLLAMA_COMPAT_VERSION
from tests.conftest import free_port, start_neuron

MASTER = "master-key-for-the-version-tests-0123456789"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
OLD_MODEL = "old-embed:latest"
# Change from probe to probe, so two status answers differ in them and nothing else.
VOLATILE = {"latency_ms", "in_flight", "requests", "failures"}


@dataclass
class OldOllama:
    server: ServerThread
    prompts: list[str] = field(default_factory=list)  # every /api/embeddings prompt


def old_ollama_app(prompts: list[str]) -> FastAPI:
    app = FastAPI()

    @app.get("/api/version")
    async def version() -> dict[str, str]:
        return {"version": "0.1.30"}

    @app.get("/api/tags")
    async def tags() -> dict[str, Any]:
        entry = {
            "name": OLD_MODEL,
            "model": OLD_MODEL,
            "modified_at": "2024-03-01T00:00:00Z",
            "size": 45_000_000,
            "digest": "ab" * 32,
            "details": {"format": "gguf", "family": "bert", "parameter_size": "23M"},
        }
        return {"models": [entry]}

    @app.post("/api/embeddings")
    async def embeddings(request: Request) -> JSONResponse:
        body = await request.json()
        name = str(body.get("model") or "")
        if (name if ":" in name else name + ":latest") != OLD_MODEL:
            error = f"model '{body.get('model')}' not found, try pulling it first"
            return JSONResponse({"error": error}, status_code=404)
        prompt = str(body.get("prompt") or "")
        prompts.append(prompt)
        # As 0.1.30: not normalized, and an empty prompt only loads the model.
        return JSONResponse({"embedding": raw_vector(prompt) if prompt else []})

    return app


def raw_vector(prompt: str) -> list[float]:
    return [float(len(prompt)), 2.0, float(sum(map(ord, prompt)) % 7), 1.0]


def unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector]


def same(got: list[list[float]], expected: list[list[float]]) -> bool:
    """Vectors equal up to float32 rounding (the OpenAI client decodes base64 float32)."""
    if [len(v) for v in got] != [len(v) for v in expected]:
        return False
    pairs = zip(sum(got, []), sum(expected, []), strict=True)
    return all(math.isclose(x, y, rel_tol=1e-6) for x, y in pairs)


@dataclass
class Plane:
    url: str
    old: OldOllama
    neuron: NeuronProcess

    def get(self, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.get(self.url + path, headers=ADMIN if headers is None else headers)

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        headers = ADMIN if headers is None else headers
        return httpx.post(self.url + path, json=body, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    root = tmp_path_factory.mktemp("versions")
    neuron = start_neuron(root / "new", "--mock")
    prompts: list[str] = []
    old = ServerThread(old_ollama_app(prompts), port=free_port()).start()
    try:
        settings = Settings(
            home=root / "control",
            ollama_base_url="",
            master_key=MASTER,
            health_interval_s=0.3,
        )
        specs = [NodeSpec("new", neuron.url, "embedded"), NodeSpec("old", old.url, "ollama")]
        with ServerThread(create_control_plane(settings, specs), port=free_port()) as server:
            yield Plane(server.url, OldOllama(old, prompts), neuron)
    finally:
        old.stop()
        neuron.stop()


def test_docstring_examples() -> None:
    for module in (versions, versioning):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0 and result.failed == 0


def test_each_node_version_is_recorded_and_shown(plane: Plane) -> None:
    nodes = {n["name"]: n for n in plane.get("/api/ai/network/status").json()["nodes"]}
    assert nodes["new"]["version"] == OLLAMA_COMPAT_VERSION  # what the real neuron reports
    # The old node is online although it has no /api/ps: it is not asked for it.
    assert (nodes["old"]["version"], nodes["old"]["state"]) == ("0.1.30", "online")
    assert nodes["old"]["models"] == [OLD_MODEL] and nodes["old"]["loaded"] == []


def test_embed_on_an_old_node_goes_through_embeddings(plane: Plane) -> None:
    inputs = ["why is the sky blue", "llamas", "why is the sky blue"]
    before = len(plane.old.prompts)
    response = plane.post("/api/embed", {"model": "old-embed", "input": inputs})
    assert response.status_code == 200, response.text
    assert response.headers["X-Neurons-Node"] == "old"
    answer = response.json()
    assert answer["model"] == "old-embed"
    assert same(answer["embeddings"], [unit(raw_vector(t)) for t in inputs])
    assert isinstance(answer["total_duration"], int)
    assert plane.old.prompts[before:] == inputs  # one /api/embeddings call per input
    # A single string, dimensions (cut, then normalized again) and an empty input.
    one = plane.post("/api/embed", {"model": OLD_MODEL, "input": "llamas", "dimensions": 2})
    assert same(one.json()["embeddings"], [unit(raw_vector("llamas")[:2])])
    empty = plane.post("/api/embed", {"model": OLD_MODEL, "input": []}).json()
    assert (empty["model"], empty["embeddings"]) == (OLD_MODEL, [])
    assert plane.old.prompts[-1] == ""  # the empty prompt that loads the model
    refused = plane.post("/api/embed", {"model": OLD_MODEL, "input": [1, 2]})
    assert (refused.status_code, refused.json()) == (400, {"error": "invalid input type"})


def test_openai_embeddings_reach_the_old_node_too(plane: Plane) -> None:
    client = openai.OpenAI(base_url=plane.url + "/v1", api_key=MASTER, max_retries=0)
    result = client.embeddings.create(model=OLD_MODEL, input=["a", "bc"])
    got = [list(d.embedding) for d in result.data]
    assert same(got, [unit(raw_vector("a")), unit(raw_vector("bc"))])


def test_a_current_node_gets_api_embed_as_is(plane: Plane) -> None:
    before = len(plane.old.prompts)
    response = plane.post("/api/embed", {"model": "mock-embed", "input": ["a", "b"]})
    assert response.status_code == 200 and response.headers["X-Neurons-Node"] == "new"
    assert len(response.json()["embeddings"]) == 2
    assert "prompt_eval_count" in response.json()  # the neuron's own /api/embed answer
    assert len(plane.old.prompts) == before


def _steady(status: dict[str, Any]) -> dict[str, Any]:
    nodes = [{k: v for k, v in n.items() if k not in VOLATILE} for n in status["nodes"]]
    return {**status, "nodes": nodes}


def test_management_api_under_v1(plane: Plane) -> None:
    # A health probe landing between the two calls may change what a node reports (a model
    # an earlier test loaded, capabilities read in the background): read the pair again then.
    for _ in range(5):
        plain = plane.get("/api/ai/network/status")
        pinned = plane.get("/api/ai/v1/network/status")
        assert plain.status_code == pinned.status_code == 200
        if _steady(pinned.json()) == _steady(plain.json()):
            break
    assert _steady(pinned.json()) == _steady(plain.json())
    for response in (plain, pinned):
        assert response.headers["X-Neurons-API-Version"] == "1"
    missing = plane.get("/api/ai/v1/no/such/thing")
    assert missing.status_code == 404 and missing.json()["error_code"] == "not_found"
    assert missing.headers["X-Neurons-API-Version"] == "1"
    # The Ollama API is not the management API: no version header there.
    assert "X-Neurons-API-Version" not in plane.get("/api/tags").headers


def test_access_checks_the_unversioned_path(plane: Plane) -> None:
    created = plane.post("/api/ai/v1/keys", {"name": "reader", "scope": "read"})
    assert created.status_code == 201, created.text
    reader = {"Authorization": f"Bearer {created.json()['secret']}"}
    # Keys are admin-only on both spellings (a GET would otherwise pass as a mere read).
    for path in ("/api/ai/keys", "/api/ai/v1/keys"):
        refused = plane.get(path, reader)
        assert refused.status_code == 403 and refused.json()["success"] is False
        assert refused.headers["X-Neurons-API-Version"] == "1"
    assert plane.get("/api/ai/v1/network/status", reader).status_code == 200
    anonymous = plane.get("/api/ai/v1/network/status", {})
    assert anonymous.status_code == 401 and anonymous.headers["X-Neurons-API-Version"] == "1"


def test_versioned_paths_are_never_seen_by_routes(tmp_path: Path) -> None:
    """Without a key store the middleware still rewrites: a route sees the seed's path."""
    app = FastAPI()
    app.add_middleware(versioning.APIVersionMiddleware)

    @app.get("/api/ai/echo/{rest:path}")
    async def echo(request: Request, rest: str) -> dict[str, str]:
        return {"path": request.url.path, "rest": rest}

    with ServerThread(app, port=free_port()) as server:
        response = httpx.get(server.url + "/api/ai/v1/echo/a%2Fb/c", timeout=10)
    assert response.json() == {"path": "/api/ai/echo/a/b/c", "rest": "a/b/c"}
    assert response.headers["X-Neurons-API-Version"] == "1"
