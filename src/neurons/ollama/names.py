"""Model names and blob digests, parsed strictly because they become file paths.

A model name is ``[host/][namespace/]model[:tag]`` as in Ollama; the defaults are
``registry.ollama.ai``, ``library`` and ``latest``. Every part is checked against a closed
character set before it is ever joined into a path, so ``../`` and absolute paths cannot
reach the file system.

>>> ModelName.parse("smollm2:135m").display
'smollm2:135m'
>>> ModelName.parse("me/tiny").display
'me/tiny:latest'
>>> ModelName.parse("127.0.0.1:5000/library/tiny:v1").host
'127.0.0.1:5000'
>>> digest_to_filename("sha256:" + "a" * 64)
'sha256-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from neurons.errors import InvalidDigestError, InvalidModelNameError

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_NAMESPACE",
    "DEFAULT_TAG",
    "ModelName",
    "canonical_name",
    "digest_to_filename",
    "normalize_digest",
]

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"

_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}$")
_HOST = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,349}$")
_DIGEST = re.compile(r"^sha256[:-]([0-9a-fA-F]{64})$")


@dataclass(frozen=True)
class ModelName:
    """A fully qualified model name."""

    host: str
    namespace: str
    model: str
    tag: str

    @classmethod
    def parse(cls, text: str) -> ModelName:
        raw = text.strip()
        if not raw:
            raise InvalidModelNameError(f'name "{text}" is invalid')
        if "@" in raw:
            raw = raw.split("@", 1)[0]
        rest, tag = raw, DEFAULT_TAG
        slash = raw.rfind("/")
        colon = raw.rfind(":")
        if colon > slash:
            rest, tag = raw[:colon], raw[colon + 1 :]
        parts = rest.split("/")
        if len(parts) == 1:
            host, namespace, model = DEFAULT_HOST, DEFAULT_NAMESPACE, parts[0]
        elif len(parts) == 2:
            host, namespace, model = DEFAULT_HOST, parts[0], parts[1]
        elif len(parts) == 3:
            host, namespace, model = parts
        else:
            raise InvalidModelNameError(f'name "{text}" is invalid')
        name = cls(host=host, namespace=namespace, model=model, tag=tag)
        if not name.is_valid():
            raise InvalidModelNameError(f'name "{text}" is invalid')
        return name

    def is_valid(self) -> bool:
        return (
            bool(_HOST.match(self.host))
            and all(_PART.match(p) for p in (self.namespace, self.model, self.tag))
            and ".." not in self.host
        )

    @property
    def display(self) -> str:
        """Ollama's shortest display form (``DisplayShortest``)."""
        short = f"{self.model}:{self.tag}"
        if self.host.lower() == DEFAULT_HOST:
            if self.namespace.lower() == DEFAULT_NAMESPACE:
                return short
            return f"{self.namespace}/{short}"
        return f"{self.host}/{self.namespace}/{short}"

    @property
    def relative_path(self) -> PurePosixPath:
        """Path of the manifest below ``manifests/`` (validated parts only)."""
        return PurePosixPath(self.host, self.namespace, self.model, self.tag)

    def key(self) -> tuple[str, str, str, str]:
        """Case-insensitive identity, as Ollama matches names."""
        return (self.host.lower(), self.namespace.lower(), self.model.lower(), self.tag.lower())

    def __str__(self) -> str:
        return self.display


def canonical_name(text: str) -> str:
    """The display form other nodes' names are matched by: ``registry.ollama.ai/library/
    llama3:latest`` and ``llama3`` both give ``llama3:latest``. A name that does not parse (a
    foreign node may list anything) keeps its text, with ``:latest`` added when it has no tag.

    >>> canonical_name("registry.ollama.ai/library/llama3")
    'llama3:latest'
    >>> canonical_name("weird name")
    'weird name:latest'
    """
    try:
        return ModelName.parse(text).display
    except InvalidModelNameError:
        return text if ":" in text.rsplit("/", 1)[-1] else f"{text}:latest"


def normalize_digest(digest: str) -> str:
    """Return ``sha256:<lowercase hex>`` or raise :class:`InvalidDigestError`."""
    match = _DIGEST.match(digest.strip())
    if match is None:
        raise InvalidDigestError("invalid digest format")
    return "sha256:" + match.group(1).lower()


def file_digest(path: Path) -> str:
    """``sha256:<hex>`` of a file's bytes (how blobs are named), read in 1 MiB chunks."""
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            sha.update(chunk)
    return "sha256:" + sha.hexdigest()


def digest_to_filename(digest: str) -> str:
    return normalize_digest(digest).replace(":", "-", 1)
