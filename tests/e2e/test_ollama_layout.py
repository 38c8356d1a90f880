"""A models directory written the way Ollama writes it is served as is (``--models``)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import ollama

from neurons.neuron.defaults import _smollm2_path
from tests.conftest import start_neuron


def _blob(root: Path, data: bytes) -> dict[str, object]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (root / "blobs" / digest.replace(":", "-")).write_bytes(data)
    return {"digest": digest, "size": len(data)}


def test_serves_an_ollama_models_directory(tmp_path: Path) -> None:
    models = tmp_path / "ollama-models"
    (models / "blobs").mkdir(parents=True)
    gguf = _smollm2_path(tmp_path)
    weights = hashlib.sha256(gguf.read_bytes()).hexdigest()
    os.link(gguf, models / "blobs" / f"sha256-{weights}")
    # Field for field what `ollama pull smollm2:135m` leaves on disk (config, model, template,
    # license, params layers).
    config = _blob(
        models,
        json.dumps(
            {
                "model_format": "gguf",
                "model_family": "llama",
                "model_families": ["llama"],
                "model_type": "134.52M",
                "file_type": "Q4_1",
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": []},
            }
        ).encode(),
    )
    template = _blob(
        models,
        b"{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
        b"<|im_start|>assistant\n",
    )
    params = _blob(models, b'{"stop":["<|im_start|>","<|im_end|>"]}')
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", **config},
        "layers": [
            {
                "mediaType": "application/vnd.ollama.image.model",
                "digest": f"sha256:{weights}",
                "size": gguf.stat().st_size,
            },
            {"mediaType": "application/vnd.ollama.image.template", **template},
            {"mediaType": "application/vnd.ollama.image.params", **params},
        ],
    }
    path = models / "manifests" / "registry.ollama.ai" / "library" / "smollm2" / "135m"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(manifest))

    neuron = start_neuron(tmp_path / "home", "--models", str(models), "--no-default-models")
    try:
        client = ollama.Client(host=neuron.url)
        assert [m.model for m in client.list().models] == ["smollm2:135m"]
        reply = client.chat(
            "smollm2:135m",
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            options={"temperature": 0, "num_predict": 16},
        )
        assert "Paris" in reply.message.content
        assert "<|im_end|>" not in reply.message.content
    finally:
        neuron.stop()
    assert not (tmp_path / "home" / "models").exists()  # nothing written outside --models
