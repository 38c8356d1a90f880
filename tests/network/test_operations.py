"""The operations layer (:mod:`neurons.network.operations`): one target selection and one
per-node result for pull, create, copy and delete, whichever API asks. Driven against real
embedded neurons on loopback, directly and through a control plane's two APIs.

A failing remote node cannot exist here (the neurons are ours, and answer properly), so a
stand-in HTTP server plays one: it answers the health probes as a node does and every model
operation with a 500. The same stand-in, told to succeed slowly, shows that the nodes run at
once; registered as an OpenAI-compatible node it shows that such a node is never contacted.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from neurons.api.app import NodeSpec, create_control_plane
from neurons.api.server import ServerThread
from neurons.config import Settings
from neurons.errors import (
    InvalidRequestError,
    ModelNotFoundError,
    NodeError,
    NodeNotFoundError,
    NoNodeAvailableError,
)
from neurons.network.openai_inventory import skip_reason
from neurons.network.operations import (
    Candidate,
    Operation,
    OperationResult,
    Operations,
    choose,
)
from neurons.neuron.process import NeuronProcess
from neurons.store import Store
from tests.conftest import free_port, start_neuron
from tests.network.conftest import FAST

MODEL = "smollm2:135m"
BOOM = "boom: a stand-in node that fails every model operation"
DRAINING = "skipped: draining (a draining node takes only deletes)"
MGMT = "/api/ai/ollama/models"


class StandIn:
    """A node on a thread: health probes answered, model operations failed with a 500 (or,
    with ``fail=False``, answered with success after ``delay_s``). Records what it was asked."""

    def __init__(self, *, fail: bool = True, delay_s: float = 0.0) -> None:
        self.requests: list[tuple[str, str]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                answers: dict[str, dict[str, Any]] = {
                    "/api/version": {"version": "0.6.0"},
                    "/api/ps": {"models": []},
                    "/api/tags": {"models": [{"name": MODEL, "model": MODEL}]},
                    "/v1/models": {"object": "list", "data": [{"id": MODEL}]},
                }
                answer = answers.get(self.path)
                self._answer(200 if answer else 404, answer or {"error": "not found"})

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                stand_in.requests.append((self.command, self.path))
                time.sleep(delay_s)
                if fail:
                    self._answer(500, {"error": BOOM})
                else:
                    self._answer(200, {"status": "success"})

            do_DELETE = do_POST  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def operations_asked(self) -> list[str]:
        """The model operations it received (not the monitor's /api/show)."""
        return [path for _, path in self.requests if path != "/api/show"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def neurons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, NeuronProcess]]:
    root = tmp_path_factory.mktemp("ops")
    started: dict[str, NeuronProcess] = {}
    try:
        for name in ("a", "b"):
            started[name] = start_neuron(root / name)
        yield started
    finally:
        for process in started.values():
            process.stop()


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    server = StandIn()
    try:
        yield server
    finally:
        server.close()


def _real(neurons: dict[str, NeuronProcess], state: str = "online") -> list[Candidate]:
    return [Candidate(name, n.url, "embedded", state) for name, n in neurons.items()]


def _run(
    candidates: list[Candidate],
    operation: Operation,
    body: dict[str, Any],
    **kwargs: Any,
) -> OperationResult:
    async def main() -> OperationResult:
        async def nodes() -> list[Candidate]:
            return candidates

        async with httpx.AsyncClient(timeout=120) as http:
            return await Operations(http, nodes).run(operation, body, **kwargs)

    return asyncio.run(main())


def _holders(neuron: NeuronProcess) -> set[str]:
    models = httpx.get(neuron.url + "/api/tags", timeout=10).json()["models"]
    return {m["name"] for m in models}


def _outcomes(result: OperationResult) -> dict[str, tuple[bool, int, str | None, str | None]]:
    return {r.node: (r.ok, r.status, r.error, r.skipped) for r in result.nodes}


# -- the selection rule, on its own ---------------------------------------------------------


def test_the_selection_rule() -> None:
    up = Candidate("up", "http://up", "ollama", "online", frozenset({"m:latest"}))
    fresh = Candidate("fresh", "http://fresh", "ollama", "unknown")  # never probed: tried
    draining = Candidate("dr", "http://dr", "embedded", "draining", frozenset({"m:latest"}))
    offline = Candidate("off", "http://off", "ollama", "offline", last_error="refused")
    openai = Candidate("oa", "http://oa", "openai", "online", frozenset({"m:latest"}))
    nodes = [up, fresh, draining, offline, openai]

    pull = choose(nodes, Operation.PULL)
    assert [t.name for t in pull.targets] == ["up", "fresh"]
    assert {r.node: r.skipped for r in pull.skipped} == {
        "dr": DRAINING,
        "off": "skipped: offline (refused)",
        "oa": skip_reason("/api/pull"),
    }
    copy = choose(nodes, Operation.COPY, "m")  # holders: a draining one takes no new model
    assert [t.name for t in copy.targets] == ["up"]
    assert {r.node for r in copy.skipped} == {"dr", "off", "oa"}  # off: may hold it
    delete = choose(nodes, Operation.DELETE, "m")  # but it may lose one
    assert [t.name for t in delete.targets] == ["up", "dr"]
    assert [t.name for t in choose(nodes, Operation.DELETE, "m", ["fresh"]).targets] == ["fresh"]

    with pytest.raises(NodeNotFoundError, match="ghost"):
        choose(nodes, Operation.PULL, named=["ghost"])
    with pytest.raises(InvalidRequestError, match="OpenAI-compatible"):
        choose(nodes, Operation.CREATE, named=["oa"])
    with pytest.raises(NoNodeAvailableError, match="draining"):
        choose(nodes, Operation.PULL, named=["dr"])
    with pytest.raises(ModelNotFoundError, match="'nope' not found"):
        choose([up], Operation.DELETE, "nope")
    with pytest.raises(NoNodeAvailableError, match="no healthy node"):
        choose([], Operation.PULL)


def test_the_store_gives_the_same_selection(store: Store) -> None:
    """Without a control plane (the CLI) the registry's last states go by the same rule."""
    for name in ("a", "b", "c", "d"):
        store.nodes.upsert(name, f"http://{name}.invalid", "openai" if name == "d" else "ollama")
    store.nodes.set_status("a", "online")
    store.nodes.set_status("b", "draining", seen=False)
    store.nodes.set_status("c", "offline", seen=False)

    async def main() -> list[str]:
        async with httpx.AsyncClient() as http:
            selection = await Operations.on_store(store, http).select(Operation.PULL)
        return [t.name for t in selection.targets] + [r.skipped or "" for r in selection.skipped]

    assert asyncio.run(main()) == [
        "a",
        DRAINING,
        "skipped: offline (its health probes fail)",
        skip_reason("/api/pull"),
    ]


# -- the layer on real neurons --------------------------------------------------------------


def test_every_node_reports_and_the_nodes_run_at_once(neurons: dict[str, NeuronProcess]) -> None:
    slow = [StandIn(fail=False, delay_s=1.0) for _ in range(2)]
    try:
        nodes = _real(neurons) + [
            Candidate(f"slow{i}", s.url, "ollama", "online") for i, s in enumerate(slow)
        ]
        started = time.perf_counter()
        copied = _run(nodes, Operation.COPY, {"source": MODEL, "destination": "ops-fan:1"})
        took = time.perf_counter() - started
        assert _outcomes(copied) == {
            n: (True, 200, None, None) for n in ("a", "b", "slow0", "slow1")
        }
        assert took < 1.8, f"{took:.2f} s: the two slow nodes ran one after the other"
        for neuron in neurons.values():
            assert "ops-fan:1" in _holders(neuron)
        # The stand-ins do not list the copy, so a delete reaches only the neurons.
        deleted = _run(nodes, Operation.DELETE, {"model": "ops-fan:1"})
        assert deleted.succeeded == ["a", "b"] and not deleted.failed
    finally:
        for server in slow:
            server.close()


def test_one_failing_node_does_not_stop_the_others(
    neurons: dict[str, NeuronProcess], stand_in: StandIn
) -> None:
    nodes = [Candidate("bad", stand_in.url, "ollama", "online"), *_real(neurons)]
    lines: list[tuple[str, dict[str, Any]]] = []
    body = {"model": "ops-made:1", "from": MODEL, "system": "You are terse."}
    made = _run(nodes, Operation.CREATE, body, progress=lambda n, item: lines.append((n, item)))
    assert _outcomes(made) == {
        "bad": (False, 500, BOOM, None),
        "a": (True, 200, None, None),
        "b": (True, 200, None, None),
    }
    assert {node for node, _ in lines} == {"a", "b"}  # each streamed its own progress
    assert made.status == 500 and made.summary() == f"bad: {BOOM}"
    made.raise_unless_any_succeeded()  # some succeeded: the details say the rest
    for neuron in neurons.values():
        assert "ops-made:1" in _holders(neuron)
    assert _run(nodes, Operation.DELETE, {"model": "ops-made:1"}).succeeded == ["a", "b"]

    alone = _run(nodes[:1], Operation.PULL, {"model": "whatever:1"})
    with pytest.raises(NodeError, match="bad: boom"):
        alone.raise_unless_any_succeeded()  # nothing succeeded: the failure is the error


def test_a_draining_node_is_not_targeted(neurons: dict[str, NeuronProcess]) -> None:
    a, b = _real(neurons)
    b = Candidate(b.name, b.url, b.kind, "draining")
    made = _run([a, b], Operation.CREATE, {"model": "ops-drain:1", "from": MODEL})
    assert _outcomes(made) == {"a": (True, 200, None, None), "b": (False, 503, None, DRAINING)}
    assert "ops-drain:1" in _holders(neurons["a"])
    assert "ops-drain:1" not in _holders(neurons["b"])
    assert _run([a, b], Operation.DELETE, {"model": "ops-drain:1"}).succeeded == ["a"]


def test_an_openai_node_is_skipped_with_its_reason(
    neurons: dict[str, NeuronProcess], stand_in: StandIn
) -> None:
    a = _real(neurons)[0]
    openai = Candidate("oa", stand_in.url, "openai", "online")
    made = _run([a, openai], Operation.CREATE, {"model": "ops-oa:1", "from": MODEL})
    assert _outcomes(made)["oa"] == (False, 400, None, skip_reason("/api/create"))
    assert made.succeeded == ["a"] and stand_in.requests == []  # never contacted
    with pytest.raises(InvalidRequestError, match="OpenAI-compatible"):
        _run([a, openai], Operation.PULL, {"model": MODEL}, named=["oa"])
    assert _run([a], Operation.DELETE, {"model": "ops-oa:1"}).succeeded == ["a"]


# -- both APIs of a control plane -----------------------------------------------------------


@pytest.fixture(scope="module")
def plane(
    neurons: dict[str, NeuronProcess], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, StandIn]]:
    """a and b (real neurons), bad (the failing stand-in) and oa (an OpenAI-compatible
    stand-in) behind one control plane."""
    bad, openai = StandIn(), StandIn()
    root: Path = tmp_path_factory.mktemp("ops-plane")
    fast: dict[str, Any] = dict(FAST)
    settings = Settings(home=root, ollama_base_url="", **fast)
    specs = [NodeSpec(name, n.url, "embedded") for name, n in neurons.items()]
    specs += [NodeSpec("bad", bad.url, "ollama"), NodeSpec("oa", openai.url, "openai")]
    try:
        with ServerThread(create_control_plane(settings, specs), port=free_port()) as server:
            _wait(server.url, lambda s: all(n["state"] == "online" for n in s.values()))
            yield server.url, openai
    finally:
        bad.close()
        openai.close()


def _status(url: str) -> dict[str, dict[str, Any]]:
    nodes = httpx.get(url + "/api/ai/network/status", timeout=10).json()["nodes"]
    return {n["name"]: n for n in nodes}


def _wait(url: str, check: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check(status := _status(url)):
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout} s: {status}")
        time.sleep(0.1)


def _said(per_node: list[dict[str, Any]]) -> str:
    """What the Ollama API must say for these per-node outcomes: failures, then skips."""
    failed = [f"{n['node']}: {n['error']}" for n in per_node if not n["ok"] and n["error"]]
    return "; ".join(failed + [f"{n['node']}: {n['skipped']}" for n in per_node if n["skipped"]])


def _nodes_holding(url: str, model: str) -> list[str]:
    tags = httpx.get(url + "/api/tags", timeout=10).json()["models"]
    return sorted(next((m["nodes"] for m in tags if m["name"] == model), []))


def test_management_and_ollama_api_give_the_same_per_node_outcome(
    plane: tuple[str, StandIn],
) -> None:
    url, openai = plane
    modelfile = f"FROM {MODEL}\nSYSTEM You are terse.\n"
    managed = httpx.post(
        url + f"{MGMT}/create", json={"name": "ops-m:1", "modelfile": modelfile}, timeout=120
    )
    assert managed.status_code == 200, managed.text  # some nodes succeeded: the envelope
    per_node = managed.json()["per_node"]
    assert {n["node"]: (n["ok"], n["status"]) for n in per_node} == {
        "a": (True, 200),
        "b": (True, 200),
        "bad": (False, 500),
        "oa": (False, 400),
    }
    assert managed.json()["results"]["oa"] == skip_reason("/api/create")

    body = {"from": MODEL, "system": "You are terse.", "stream": False}
    ollama_api = httpx.post(url + "/api/create", json={**body, "model": "ops-o:1"}, timeout=120)
    assert ollama_api.status_code == 500  # the failure's own status, as one server answers
    assert ollama_api.json() == {"error": _said(per_node)}

    streamed_body = {**body, "model": "ops-s:1", "stream": True}
    with httpx.stream("POST", url + "/api/create", json=streamed_body, timeout=120) as stream:
        lines = [json.loads(line) for line in stream.iter_lines() if line.strip()]
    assert lines[0] == {"status": skip_reason("/api/create"), "node": "oa"}
    assert {line.get("node") for line in lines[1:-1]} == {"a", "b"}
    assert lines[-1] == {"error": f"bad: {BOOM}"}
    assert openai.operations_asked() == []

    for name in ("ops-m:1", "ops-o:1", "ops-s:1"):
        assert _nodes_holding(url, name) == ["a", "b"]
        gone = httpx.delete(url + f"{MGMT}/{name}", timeout=30)
        assert gone.status_code == 200 and gone.json()["deleted_from"] == ["a", "b"]


def test_a_drained_node_takes_no_new_models_through_either_api(
    plane: tuple[str, StandIn], neurons: dict[str, NeuronProcess]
) -> None:
    url, _ = plane
    drained = httpx.post(url + "/api/ai/network/nodes/b/drain", timeout=10)
    assert drained.status_code == 200, drained.text
    try:
        copy = {"source": MODEL, "destination": "ops-d:1"}
        ollama_api = httpx.post(url + "/api/copy", json=copy, timeout=60)
        managed = httpx.post(
            url + f"{MGMT}/copy", json={**copy, "destination": "ops-d2:1"}, timeout=60
        )
        assert managed.status_code == 200, managed.text
        per_node = managed.json()["per_node"]
        assert {n["node"]: n["skipped"] for n in per_node if n["skipped"]} == {
            "b": DRAINING,
            "oa": skip_reason("/api/copy"),  # it serves the model, and has no Ollama API
        }
        assert managed.json()["nodes"] == ["a"]  # bad failed, b was skipped
        assert (ollama_api.status_code, ollama_api.json()) == (500, {"error": _said(per_node)})
        assert not {"ops-d:1", "ops-d2:1"} & _holders(neurons["b"])
        for name in ("ops-d:1", "ops-d2:1"):  # deletes reach a draining node; b has none
            assert httpx.delete(url + f"{MGMT}/{name}", timeout=30).json()["deleted_from"] == ["a"]
    finally:
        httpx.post(url + "/api/ai/network/nodes/b/resume", timeout=10)
        _wait(url, lambda s: s["b"]["state"] == "online")
