"""Models on disk in Ollama's layout, so a real Ollama models directory can be served as is.

    <root>/blobs/sha256-<hex>                         content-addressed files
    <root>/manifests/<host>/<namespace>/<model>/<tag> JSON manifest naming a config blob and layers

Writes are atomic (temp file + rename in the same directory) so a crash or a failed download
never leaves a half-written blob or manifest under its final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from neurons.errors import (
    BlobNotFoundError,
    DigestMismatchError,
    ModelNotFoundError,
    NeuronsError,
)
from neurons.ollama.names import ModelName, digest_to_filename, file_digest, normalize_digest

__all__ = [
    "MANIFEST_MEDIA_TYPE",
    "MEDIA_ADAPTER",
    "MEDIA_CONFIG",
    "MEDIA_LICENSE",
    "MEDIA_MESSAGES",
    "MEDIA_MODEL",
    "MEDIA_PARAMS",
    "MEDIA_PROJECTOR",
    "MEDIA_SYSTEM",
    "MEDIA_TEMPLATE",
    "BlobWriter",
    "Layer",
    "Manifest",
    "ModelStore",
    "StoredModel",
]

MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_MODEL = "application/vnd.ollama.image.model"
MEDIA_ADAPTER = "application/vnd.ollama.image.adapter"
MEDIA_PROJECTOR = "application/vnd.ollama.image.projector"
MEDIA_TEMPLATE = "application/vnd.ollama.image.template"
MEDIA_SYSTEM = "application/vnd.ollama.image.system"
MEDIA_PARAMS = "application/vnd.ollama.image.params"
MEDIA_MESSAGES = "application/vnd.ollama.image.messages"
MEDIA_LICENSE = "application/vnd.ollama.image.license"


@dataclass(frozen=True)
class Layer:
    media_type: str
    digest: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Layer:
        return cls(
            media_type=str(data["mediaType"]),
            digest=normalize_digest(str(data["digest"])),
            size=int(data["size"]),
        )


@dataclass(frozen=True)
class Manifest:
    config: Layer
    layers: tuple[Layer, ...]

    def to_bytes(self) -> bytes:
        body = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": self.config.to_json(),
            "layers": [layer.to_json() for layer in self.layers],
        }
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Manifest:
        data = json.loads(raw)
        return cls(
            config=Layer.from_json(data["config"]),
            layers=tuple(Layer.from_json(item) for item in data.get("layers", [])),
        )

    def digests(self) -> list[str]:
        return [self.config.digest, *(layer.digest for layer in self.layers)]

    @property
    def size(self) -> int:
        return sum(layer.size for layer in self.layers)

    def first(self, media_type: str) -> Layer | None:
        return next((la for la in self.layers if la.media_type == media_type), None)

    def all(self, media_type: str) -> list[Layer]:
        return [la for la in self.layers if la.media_type == media_type]


@dataclass
class StoredModel:
    """A resolved model: its manifest plus the decoded small layers."""

    name: ModelName
    manifest: Manifest
    manifest_digest: str
    modified_at: datetime
    config: dict[str, Any]
    model_path: Path | None
    adapter_paths: list[Path] = field(default_factory=list)
    projector_paths: list[Path] = field(default_factory=list)
    template: str | None = None
    system: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    licenses: list[str] = field(default_factory=list)


class BlobWriter:
    """Streams bytes into a temp file, hashing as it goes; ``commit`` verifies and renames."""

    def __init__(self, store: ModelStore) -> None:
        self._store = store
        store.blobs_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".partial-", dir=store.blobs_dir)
        self._file: IO[bytes] = os.fdopen(fd, "wb")
        self.temp_path = Path(tmp)
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self._file.write(chunk)
        self.size += len(chunk)

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    def commit(self, expected: str | None = None) -> str:
        """Verify against ``expected`` (if given), move into place and return the digest."""
        self._file.close()
        actual = self.digest
        if expected is not None and normalize_digest(expected) != actual:
            self.abort()
            raise DigestMismatchError(
                f'digest mismatch, expected "{normalize_digest(expected)}", got "{actual}"'
            )
        os.chmod(self.temp_path, 0o644)
        os.replace(self.temp_path, self._store.blob_path(actual))
        return actual

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        self.temp_path.unlink(missing_ok=True)


class ModelStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs_dir = root / "blobs"
        self.manifests_dir = root / "manifests"

    def ensure(self) -> None:
        self.blobs_dir.mkdir(parents=True, exist_ok=True)
        self.manifests_dir.mkdir(parents=True, exist_ok=True)
        # Leftovers of an interrupted upload or pull are never valid blobs.
        for partial in self.blobs_dir.glob(".partial-*"):
            partial.unlink(missing_ok=True)

    # -- blobs -------------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        return self.blobs_dir / digest_to_filename(digest)

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def require_blob(self, digest: str) -> Path:
        path = self.blob_path(digest)
        if not path.is_file():
            raise BlobNotFoundError(f'blob "{normalize_digest(digest)}" not found')
        return path

    def blob_writer(self) -> BlobWriter:
        return BlobWriter(self)

    def add_blob_bytes(self, data: bytes) -> Layer:
        return self.add_blob_chunks([data])

    def add_blob_chunks(self, chunks: Iterable[bytes], expected: str | None = None) -> Layer:
        writer = self.blob_writer()
        try:
            for chunk in chunks:
                writer.write(chunk)
            size = writer.size
            digest = writer.commit(expected)
        except BaseException:
            writer.abort()
            raise
        return Layer(media_type="", digest=digest, size=size)

    def add_blob_file(self, path: Path) -> Layer:
        """Import a file (hashing it); hard-links when possible so big GGUFs are not copied."""
        digest = file_digest(path)
        target = self.blob_path(digest)
        size = path.stat().st_size
        if not target.is_file():
            self.blobs_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".partial-", dir=self.blobs_dir)
            os.close(fd)
            tmp_path = Path(tmp)
            try:
                tmp_path.unlink()
                try:
                    os.link(path, tmp_path)
                except OSError:
                    shutil.copyfile(path, tmp_path)
                os.replace(tmp_path, target)
            finally:
                tmp_path.unlink(missing_ok=True)
        return Layer(media_type="", digest=digest, size=size)

    def read_blob_text(self, digest: str) -> str:
        return self.require_blob(digest).read_text(encoding="utf-8")

    def read_blob_json(self, digest: str) -> Any:
        return json.loads(self.require_blob(digest).read_bytes())

    # -- manifests ---------------------------------------------------------------------------

    def _manifest_path(self, name: ModelName) -> Path:
        return self.manifests_dir.joinpath(*name.relative_path.parts)

    def iter_names(self) -> Iterator[ModelName]:
        if not self.manifests_dir.is_dir():
            return
        for path in sorted(self.manifests_dir.glob("*/*/*/*")):
            if not path.is_file():
                continue
            rel = path.relative_to(self.manifests_dir).parts
            candidate = ModelName(host=rel[0], namespace=rel[1], model=rel[2], tag=rel[3])
            if candidate.is_valid():
                yield candidate

    def find(self, name: str | ModelName) -> ModelName | None:
        """The stored spelling of ``name`` (matched case-insensitively), or None."""
        wanted = ModelName.parse(name) if isinstance(name, str) else name
        if self._manifest_path(wanted).is_file():
            return wanted
        return next((n for n in self.iter_names() if n.key() == wanted.key()), None)

    def resolve_name(self, name: str | ModelName) -> ModelName:
        found = self.find(name)
        if found is None:
            shown = name if isinstance(name, str) else name.display
            raise ModelNotFoundError(f"model '{shown}' not found")
        return found

    def read_manifest(self, name: ModelName) -> tuple[Manifest, str, datetime]:
        path = self._manifest_path(name)
        try:
            raw = path.read_bytes()
            stat = path.stat()
        except FileNotFoundError:
            raise ModelNotFoundError(f"model '{name.display}' not found") from None
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        modified = datetime.fromtimestamp(stat.st_mtime, tz=UTC)
        return Manifest.from_bytes(raw), digest, modified

    def write_manifest(self, name: ModelName, manifest: Manifest) -> None:
        for digest in manifest.digests():
            self.require_blob(digest)
        existing = self.find(name)
        target = self._manifest_path(existing or name)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".partial-", dir=target.parent)
        with os.fdopen(fd, "wb") as handle:
            handle.write(manifest.to_bytes())
        os.replace(tmp, target)

    def delete_manifest(self, name: ModelName) -> None:
        path = self._manifest_path(name)
        try:
            path.unlink()
        except FileNotFoundError:
            raise ModelNotFoundError(f"model '{name.display}' not found") from None
        # Remove emptied directories up to (not including) manifests/.
        parent = path.parent
        while parent != self.manifests_dir and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent

    def referenced_digests(self) -> set[str]:
        """Every blob some readable manifest uses (config and layers)."""
        used: set[str] = set()
        for name in self.iter_names():
            try:
                manifest, _, _ = self.read_manifest(name)
            except (ValueError, KeyError, NeuronsError):
                continue  # a broken manifest must not block clean-up of the others
            used.update(manifest.digests())
        return used

    def prune_blobs(self) -> list[str]:
        """Delete blobs no manifest references; returns the removed digests."""
        used = self.referenced_digests()
        removed = []
        for blob in self.blobs_dir.glob("sha256-*"):
            digest = blob.name.replace("-", ":", 1)
            if digest not in used:
                blob.unlink(missing_ok=True)
                removed.append(digest)
        return removed

    # -- resolved models ---------------------------------------------------------------------

    def load(self, name: str | ModelName) -> StoredModel:
        resolved = self.resolve_name(name)
        manifest, manifest_digest, modified = self.read_manifest(resolved)
        config: dict[str, Any] = {}
        if self.has_blob(manifest.config.digest):
            loaded = self.read_blob_json(manifest.config.digest)
            config = loaded if isinstance(loaded, dict) else {}
        model = StoredModel(
            name=resolved,
            manifest=manifest,
            manifest_digest=manifest_digest,
            modified_at=modified,
            config=config,
            model_path=None,
        )
        for layer in manifest.layers:
            kind = layer.media_type
            if kind == MEDIA_MODEL:
                model.model_path = self.require_blob(layer.digest)
            elif kind == MEDIA_ADAPTER:
                model.adapter_paths.append(self.require_blob(layer.digest))
            elif kind == MEDIA_PROJECTOR:
                model.projector_paths.append(self.require_blob(layer.digest))
            elif kind == MEDIA_TEMPLATE:
                model.template = self.read_blob_text(layer.digest)
            elif kind == MEDIA_SYSTEM:
                model.system = self.read_blob_text(layer.digest)
            elif kind == MEDIA_PARAMS:
                params = self.read_blob_json(layer.digest)
                model.params = params if isinstance(params, dict) else {}
            elif kind == MEDIA_MESSAGES:
                messages = self.read_blob_json(layer.digest)
                model.messages = messages if isinstance(messages, list) else []
            elif kind == MEDIA_LICENSE:
                model.licenses.append(self.read_blob_text(layer.digest))
        return model
