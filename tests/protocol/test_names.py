from __future__ import annotations

import pytest

from neurons.errors import InvalidDigestError, InvalidModelNameError
from neurons.ollama.names import ModelName, digest_to_filename, normalize_digest

HEX = "ab" * 32


@pytest.mark.parametrize(
    ("text", "host", "namespace", "model", "tag", "display"),
    [
        ("smollm2", "registry.ollama.ai", "library", "smollm2", "latest", "smollm2:latest"),
        ("smollm2:135m", "registry.ollama.ai", "library", "smollm2", "135m", "smollm2:135m"),
        ("me/tiny:v1", "registry.ollama.ai", "me", "tiny", "v1", "me/tiny:v1"),
        (
            "127.0.0.1:5000/lib/tiny:v1",
            "127.0.0.1:5000",
            "lib",
            "tiny",
            "v1",
            "127.0.0.1:5000/lib/tiny:v1",
        ),
        ("example.com/a/b", "example.com", "a", "b", "latest", "example.com/a/b:latest"),
        (
            "qwen2.5:0.5b@sha256:" + HEX,
            "registry.ollama.ai",
            "library",
            "qwen2.5",
            "0.5b",
            "qwen2.5:0.5b",
        ),
    ],
)
def test_parse(text: str, host: str, namespace: str, model: str, tag: str, display: str) -> None:
    name = ModelName.parse(text)
    assert (name.host, name.namespace, name.model, name.tag) == (host, namespace, model, tag)
    assert name.display == display


@pytest.mark.parametrize(
    "text", ["", "   ", "../etc", "a/../../b", "/abs", "a/b/c/d", "x:", "x:../y", ".hidden", "a b"]
)
def test_invalid_names_never_become_paths(text: str) -> None:
    with pytest.raises(InvalidModelNameError):
        ModelName.parse(text)


def test_case_insensitive_key() -> None:
    assert ModelName.parse("SmolLM2:135M").key() == ModelName.parse("smollm2:135m").key()


@pytest.mark.parametrize(
    ("digest", "expected"),
    [("sha256:" + HEX, "sha256:" + HEX), ("sha256-" + HEX.upper(), "sha256:" + HEX)],
)
def test_normalize_digest(digest: str, expected: str) -> None:
    assert normalize_digest(digest) == expected
    assert digest_to_filename(digest) == expected.replace(":", "-")


@pytest.mark.parametrize(
    "digest", ["", "sha256:", "sha256:xyz", "md5:" + HEX, "sha256:" + HEX + "/.."]
)
def test_bad_digests(digest: str) -> None:
    with pytest.raises(InvalidDigestError):
        normalize_digest(digest)
