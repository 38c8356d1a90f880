"""The Ollama on-disk layout, on a real temp directory."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from neurons.errors import BlobNotFoundError, DigestMismatchError, ModelNotFoundError
from neurons.neuron.modelstore import (
    MEDIA_CONFIG,
    MEDIA_MODEL,
    MEDIA_SYSTEM,
    Layer,
    Manifest,
    ModelStore,
)
from neurons.ollama.names import ModelName


@pytest.fixture()
def store(tmp_path: Path) -> ModelStore:
    result = ModelStore(tmp_path / "models")
    result.ensure()
    return result


def _model(store: ModelStore, name: str, system: str = "hi") -> Manifest:
    weights = store.add_blob_bytes(b"GGUF fake weights")
    sys_layer = store.add_blob_bytes(system.encode())
    config = store.add_blob_bytes(json.dumps({"model_format": "gguf"}).encode())
    manifest = Manifest(
        config=Layer(MEDIA_CONFIG, config.digest, config.size),
        layers=(
            Layer(MEDIA_MODEL, weights.digest, weights.size),
            Layer(MEDIA_SYSTEM, sys_layer.digest, sys_layer.size),
        ),
    )
    store.write_manifest(ModelName.parse(name), manifest)
    return manifest


def test_layout_matches_ollama(store: ModelStore) -> None:
    manifest = _model(store, "tiny:1b")
    path = store.root / "manifests" / "registry.ollama.ai" / "library" / "tiny" / "1b"
    assert path.is_file()
    data = json.loads(path.read_bytes())
    assert data["schemaVersion"] == 2
    assert data["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert data["layers"][0]["mediaType"] == "application/vnd.ollama.image.model"
    for digest in manifest.digests():
        assert (store.root / "blobs" / digest.replace(":", "-")).is_file()
    loaded = store.load("TINY:1B")  # names match case-insensitively, as in Ollama
    assert loaded.system == "hi" and loaded.model_path is not None
    assert loaded.manifest_digest == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_blob_writer_verifies_digest_and_cleans_up(store: ModelStore) -> None:
    good = "sha256:" + hashlib.sha256(b"payload").hexdigest()
    with pytest.raises(DigestMismatchError):
        store.add_blob_chunks([b"pay", b"load!"], expected=good)
    assert not list(store.blobs_dir.iterdir())  # no partial file left
    layer = store.add_blob_chunks([b"pay", b"load"], expected=good)
    assert layer.digest == good and store.has_blob(good)
    assert store.blob_path(good).stat().st_mode & 0o777 == 0o644


def test_manifest_needs_its_blobs(store: ModelStore) -> None:
    missing = "sha256:" + "1" * 64
    manifest = Manifest(config=Layer(MEDIA_CONFIG, missing, 1), layers=())
    with pytest.raises(BlobNotFoundError):
        store.write_manifest(ModelName.parse("x"), manifest)
    assert store.find("x") is None


def test_delete_and_prune_keep_shared_blobs(store: ModelStore) -> None:
    first = _model(store, "a:1", system="shared")
    _model(store, "b:1", system="shared")
    store.delete_manifest(ModelName.parse("a:1"))
    assert store.prune_blobs() == []  # b:1 uses every blob a:1 had
    store.delete_manifest(ModelName.parse("b:1"))
    removed = set(store.prune_blobs())
    assert removed == set(first.digests())
    with pytest.raises(ModelNotFoundError):
        store.load("a:1")
    assert not (store.root / "manifests" / "registry.ollama.ai").exists()


def test_import_file_hard_links_or_copies(store: ModelStore, tmp_path: Path) -> None:
    source = tmp_path / "w.gguf"
    source.write_bytes(b"GGUF" + b"\0" * 100)
    layer = store.add_blob_file(source)
    assert store.blob_path(layer.digest).read_bytes() == source.read_bytes()
    assert layer.size == 104


def test_ensure_removes_interrupted_uploads(store: ModelStore) -> None:
    (store.blobs_dir / ".partial-abc").write_bytes(b"half")
    store.ensure()
    assert not (store.blobs_dir / ".partial-abc").exists()
