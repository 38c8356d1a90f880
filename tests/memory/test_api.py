"""``/api/ai/memory`` on a real control plane with its real embedding model (the inference
component) and a real neuron for synthesis: the envelope, the errors, and namespaces that
follow API keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from neurons.api.app import NodeSpec, create_control_plane
from neurons.api.server import ServerThread
from neurons.config import Settings
from neurons.neuron.process import NeuronProcess
from tests.conftest import free_port, wait_for

MASTER = "master-key-for-the-memory-tests-0123456789"
MODEL = "smollm2:135m"


def settings_for(home: Path, **extra: object) -> Settings:
    return Settings(
        home=home, ollama_base_url="", import_default_models=False, health_interval_s=0.5, **extra
    )


@pytest.fixture(scope="module")
def plane(neuron: NeuronProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = settings_for(tmp_path_factory.mktemp("memory") / "home")
    app = create_control_plane(settings, [NodeSpec("n1", neuron.url, "embedded")])
    with ServerThread(app, port=free_port()) as server:
        yield server.url


def post(url: str, body: dict[str, Any], **kwargs: Any) -> httpx.Response:
    return httpx.post(url, json=body, timeout=120, **kwargs)


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    data = response.json()
    assert data["success"] is False and data["error_code"] == code and data["timestamp"]
    return data


def test_add_search_delete(plane: str) -> None:
    memory = plane + "/api/ai/memory"
    texts = ["The boat leaves the harbour at dawn.", "Our budget for May is tight.", "Cats purr."]
    ids = []
    for i, text in enumerate(texts):
        made = post(memory, {"text": text, "metadata": {"i": i}})
        assert made.status_code == 201, made.text
        data = made.json()
        assert data["success"] is True and data["truncated"] is False
        entry = data["entry"]
        assert entry["text"] == text and entry["metadata"] == {"i": i}
        assert entry["namespace"] == "default" and entry["model"].startswith("all-minilm")
        ids.append(entry["id"])
    found = httpx.get(memory + "/search", params={"q": "the ship sails in the morning", "k": 2})
    assert found.status_code == 200, found.text
    data = found.json()
    assert data["success"] is True and data["namespace"] == "default"
    assert [h["id"] for h in data["hits"]][0] == ids[0] and len(data["hits"]) == 2
    assert data["hits"][0]["score"] > data["hits"][1]["score"]
    assert data["hits"][0]["metadata"] == {"i": 0}
    gone = httpx.delete(f"{memory}/{ids[0]}")
    assert gone.json() == {"success": True, "deleted": ids[0]}
    assert_error(httpx.delete(f"{memory}/{ids[0]}"), 404, "memory_entry_not_found")
    after = httpx.get(memory + "/search", params={"q": "the ship sails in the morning", "k": 5})
    assert ids[0] not in [h["id"] for h in after.json()["hits"]]
    # /api/ai/v1/... is the same API.
    assert httpx.get(plane + "/api/ai/v1/memory/search", params={"q": "cats"}).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        ("POST", "", {"json": {"text": ""}}, 422, "validation_error"),
        ("POST", "", {"json": {"text": "  \n "}}, 400, "invalid_request"),
        ("POST", "", {"json": {"text": "x" * 8193}}, 422, "validation_error"),
        (
            "POST",
            "",
            {"json": {"text": "x", "metadata": {"v": "y" * 5000}}},
            400,
            "invalid_request",
        ),
        ("POST", "", {"json": {"text": "x", "namespace": "../etc"}}, 400, "invalid_request"),
        ("POST", "", {"json": {"text": "x", "extra": 1}}, 422, "validation_error"),
        ("GET", "/search", {"params": {"q": "x", "k": 0}}, 422, "validation_error"),
        ("GET", "/search", {"params": {"q": "x", "k": 101}}, 422, "validation_error"),
        ("GET", "/search", {"params": {"q": ""}}, 422, "validation_error"),
        ("GET", "/search", {"params": {"q": "x", "namespace": "a b"}}, 400, "invalid_request"),
        ("DELETE", "/999999", {}, 404, "memory_entry_not_found"),
        ("DELETE", "/0", {}, 422, "validation_error"),
        ("DELETE", "/abc", {}, 422, "validation_error"),
        ("POST", "/synthesize", {"json": {"query": "x", "k": 0}}, 422, "validation_error"),
    ],
)
def test_errors_in_the_envelope(
    plane: str, method: str, path: str, kwargs: dict[str, Any], status: int, code: str
) -> None:
    response = httpx.request(method, plane + "/api/ai/memory" + path, timeout=60, **kwargs)
    assert_error(response, status, code)


def test_a_lone_surrogate_is_refused(plane: str) -> None:
    """JSON can carry half a surrogate pair; no database or tokenizer takes one."""
    headers = {"Content-Type": "application/json"}
    url = plane + "/api/ai/memory"
    body = b'{"text": "half a pair: \\ud800"}'
    assert_error(httpx.post(url, content=body, headers=headers), 422, "validation_error")
    body = b'{"text": "ok", "metadata": {"k": "\\ud800"}}'
    refused = assert_error(httpx.post(url, content=body, headers=headers), 400, "invalid_request")
    assert "not valid Unicode" in refused["error"]


def test_synthesize_with_a_real_neuron(plane: str) -> None:
    wait_for(lambda: httpx.get(plane + "/api/health").json()["status"] == "ok", timeout=60)
    space = "synth"
    notes = [
        "The office coffee machine is broken until Friday.",
        "The coffee machine repair technician comes on Friday morning.",
        "Penguins live mostly in the southern hemisphere.",
    ]
    for note in notes:
        assert post(plane + "/api/ai/memory", {"text": note, "namespace": space}).status_code == 201
    body = {
        "query": "When will the coffee machine work?",
        "model": MODEL,
        "k": 2,
        "max_tokens": 24,
        "namespace": space,
    }
    response = post(plane + "/api/ai/memory/synthesize", body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["success"] is True and data["model"] == MODEL and data["node"] == "n1"
    assert isinstance(data["summary"], str) and data["summary"]
    assert [h["citation"] for h in data["hits"]] == [1, 2]
    assert {h["text"] for h in data["hits"]} == set(notes[:2])  # not the penguins
    for hit in data["hits"]:
        assert f"[{hit['citation']}] {hit['text']}" in data["prompt"]
        assert isinstance(hit["score"], float) and hit["id"] >= 1
    assert "When will the coffee machine work?" in data["prompt"]
    assert all(1 <= n <= 2 for n in data["cited"])
    # The default model is the settings' (smollm2:135m here too).
    default = post(plane + "/api/ai/memory/synthesize", {**body, "model": None})
    assert default.status_code == 200 and default.json()["model"] == MODEL
    missing = post(plane + "/api/ai/memory/synthesize", {**body, "model": "no-such-model:1b"})
    assert missing.status_code == 404, missing.text
    assert missing.json()["success"] is False


def _key(url: str, name: str, scope: str) -> dict[str, str]:
    made = post(
        url + "/api/ai/keys",
        {"name": name, "scope": scope},
        headers={"Authorization": f"Bearer {MASTER}"},
    )
    assert made.status_code == 201, made.text
    return {"Authorization": f"Bearer {made.json()['secret']}"}


def test_namespaces_follow_keys(neuron: NeuronProcess, tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "home", master_key=MASTER)
    app = create_control_plane(settings, [NodeSpec("n1", neuron.url, "embedded")])
    with ServerThread(app, port=free_port()) as server:
        memory = server.url + "/api/ai/memory"
        master = {"Authorization": f"Bearer {MASTER}"}
        alice = _key(server.url, "alice", "inference")
        bob = _key(server.url, "bob", "inference")
        reader = _key(server.url, "reader", "read")
        admin = _key(server.url, "root", "admin")

        assert_error(post(memory, {"text": "no key"}), 401, "unauthorized")
        # A read key may search its namespace but not write: writes need inference.
        assert_error(post(memory, {"text": "x"}, headers=reader), 403, "forbidden")
        made = post(memory, {"text": "Alice's secret garden has roses."}, headers=alice)
        assert made.status_code == 201 and made.json()["entry"]["namespace"] == "alice"
        entry_id = made.json()["entry"]["id"]
        search = memory + "/search"
        q = {"q": "roses in the garden"}
        assert [h["id"] for h in httpx.get(search, params=q, headers=alice).json()["hits"]] == [
            entry_id
        ]
        # Bob's own namespace is empty; Alice's is closed to him, by search or delete.
        assert httpx.get(search, params=q, headers=bob).json()["hits"] == []
        assert_error(
            httpx.get(search, params={**q, "namespace": "alice"}, headers=bob), 403, "forbidden"
        )
        assert_error(
            httpx.delete(f"{memory}/{entry_id}", params={"namespace": "alice"}, headers=bob),
            403,
            "forbidden",
        )
        # Bob naming only the id finds nothing in his own namespace.
        assert_error(
            httpx.delete(f"{memory}/{entry_id}", headers=bob), 404, "memory_entry_not_found"
        )
        # The master key works in "default" and may name any namespace; so may an admin key.
        assert httpx.get(search, params=q, headers=master).json()["hits"] == []
        hits = httpx.get(search, params={**q, "namespace": "alice"}, headers=admin).json()
        assert [h["id"] for h in hits["hits"]] == [entry_id]
        gone = httpx.delete(f"{memory}/{entry_id}", params={"namespace": "alice"}, headers=master)
        assert gone.status_code == 200, gone.text


def test_memory_needs_the_embedding_model(neuron: NeuronProcess, tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "home", inference=False)
    app = create_control_plane(settings, [NodeSpec("n1", neuron.url, "embedded")])
    with ServerThread(app, port=free_port()) as server:
        response = post(server.url + "/api/ai/memory", {"text": "hello"})
        data = assert_error(response, 503, "embeddings_unavailable")
        assert "inference" in data["error"]
