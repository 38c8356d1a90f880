"""Request bounds on a real control plane (uvicorn on a free port): the body size cap in each
surface's error shape (declared and chunked; blob uploads exempt), the caps on lists and on
num_predict/num_ctx/max_tokens as 400s naming the field and the limit, and the timeout on a
node that stops answering.

The node behind the control plane is a tiny fake written here (stdlib ``http.server`` on a
free port), because the timeout needs a node that accepts a request and then stalls, which a
real neuron never does on purpose. It speaks just enough of the Ollama API: version, tags, ps
(so the health monitor finds it online), a model ``quick`` that answers at once, a model
``stall`` that sends nothing (or, streamed, one line and then nothing), and blob uploads.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from neurons.api.app import NodeSpec, create_control_plane
from neurons.api.server import ServerThread
from neurons.config import Settings
from tests.conftest import free_port, wait_for

CAP = 64 * 1024
ITEMS = 8
NUM_PREDICT = 64
NUM_CTX = 4096
TIMEOUT_S = 1.0

_NDJSON = "application/x-ndjson"


class FakeNode(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", free_port()), _Handler)
        self.release = threading.Event()  # set at teardown: stalled handlers end
        self.blobs: dict[str, int] = {}  # digest -> size of each blob uploaded

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeNode

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/api/version":
            self._json({"version": "0.12.0"})
        elif self.path == "/api/tags":
            models = [
                {"name": name, "model": name, "digest": name, "capabilities": ["completion"]}
                for name in ("quick:latest", "stall:latest")
            ]
            self._json({"models": models})
        elif self.path == "/api/ps":
            self._json({"models": []})
        elif "stall" in self.path:
            self.server.release.wait(30)
        else:
            self._json({"error": "not found"}, 404)

    def do_HEAD(self) -> None:
        found = self.path.removeprefix("/api/blobs/") in self.server.blobs
        self.send_response(200 if found else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        body = self._body()
        if self.path.startswith("/api/blobs/"):
            self.server.blobs["sha256:" + hashlib.sha256(body).hexdigest()] = len(body)
            self._json({}, 201)
            return
        request = json.loads(body or b"{}")
        if request.get("model", "").startswith("stall"):
            if request.get("stream") is False:
                self.server.release.wait(30)  # nothing at all, not even the status line
                return
            self.send_response(200)
            self.send_header("Content-Type", _NDJSON)
            self.end_headers()
            self.wfile.write(b'{"model":"stall","response":"Hel","done":false}\n')
            self.wfile.flush()
            self.server.release.wait(30)  # and then nothing more
            return
        answer: dict[str, Any] = {"model": request.get("model"), "done": True}
        if self.path == "/api/chat":
            answer["message"] = {"role": "assistant", "content": "ok"}
        elif self.path == "/api/embed":
            answer["embeddings"] = [[0.5, 0.5]]
        else:
            answer["response"] = "ok"
        self._json({**answer, "prompt_eval_count": 1, "eval_count": 1, "done_reason": "stop"})

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        data = bytearray()
        while size := int(self.rfile.readline().split(b";")[0], 16):
            data += self.rfile.read(size)
            self.rfile.readline()
        while self.rfile.readline().strip():  # trailers, up to the blank line
            pass
        return bytes(data)

    def _json(self, data: dict[str, Any], status: int = 200) -> None:
        content = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)


@pytest.fixture(scope="module")
def node() -> Iterator[FakeNode]:
    server = FakeNode()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def plane(node: FakeNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings(
        home=tmp_path_factory.mktemp("bounds") / "home",
        ollama_base_url="",
        import_default_models=False,
        max_body_bytes=CAP,
        max_list_items=ITEMS,
        max_num_predict=NUM_PREDICT,
        max_num_ctx=NUM_CTX,
        node_timeout_s=TIMEOUT_S,
        breaker_failures=1000,  # the stalls below must not open the fake node's breaker
    )
    app = create_control_plane(settings, [NodeSpec("fake", node.url, "ollama")])
    with ServerThread(app, port=free_port()) as server:
        wait_for(lambda: _online(server.url))
        yield server.url


def _online(url: str) -> bool:
    nodes = httpx.get(url + "/api/ai/network/status", timeout=10).json()["nodes"]
    return bool(nodes) and nodes[0]["state"] == "online"


def _post(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(url, timeout=30, **kwargs)


# -- the body size cap ----------------------------------------------------------------------

# One representative route of each surface, and how its 413 must look.
SURFACES = ["/api/ai/network/nodes", "/api/chat", "/v1/chat/completions"]


def _assert_413_shape(path: str, response: httpx.Response) -> None:
    assert response.status_code == 413, response.text
    body = response.json()
    if path.startswith("/api/ai/"):
        assert body["success"] is False and body["error_code"] == "payload_too_large"
        assert set(body) == {"success", "error", "error_code", "timestamp"}
        message = body["error"]
    elif path.startswith("/v1/"):
        error = body["error"]
        assert error["type"] == "invalid_request_error" and set(error) >= {"param", "code"}
        message = error["message"]
    else:
        assert set(body) == {"error"}
        message = body["error"]
    assert "request body too large" in message and str(CAP) in message


def _big_json(size: int) -> bytes:
    """A JSON object of ``size`` bytes that would be a valid chat but for its size."""
    head = b'{"model":"quick","messages":[{"role":"user","content":"'
    tail = b'"}],"stream":false}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


@pytest.mark.parametrize("path", SURFACES)
def test_a_declared_body_over_the_cap_is_a_413_in_the_surface_shape(plane: str, path: str) -> None:
    response = _post(plane + path, content=_big_json(CAP + 1))
    _assert_413_shape(path, response)


@pytest.mark.parametrize("path", SURFACES)
def test_a_chunked_body_over_the_cap_is_counted_and_refused(plane: str, path: str) -> None:
    body = _big_json(CAP + 1)
    pieces = [body[i : i + 10_000] for i in range(0, len(body), 10_000)]
    response = _post(plane + path, content=iter(pieces))  # no length: chunked
    assert response.request.headers.get("transfer-encoding") == "chunked"
    _assert_413_shape(path, response)


def test_a_declared_length_over_the_cap_is_refused_before_the_body_is_read(plane: str) -> None:
    """Only the headers go out, announcing a gigabyte: the answer comes without a byte of it."""
    host, port = plane.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.putrequest("POST", "/api/generate")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(1 << 30))
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 413
        assert "request body too large" in json.loads(response.read())["error"]
    finally:
        connection.close()


def test_bodies_within_the_cap_pass_declared_and_chunked(plane: str) -> None:
    body = _big_json(CAP)
    declared = _post(plane + "/api/chat", content=body)
    chunked = _post(plane + "/api/chat", content=iter([body[: CAP // 2], body[CAP // 2 :]]))
    for response in (declared, chunked):
        assert response.status_code == 200, response.text
        assert response.json()["message"]["content"] == "ok"


def test_blob_uploads_are_not_capped(plane: str, node: FakeNode) -> None:
    blob = bytes(range(256)) * (3 * CAP // 256)  # three times the cap
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    response = _post(f"{plane}/api/blobs/{digest}", content=blob)
    assert response.status_code == 201, response.text
    assert node.blobs[digest] == len(blob)
    # Chunked too, and the whole body is read: a wrong digest is found only at its end.
    wrong = "sha256:" + "0" * 64
    pieces = [blob[i : i + CAP] for i in range(0, len(blob), CAP)]
    response = _post(f"{plane}/api/blobs/{wrong}", content=iter(pieces))
    assert response.status_code == 400
    assert response.json() == {"error": f'digest mismatch, expected "{wrong}", got "{digest}"'}


# -- caps on lists and sizes ----------------------------------------------------------------

MANY = ITEMS + 1
MESSAGE = {"role": "user", "content": "hi"}
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}

OLLAMA_CASES = [
    ("/api/chat", {"messages": [MESSAGE] * MANY}, "messages", ITEMS),
    (
        "/api/chat",
        {"messages": [{**MESSAGE, "images": ["aGk="] * MANY}]},
        "messages[0].images",
        ITEMS,
    ),
    ("/api/chat", {"messages": [MESSAGE], "tools": [TOOL] * MANY}, "tools", ITEMS),
    ("/api/embed", {"input": ["hi"] * MANY}, "input", ITEMS),
    ("/api/generate", {"prompt": "hi", "images": ["aGk="] * MANY}, "images", ITEMS),
    ("/api/generate", {"prompt": "hi", "options": {"stop": ["x"] * MANY}}, "options.stop", ITEMS),
    (
        "/api/generate",
        {"prompt": "hi", "options": {"num_predict": NUM_PREDICT + 1}},
        "options.num_predict",
        NUM_PREDICT,
    ),
    (
        "/api/chat",
        {"messages": [MESSAGE], "options": {"num_ctx": NUM_CTX + 1}},
        "options.num_ctx",
        NUM_CTX,
    ),
]


@pytest.mark.parametrize(("path", "extra", "field", "limit"), OLLAMA_CASES)
def test_ollama_caps_are_400s_naming_the_field_and_limit(
    plane: str, path: str, extra: dict[str, Any], field: str, limit: int
) -> None:
    response = _post(plane + path, json={"model": "quick", "stream": False, **extra})
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"error"}
    assert field in body["error"] and f"the limit is {limit}" in body["error"]


OPENAI_CASES = [
    ("/v1/chat/completions", {"messages": [MESSAGE] * MANY}, "messages", ITEMS),
    (
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}] * MANY}]},
        "messages[0].content",
        ITEMS,
    ),
    ("/v1/chat/completions", {"messages": [MESSAGE], "tools": [TOOL] * MANY}, "tools", ITEMS),
    ("/v1/chat/completions", {"messages": [MESSAGE], "stop": ["x"] * MANY}, "stop", ITEMS),
    (
        "/v1/chat/completions",
        {"messages": [MESSAGE], "max_tokens": NUM_PREDICT + 1},
        "max_tokens",
        NUM_PREDICT,
    ),
    (
        "/v1/chat/completions",
        {"messages": [MESSAGE], "max_completion_tokens": NUM_PREDICT + 1},
        "max_completion_tokens",
        NUM_PREDICT,
    ),
    ("/v1/completions", {"prompt": "hi", "max_tokens": NUM_PREDICT + 1}, "max_tokens", NUM_PREDICT),
    ("/v1/embeddings", {"input": ["hi"] * MANY}, "input", ITEMS),
]


@pytest.mark.parametrize(("path", "extra", "param", "limit"), OPENAI_CASES)
def test_openai_caps_are_400s_in_openai_shape(
    plane: str, path: str, extra: dict[str, Any], param: str, limit: int
) -> None:
    response = _post(plane + path, json={"model": "quick", **extra})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert param in error["message"] and f"the limit is {limit}" in error["message"]


def test_requests_at_the_caps_and_unlimited_num_predict_pass(plane: str) -> None:
    at_caps = {"num_predict": NUM_PREDICT, "num_ctx": NUM_CTX, "stop": ["x"] * ITEMS}
    for options in (at_caps, {"num_predict": -1}, {"num_predict": -2}):
        response = _post(
            plane + "/api/chat",
            json={"model": "quick", "stream": False, "messages": [MESSAGE] * ITEMS, **options},
        )
        assert response.status_code == 200, response.text
    openai = _post(
        plane + "/v1/chat/completions",
        json={"model": "quick", "messages": [MESSAGE] * ITEMS, "max_tokens": NUM_PREDICT},
    )
    assert openai.status_code == 200, openai.text
    assert openai.json()["choices"][0]["message"]["content"] == "ok"


# -- timeouts on node calls -----------------------------------------------------------------


def test_a_node_that_sends_nothing_fails_the_request_within_the_timeout(plane: str) -> None:
    started = time.monotonic()
    response = _post(plane + "/api/generate", json={"model": "stall", "stream": False})
    elapsed = time.monotonic() - started
    assert response.status_code == 502
    assert "sent nothing for 1 s (node_timeout_s)" in response.json()["error"]
    assert TIMEOUT_S <= elapsed < TIMEOUT_S + 5


def test_a_stream_that_stalls_ends_with_an_error_line(plane: str) -> None:
    started = time.monotonic()
    response = _post(plane + "/api/generate", json={"model": "stall", "prompt": "hi"})
    elapsed = time.monotonic() - started
    assert response.status_code == 200  # the first line had gone out
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines[0]["response"] == "Hel"
    assert "stopped mid-stream" in lines[-1]["error"]
    assert "sent nothing for 1 s (node_timeout_s)" in lines[-1]["error"]
    assert elapsed < TIMEOUT_S + 5


def test_an_openai_stream_that_stalls_ends_with_an_error_event(plane: str) -> None:
    response = _post(
        plane + "/v1/chat/completions",
        json={"model": "stall", "messages": [MESSAGE], "stream": True},
    )
    assert response.status_code == 200
    events = [line.removeprefix("data: ") for line in response.text.splitlines() if line]
    assert "[DONE]" not in events
    assert "sent nothing for 1 s" in json.loads(events[-1])["error"]["message"]


def test_a_passthrough_call_to_a_silent_node_fails_within_the_timeout(plane: str) -> None:
    """The pooled httpx client (pass-through, unions, model operations) has the same limit."""
    started = time.monotonic()
    response = httpx.get(plane + "/api/stall?node=fake", timeout=30)
    assert response.status_code == 502
    assert "fake is unreachable" in response.json()["error"]
    assert time.monotonic() - started < TIMEOUT_S + 5
