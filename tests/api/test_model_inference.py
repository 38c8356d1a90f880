"""Seed 001's endpoint, ``POST /api/v1/model/inference``, on a real control plane with the
real all-MiniLM-L6-v2, and the same model through the gateway's embedding routes (Ollama's
and OpenAI's, with their official clients) under the name ``all-minilm``."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from neurons.api.app import create_control_plane
from neurons.api.server import ServerThread
from tests.api.test_metrics import MASTER, settings_for
from tests.conftest import free_port

ENDPOINT = "/api/v1/model/inference"


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = settings_for(tmp_path_factory.mktemp("inference") / "home")
    with ServerThread(create_control_plane(settings, []), port=free_port()) as server:
        yield server.url


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_one_text_and_several_in_the_seeds_shape(plane: str) -> None:
    one = httpx.post(plane + ENDPOINT, json={"text": "Hello, world!"}, timeout=120)
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["input_text"] == "Hello, world!"
    assert isinstance(body["embeddings"], list) and len(body["embeddings"]) == 1
    assert body["dimensions"] == 384 == len(body["embeddings"][0])
    assert body["model_version"].startswith("sha256:")
    assert body["truncated"] is False and isinstance(body["cached"], bool)
    assert "input_texts" not in body
    many = httpx.post(plane + ENDPOINT, json={"texts": ["a cat", "Hello, world!"]}, timeout=60)
    assert many.status_code == 200, many.text
    listed = many.json()
    assert listed["input_texts"] == ["a cat", "Hello, world!"]
    assert len(listed["embeddings"]) == 2 and listed["truncated"] == [False, False]
    # The repeated text came from the cache, with the same vector.
    assert listed["cached"] == [False, True]
    assert cosine(listed["embeddings"][1], body["embeddings"][0]) > 0.9999


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "No input text provided"),
        ({"text": ""}, "No input text provided"),
        ({"texts": []}, "No input text provided"),
        ({"texts": ["ok", 3]}, "texts must be a list of strings"),
        ({"text": 5}, "text must be a string"),
        ({"text": "a", "texts": ["b"]}, "not both"),
        ({"text": "a", "truncate": "no"}, "truncate must be true or false"),
        ({"texts": ["x"] * 2049}, "at most 2048"),
    ],
)
def test_bad_input_is_a_400_with_a_clear_message(
    plane: str, body: dict[str, object], message: str
) -> None:
    answer = httpx.post(plane + ENDPOINT, json=body, timeout=60)
    assert answer.status_code == 400, answer.text
    assert message in answer.json()["error"]


def test_a_body_that_is_not_json_and_a_text_too_long_when_truncate_is_off(plane: str) -> None:
    answer = httpx.post(plane + ENDPOINT, content=b"{nope", timeout=30)
    assert answer.status_code == 400 and "JSON" in answer.json()["error"]
    long_text = "word " * 2000
    refused = httpx.post(plane + ENDPOINT, json={"text": long_text, "truncate": False}, timeout=60)
    assert refused.status_code == 400, refused.text
    cut = httpx.post(plane + ENDPOINT, json={"text": long_text}, timeout=60)
    assert cut.status_code == 200 and cut.json()["truncated"] is True


def test_the_gateway_serves_it_as_all_minilm(plane: str) -> None:
    module = httpx.post(plane + ENDPOINT, json={"text": "The sky is blue."}, timeout=60).json()
    vector = module["embeddings"][0]
    embed = httpx.post(
        plane + "/api/embed", json={"model": "all-minilm", "input": ["The sky is blue."]}
    )
    assert embed.status_code == 200, embed.text
    assert embed.json()["embeddings"][0] == pytest.approx(vector, abs=1e-6)
    assert embed.json()["prompt_eval_count"] > 0
    legacy = httpx.post(
        plane + "/api/embeddings", json={"model": "all-minilm", "prompt": "The sky is blue."}
    )
    assert legacy.json()["embedding"] == pytest.approx(vector, abs=1e-6)
    tags = httpx.get(plane + "/api/tags", timeout=10).json()["models"]
    entry = next(m for m in tags if m["name"] == "all-minilm:latest")
    assert entry["capabilities"] == ["embedding"] and entry["nodes"] == ["control-plane"]
    assert entry["digest"] == module["model_version"].removeprefix("sha256:")
    client = ollama.Client(host=plane)
    assert "all-minilm:latest" in {m.model for m in client.list().models}
    answer = client.embed(model="all-minilm", input="The sky is blue.")
    assert list(answer.embeddings[0]) == pytest.approx(vector, abs=1e-6)
    shown = client.show("all-minilm")
    assert "embedding" in (shown.capabilities or [])
    cut = client.embed(model="all-minilm", input="The sky is blue.", dimensions=64)
    assert len(cut.embeddings[0]) == 64
    assert math.isclose(sum(x * x for x in cut.embeddings[0]), 1.0, rel_tol=1e-5)
    oa = openai.OpenAI(base_url=plane + "/v1", api_key="-")
    result = oa.embeddings.create(model="all-minilm", input=["The sky is blue."])
    assert result.data[0].embedding == pytest.approx(vector, abs=1e-6)


def test_its_model_metrics_are_reported(plane: str) -> None:
    httpx.post(plane + ENDPOINT, json={"text": "count me"}, timeout=60)
    models = httpx.get(plane + "/api/ai/metrics/models", timeout=10).json()["models"]
    entry = next(m for m in models if m["model"] == "all-minilm:latest")
    assert entry["inference_count"] >= 1 and entry["error_count"] == 0
    assert entry["nodes"][0]["node"] == "control-plane"
    assert entry["digests"][0].startswith("sha256:")


def test_keys_limit_it_to_the_inference_scope(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "home", master_key=MASTER)
    admin = {"Authorization": f"Bearer {MASTER}"}
    with ServerThread(create_control_plane(settings, []), port=free_port()) as server:
        secrets = {}
        for scope in ("read", "inference"):
            made = httpx.post(
                server.url + "/api/ai/keys",
                json={"name": f"k-{scope}", "scope": scope},
                headers=admin,
                timeout=10,
            )
            assert made.status_code == 201, made.text
            secrets[scope] = {"Authorization": f"Bearer {made.json()['secret']}"}
        body = {"text": "hi"}
        assert httpx.post(server.url + ENDPOINT, json=body).status_code == 401
        read = httpx.post(server.url + ENDPOINT, json=body, headers=secrets["read"])
        assert read.status_code == 403 and "error" in read.json()
        ok = httpx.post(server.url + ENDPOINT, json=body, headers=secrets["inference"], timeout=120)
        assert ok.status_code == 200, ok.text


def test_off_by_settings(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "home", inference=False)
    with ServerThread(create_control_plane(settings, []), port=free_port()) as server:
        answer = httpx.post(server.url + ENDPOINT, json={"text": "hi"}, timeout=10)
        assert answer.status_code == 404
        assert "off" in answer.json()["error"]
        tags = httpx.get(server.url + "/api/tags", timeout=10).json()["models"]
        assert all(m["name"] != "all-minilm:latest" for m in tags)


def test_bytes_that_are_not_utf8_are_a_400(plane: str) -> None:
    """Found by the API fuzz: it was a 500."""
    for path in (ENDPOINT, "/api/embed"):
        answer = httpx.post(plane + path, content=b"\xe0\xe0TR\xff\xfe", timeout=10)
        assert answer.status_code == 400, (path, answer.text)
        assert "JSON" in answer.json()["error"]
