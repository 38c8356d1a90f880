"""The gateway with two real neurons behind it, driven by the official ``ollama`` and
``openai`` clients and by raw HTTP where the wire format itself is the point."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import ollama
import openai
import pytest

from tests.network.conftest import Cluster

MODEL = "smollm2:135m"
SHORT = {"num_predict": 8, "temperature": 0}
OVERHEAD = "x-neurons-overhead-ms"


def test_ollama_client_sees_one_server(pair: Cluster) -> None:
    client = ollama.Client(host=pair.url)
    listed = {m.model: m for m in client.list().models}
    assert {MODEL, "gemma3:270m"} <= set(listed)

    reply = client.generate(model=MODEL, prompt="Say hi", options=SHORT)
    assert reply.done and reply.response
    chunks = list(
        client.chat(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}], stream=True, options=SHORT
        )
    )
    assert chunks[-1].done and "".join(c.message.content or "" for c in chunks)
    embedded = client.embed(model=MODEL, input=["one", "two"])
    assert len(embedded.embeddings) == 2
    shown = client.show(MODEL)
    assert shown.modelfile and "FROM" in shown.modelfile
    assert MODEL in {m.model for m in client.ps().models}
    assert pair.gateway.url and httpx.get(pair.url + "/api/version").json()["version"]


def test_tags_is_a_union_with_the_nodes_that_hold_each_model(pair: Cluster) -> None:
    models = httpx.get(pair.url + "/api/tags").json()["models"]
    by_name = {m["name"]: m for m in models}
    assert sorted(by_name[MODEL]["nodes"]) == ["a", "b"]
    assert len(models) == len(by_name)  # each model once


def test_openai_client(pair: Cluster) -> None:
    client = openai.OpenAI(base_url=pair.url + "/v1", api_key="unused")
    chat = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=8, temperature=0
    )
    assert chat.choices[0].message.content
    assert chat.usage is not None and chat.usage.completion_tokens > 0

    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count to three"}],
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
    )
    events = list(stream)
    text = "".join(e.choices[0].delta.content or "" for e in events if e.choices)
    assert text and events[-1].usage is not None

    completion = client.completions.create(model=MODEL, prompt="Once upon", max_tokens=8)
    assert completion.choices[0].text
    embeddings = client.embeddings.create(model=MODEL, input=["a", "b"])
    assert len(embeddings.data) == 2 and len(embeddings.data[0].embedding) > 0
    assert MODEL in {m.id for m in client.models.list()}
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "Hi"}]
        )


def test_load_spreads_over_both_nodes(pair: Cluster) -> None:
    def one(i: int) -> str:
        response = httpx.post(
            pair.url + "/api/generate",
            json={"model": MODEL, "prompt": f"Number {i}", "stream": False, "options": SHORT},
            timeout=120,
        )
        assert response.status_code == 200, response.text
        return response.headers["x-neurons-node"]

    with ThreadPoolExecutor(8) as pool:
        served = Counter(pool.map(one, range(8)))
    assert set(served) == {"a", "b"}, served


def test_requests_can_name_their_node(pair: Cluster) -> None:
    for node in ("a", "b"):
        response = httpx.post(
            pair.url + f"/api/generate?node={node}",
            json={"model": MODEL, "prompt": "Hi", "stream": False, "options": SHORT},
            timeout=120,
        )
        assert response.headers["x-neurons-node"] == node
    response = httpx.post(
        pair.url + "/api/generate?node=zzz", json={"model": MODEL, "prompt": "Hi"}, timeout=30
    )
    assert response.status_code == 404 and "zzz" in response.json()["error"]


@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        ("/api/generate", {"model": "no-such-model", "prompt": "x"}, 404, "not found"),
        ("/api/generate", {"prompt": "x"}, 400, "model is required"),
        ("/api/chat", [], 400, "cannot unmarshal"),
        ("/api/show", {"model": "nope:1b"}, 404, "not found"),
        ("/api/delete", {"model": "never-was"}, 404, "not found"),
        ("/api/copy", {"source": "never-was", "destination": "x"}, 404, "not found"),
    ],
)
def test_bad_requests_answer_like_ollama(
    pair: Cluster, path: str, body: object, status: int, error: str
) -> None:
    method = "DELETE" if path == "/api/delete" else "POST"
    response = httpx.request(method, pair.url + path, json=body, timeout=30)
    assert response.status_code == status
    assert error in response.json()["error"]
    assert float(response.headers[OVERHEAD]) >= 0


def test_invalid_json_is_a_400(pair: Cluster) -> None:
    response = httpx.post(pair.url + "/api/generate", content=b"{not json", timeout=30)
    assert response.status_code == 400 and "error" in response.json()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/tags", None),
        ("GET", "/api/ps", None),
        ("GET", "/api/version", None),
        ("POST", "/api/generate", {"model": MODEL, "prompt": "Hi", "options": SHORT}),
        ("POST", "/api/embed", {"model": MODEL, "input": "Hi"}),
        ("GET", "/v1/models", None),
        ("GET", "/api/health", None),
        ("GET", "/api/ai/network/status", None),
        ("GET", "/api/ai/ollama/models/library", None),
    ],
)
def test_every_response_carries_the_overhead_header(
    pair: Cluster, method: str, path: str, body: object
) -> None:
    response = httpx.request(method, pair.url + path, json=body, timeout=120)
    assert response.status_code == 200, response.text
    overhead = float(response.headers[OVERHEAD])
    assert 0 <= overhead < 60_000


def test_copy_and_delete_fan_out_or_target(pair: Cluster) -> None:
    client = ollama.Client(host=pair.url)
    client.copy(MODEL, "fanout-copy:1")
    pair.wait_until(lambda s: all("fanout-copy:1" in n["models"] for n in s.values()))
    holders = {m["name"]: m["nodes"] for m in httpx.get(pair.url + "/api/tags").json()["models"]}
    assert sorted(holders["fanout-copy:1"]) == ["a", "b"]

    only_a = httpx.request(
        "DELETE", pair.url + "/api/delete?node=a", json={"model": "fanout-copy:1"}, timeout=30
    )
    assert only_a.status_code == 200
    holders = {m["name"]: m["nodes"] for m in httpx.get(pair.url + "/api/tags").json()["models"]}
    assert holders["fanout-copy:1"] == ["b"]
    pair.wait_until(lambda s: "fanout-copy:1" not in s["a"]["models"])

    client.delete("fanout-copy:1")
    with pytest.raises(ollama.ResponseError) as gone:
        client.delete("fanout-copy:1")
    assert gone.value.status_code == 404


def test_create_fans_out_with_merged_progress(pair: Cluster) -> None:
    body = {"model": "fanout-made:1", "from": MODEL, "system": "You are terse."}
    with httpx.stream("POST", pair.url + "/api/create", json=body, timeout=120) as response:
        lines = [json.loads(line) for line in response.iter_lines() if line.strip()]
    assert lines[-1] == {"status": "success"}
    assert {line.get("node") for line in lines[:-1]} == {"a", "b"}
    shown = ollama.Client(host=pair.url).show("fanout-made:1")
    assert shown.modelfile is not None and "You are terse." in shown.modelfile
    ollama.Client(host=pair.url).delete("fanout-made:1")


def test_blob_upload_reaches_every_node_and_checks_the_digest(pair: Cluster) -> None:
    data = b"neurons blob fan-out test " * 100
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert httpx.head(pair.url + f"/api/blobs/{digest}").status_code == 404
    wrong = httpx.post(pair.url + f"/api/blobs/{digest}", content=data + b"!", timeout=30)
    assert wrong.status_code == 400 and "digest mismatch" in wrong.json()["error"]
    created = httpx.post(pair.url + f"/api/blobs/{digest}", content=data, timeout=30)
    assert created.status_code == 201
    for neuron in pair.neurons.values():  # each node has it, asked directly
        assert httpx.head(neuron.url + f"/api/blobs/{digest}").status_code == 200
    assert httpx.head(pair.url + f"/api/blobs/{digest}").status_code == 200
    assert httpx.head(pair.url + "/api/blobs/sha256:xyz").status_code == 400


def test_unknown_api_paths_pass_through_to_a_node(pair: Cluster) -> None:
    response = httpx.get(pair.url + "/api/neuron/status?node=b", timeout=10)
    assert response.status_code == 200 and response.headers["x-neurons-node"] == "b"
    assert "slots" in response.json()


def test_load_spreads_by_the_nodes_free_slots(pair: Cluster) -> None:
    """Each embedded neuron reports 4 batched slots; eight concurrent streams fill both."""
    pair.wait_until(lambda s: all(n["slots"] == 4 for n in s.values()))
    body = {"model": MODEL, "prompt": "Write a long story.", "options": {"num_predict": 96}}

    def stream(_: int) -> str:
        with httpx.stream("POST", pair.url + "/api/generate", json=body, timeout=300) as reply:
            assert reply.status_code == 200
            for _line in reply.iter_lines():
                pass
            return reply.headers["x-neurons-node"]

    with ThreadPoolExecutor(8) as pool:
        served = Counter(pool.map(stream, range(8)))
    assert served == {"a": 4, "b": 4}
