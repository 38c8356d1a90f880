"""``to_create_request(..., local_files=False)``: a Modelfile that arrives over the network is
turned into an ``/api/create`` body without reading this machine's disk. FROM names a model
or an ``@sha256:`` blob; ADAPTER and DRAFT must be blob references."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from neurons.errors import ModelfileError
from neurons.modelfile import convert, parse, to_create_request

HEX = "0123456789abcdef" * 4
HEX2 = "fedcba9876543210" * 4


@pytest.fixture
def no_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the converter looks up or hashes a local file."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("to_create_request(local_files=False) touched the disk")

    monkeypatch.setattr(convert, "_local_path", refuse)
    monkeypatch.setattr(convert, "file_digest", refuse)


def remote(text: str, base_dir: Path | None = None) -> tuple[dict[str, Any], dict[str, Path]]:
    return to_create_request(parse(text), "m", base_dir=base_dir, local_files=False)


@pytest.mark.usefixtures("no_disk")
def test_from_an_existing_file_stays_a_model_name(tmp_path: Path) -> None:
    weights = tmp_path / "weights.gguf"
    weights.write_bytes(b"GGUF\x03\x00\x00\x00")
    assert remote(f"FROM {weights}") == ({"model": "m", "from": str(weights)}, {})
    # base_dir is ignored too: a relative name is a model name, not a path under it.
    assert remote("FROM weights.gguf", base_dir=tmp_path) == (
        {"model": "m", "from": "weights.gguf"},
        {},
    )


def test_the_same_file_is_hashed_when_local_files_are_allowed(tmp_path: Path) -> None:
    # The contrast: with local files allowed, the same FROM becomes an uploaded blob.
    weights = tmp_path / "weights.gguf"
    weights.write_bytes(b"GGUF\x03\x00\x00\x00")
    body, blobs = to_create_request(parse(f"FROM {weights}"), "m")
    assert "from" not in body and list(body["files"]) == ["weights.gguf"]
    assert list(blobs.values()) == [weights]


@pytest.mark.usefixtures("no_disk")
@pytest.mark.parametrize(
    "text",
    ["FROM /", "FROM ~no-such-user-here/model.gguf", "FROM ."],
    ids=["root-directory", "unknown-user-home", "current-directory"],
)
def test_from_values_a_local_lookup_would_refuse_are_names(text: str) -> None:
    body, blobs = remote(text)
    assert body == {"model": "m", "from": text.removeprefix("FROM ")}
    assert blobs == {}


@pytest.mark.usefixtures("no_disk")
@pytest.mark.parametrize(
    ("text", "body"),
    [
        (f"FROM @sha256:{HEX}", {"files": {f"sha256-{HEX}": f"sha256:{HEX}"}}),
        (f"FROM @sha256-{HEX}", {"files": {f"sha256-{HEX}": f"sha256:{HEX}"}}),
        (f"FROM @sha256:{HEX.upper()}", {"files": {f"sha256-{HEX}": f"sha256:{HEX}"}}),
        (
            f"FROM @sha256:{HEX}\nFROM @sha256:{HEX2}",
            {"files": {f"sha256-{HEX}": f"sha256:{HEX}", f"sha256-{HEX2}": f"sha256:{HEX2}"}},
        ),
        (
            f"FROM llama3\nADAPTER @sha256:{HEX}",
            {"from": "llama3", "adapters": {f"sha256-{HEX}": f"sha256:{HEX}"}},
        ),
        (
            f"FROM @sha256:{HEX}\nADAPTER @sha256:{HEX}\nADAPTER @sha256:{HEX2}",
            {
                "files": {f"sha256-{HEX}": f"sha256:{HEX}"},
                "adapters": {f"sha256-{HEX2}": f"sha256:{HEX2}"},  # the last ADAPTER wins
            },
        ),
        (
            f"FROM llama3\nDRAFT @sha256:{HEX}",
            {"from": "llama3", "draft_files": {f"sha256-{HEX}": f"sha256:{HEX}"}},
        ),
        (
            f"FROM @sha256:{HEX}\nSYSTEM be brief\nPARAMETER temperature 0.5",
            {
                "files": {f"sha256-{HEX}": f"sha256:{HEX}"},
                "system": "be brief",
                "parameters": {"temperature": 0.5},
            },
        ),
    ],
    ids=[
        "from-blob",
        "from-blob-dash",
        "from-blob-uppercase",
        "from-two-blobs",
        "adapter-blob",
        "last-adapter-wins",
        "draft-blob",
        "blob-with-other-fields",
    ],
)
def test_blob_references_become_files(text: str, body: dict[str, Any]) -> None:
    assert remote(text) == ({"model": "m", **body}, {})


@pytest.mark.parametrize(
    "command",
    ["ADAPTER", "DRAFT"],
)
def test_adapter_or_draft_with_a_path_fails(command: str, tmp_path: Path) -> None:
    adapter = tmp_path / "lora.gguf"
    adapter.write_bytes(b"GGUF adapter")
    for value in (str(adapter), "lora.gguf", "missing.gguf"):
        with pytest.raises(ModelfileError, match=f"{command} {value}: no such file"):
            remote(f"FROM llama3\n{command} {value}", base_dir=tmp_path)
    # Allowed locally, the same existing file is hashed instead.
    body, blobs = to_create_request(parse(f"FROM llama3\n{command} {adapter}"), "m")
    assert list(blobs.values()) == [adapter]


@pytest.mark.parametrize(
    "value",
    [f"@sha256:{HEX[:-1]}", f"sha256:{HEX}", f"@sha512:{HEX}", f"@sha256:{HEX}0"],
    ids=["short", "no-at", "other-hash", "long"],
)
def test_adapter_with_a_malformed_reference_fails(value: str) -> None:
    with pytest.raises(ModelfileError, match="no such file"):
        remote(f"FROM llama3\nADAPTER {value}")


def test_malformed_from_reference_is_a_model_name() -> None:
    # Not a blob reference, so (like any other FROM) it names a model.
    assert remote(f"FROM @sha256:{HEX[:-1]}")[0] == {"model": "m", "from": f"@sha256:{HEX[:-1]}"}
