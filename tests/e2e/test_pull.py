"""``/api/pull`` against a real registry server on loopback that speaks Ollama's registry
protocol (Docker registry v2 paths), serving a model exported from a neuron's own store."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import ollama
import pytest

from neurons.neuron.modelstore import ModelStore
from neurons.neuron.process import NeuronProcess
from neurons.ollama.names import ModelName
from tests.conftest import free_port


class Registry:
    """Serves manifests and blobs straight from a ModelStore (like ollama.com would)."""

    def __init__(self, store: ModelStore) -> None:
        self.store = store
        self.requests: list[str] = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                registry.requests.append(self.path)
                parts = self.path.strip("/").split("/")
                # v2/<namespace>/<model>/(manifests|blobs)/<ref>
                if len(parts) != 5 or parts[0] != "v2":
                    self.send_error(404)
                    return
                _, namespace, model, kind, ref = parts
                if kind == "manifests":
                    name = ModelName("registry.test", namespace, model, ref)
                    found = next(
                        (n for n in store.iter_names() if n.model == model and n.tag == ref), None
                    )
                    if found is None:
                        self.send_error(404)
                        return
                    manifest, _, _ = store.read_manifest(found)
                    body = manifest.to_bytes()
                    del name
                elif kind == "blobs" and store.has_blob(ref):
                    body = store.blob_path(ref).read_bytes()
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture()
def registry(neuron: NeuronProcess) -> Iterator[Registry]:
    reg = Registry(ModelStore(neuron.home / "models"))
    reg.thread.start()
    try:
        yield reg
    finally:
        reg.server.shutdown()
        reg.server.server_close()


def _blob_files(neuron: NeuronProcess) -> set[str]:
    return {p.name for p in (neuron.home / "models" / "blobs").iterdir()}


def test_pull_from_registry_streams_progress_and_serves_model(
    ollama_client: ollama.Client, registry: Registry
) -> None:
    name = f"{registry.host}/library/smollm2:135m"
    progress = list(ollama_client.pull(name, insecure=True, stream=True))
    statuses = [p.status for p in progress]
    assert statuses[0] == "pulling manifest"
    assert statuses[-1] == "success"
    assert "writing manifest" in statuses
    assert any(p.digest and p.total for p in progress)
    assert any(path.endswith("/manifests/135m") for path in registry.requests)
    pulled = {m.model for m in ollama_client.list().models}
    assert name in pulled
    assert ollama_client.generate(name, "Hi", options={"num_predict": 2}).done
    ollama_client.delete(name)


def test_pull_unknown_model_is_an_error(ollama_client: ollama.Client, registry: Registry) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        ollama_client.pull(f"{registry.host}/library/nothing:here", insecure=True)
    assert "file does not exist" in caught.value.error


def test_pull_unreachable_registry_leaves_nothing_behind(
    ollama_client: ollama.Client, neuron: NeuronProcess
) -> None:
    before = _blob_files(neuron)
    dead = f"127.0.0.1:{free_port()}/library/ghost:1b"
    with pytest.raises(ollama.ResponseError) as caught:
        ollama_client.pull(dead, insecure=True)
    assert "cannot reach registry" in caught.value.error
    # Streaming form: the error arrives as a final NDJSON line.
    lines = (
        httpx.post(neuron.url + "/api/pull", json={"model": dead, "insecure": True}, timeout=30)
        .text.strip()
        .splitlines()
    )
    assert '"error"' in lines[-1]
    assert _blob_files(neuron) == before
    assert dead not in {m.model for m in ollama_client.list().models}
    assert not list(Path(neuron.home / "models" / "manifests").glob("127.0.0.1*"))
