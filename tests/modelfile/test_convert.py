"""Modelfile <-> /api/create body: Ollama's TestCreateRequest cases, local files hashed into
``files`` / ``adapters``, blob references, and the way back."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest

from neurons.errors import ModelfileError
from neurons.modelfile import (
    Instruction,
    Modelfile,
    blob_reference,
    from_create_request,
    parse,
    to_create_request,
)

I = Instruction  # noqa: E741 - keeps the tables readable
HEX = "ab" * 32
DIGEST = f"sha256:{HEX}"

# (id, Modelfile, body without "model") -- the first four are TestCreateRequest in Go.
BODIES: list[tuple[str, str, dict[str, Any]]] = [
    ("go-from", "FROM test", {"from": "test"}),
    (
        "go-template",
        "FROM test\nTEMPLATE some template\n",
        {"from": "test", "template": "some template"},
    ),
    (
        "go-license-parameter-message",
        "FROM test\nLICENSE single license\nPARAMETER temperature 0.5\nMESSAGE user Hello\n",
        {
            "from": "test",
            "license": ["single license"],
            "parameters": {"temperature": 0.5},
            "messages": [{"role": "user", "content": "Hello"}],
        },
    ),
    (
        "go-everything",
        "FROM test\nPARAMETER temperature 0.5\nPARAMETER top_k 1\nSYSTEM You are a bot.\n"
        "LICENSE license1\nLICENSE license2\nMESSAGE user Hello there!\n"
        "MESSAGE assistant Hi! How are you?\n",
        {
            "from": "test",
            "license": ["license1", "license2"],
            "system": "You are a bot.",
            "parameters": {"temperature": 0.5, "top_k": 1},
            "messages": [
                {"role": "user", "content": "Hello there!"},
                {"role": "assistant", "content": "Hi! How are you?"},
            ],
        },
    ),
    (
        "stop-list-and-deprecated-dropped",
        "FROM m\nPARAMETER stop a\nPARAMETER mirostat 1\nPARAMETER stop b\nPARAMETER use_mmap F",
        {"from": "m", "parameters": {"stop": ["a", "b"], "use_mmap": False}},
    ),
    (
        "last-single-values-win",
        "FROM a\nFROM b\nSYSTEM one\nSYSTEM two\nTEMPLATE t",
        {"from": "b", "template": "t", "system": "two"},
    ),
    (
        "requires-renderer-parser",
        "FROM m\nREQUIRES v0.14.0\nRENDERER qwen3\nPARSER qwen3",
        {"from": "m", "renderer": "qwen3", "parser": "qwen3", "requires": "0.14.0"},
    ),
    (
        "blob-reference",
        f"FROM @sha256:{HEX.upper()}\nADAPTER @sha256-{HEX}\nDRAFT @sha256:{HEX}",
        {
            "files": {f"sha256-{HEX}": DIGEST},
            "adapters": {f"sha256-{HEX}": DIGEST},
            "draft_files": {f"sha256-{HEX}": DIGEST},
        },
    ),
]


@pytest.mark.parametrize(("text", "body"), [b[1:] for b in BODIES], ids=[b[0] for b in BODIES])
def test_to_create_request(text: str, body: dict[str, Any], tmp_path: Path) -> None:
    result, blobs = to_create_request(parse(text), "me/model", base_dir=tmp_path)
    assert result == {"model": "me/model", **body}
    assert blobs == {}


def write(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def test_local_gguf_is_hashed(tmp_path: Path) -> None:
    digest = write(tmp_path / "weights" / "tiny.gguf", b"GGUF\x03\x00\x00\x00" + bytes(1000))
    adapter = write(tmp_path / "lora.gguf", b"GGUF adapter")
    mf = parse("FROM ./weights/tiny.gguf\nADAPTER lora.gguf\nSYSTEM hi")
    body, blobs = to_create_request(mf, "tiny", base_dir=tmp_path)
    assert body == {
        "model": "tiny",
        "files": {"tiny.gguf": digest},
        "adapters": {"lora.gguf": adapter},
        "system": "hi",
    }
    assert blobs == {digest: tmp_path / "weights" / "tiny.gguf", adapter: tmp_path / "lora.gguf"}
    assert list(body) == ["model", "files", "adapters", "system"]  # api.CreateRequest order


def test_large_file_hash_matches_sha256(tmp_path: Path) -> None:
    data = bytes(range(256)) * 20_000  # several read chunks
    digest = write(tmp_path / "big.gguf", data)
    body, _ = to_create_request(parse("FROM big.gguf"), "m", base_dir=tmp_path)
    assert body["files"] == {"big.gguf": digest}
    assert digest == "sha256:" + hashlib.sha256(data).hexdigest()


def test_several_from_files_merge(tmp_path: Path) -> None:
    first = write(tmp_path / "a.gguf", b"first")
    second = write(tmp_path / "b.gguf", b"second")
    mf = parse(f"FROM {tmp_path / 'a.gguf'}\nFROM {tmp_path / 'b.gguf'}")
    body, blobs = to_create_request(mf, "m")
    assert body["files"] == {"a.gguf": first, "b.gguf": second}
    assert set(blobs) == {first, second}


def test_from_name_and_file(tmp_path: Path) -> None:
    digest = write(tmp_path / "m.gguf", b"x")
    body, _ = to_create_request(parse("FROM llama3\nFROM m.gguf"), "m", base_dir=tmp_path)
    assert body["from"] == "llama3" and body["files"] == {"m.gguf": digest}


def test_relative_to_cwd_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    digest = write(tmp_path / "m.gguf", b"cwd")
    monkeypatch.chdir(tmp_path)
    body, _ = to_create_request(parse("FROM m.gguf"), "m")
    assert body["files"] == {"m.gguf": digest}


def test_home_directory_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    digest = write(tmp_path / "models" / "m.gguf", b"home")
    monkeypatch.setenv("HOME", str(tmp_path))
    body, _ = to_create_request(parse("FROM ~/models/m.gguf"), "m")
    assert body["files"] == {"m.gguf": digest}


def test_last_adapter_wins(tmp_path: Path) -> None:
    write(tmp_path / "one.gguf", b"1")
    two = write(tmp_path / "two.gguf", b"2")
    mf = parse("FROM m\nADAPTER one.gguf\nADAPTER two.gguf")
    body, _ = to_create_request(mf, "m", base_dir=tmp_path)
    assert body["adapters"] == {"two.gguf": two}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FROM m\nADAPTER missing.gguf", "(line 2): ADAPTER missing.gguf: no such file"),
        ("FROM m\n\nDRAFT nope", "(line 3): DRAFT nope: no such file"),
        ("FROM .", "is a directory: name a single GGUF file"),
        ("FROM m.gguf\nDRAFT ./m.gguf", "DRAFT must not reference the same local path as FROM"),
        ("FROM m\nPARAMETER top_k many", "(line 2): invalid int value [many]"),
    ],
    ids=["adapter-missing", "draft-missing", "directory", "draft-same-as-from", "invalid"],
)
def test_to_create_request_errors(text: str, message: str, tmp_path: Path) -> None:
    write(tmp_path / "m.gguf", b"m")
    with pytest.raises(ModelfileError, match=re.escape(message)):
        to_create_request(parse(text), "m", base_dir=tmp_path)


def test_to_create_request_lists_every_problem(tmp_path: Path) -> None:
    mf = Modelfile([I("parameter", "x", "seed"), I("parameter", "1", "bogus")])
    with pytest.raises(ModelfileError) as info:
        to_create_request(mf, "m", base_dir=tmp_path)
    assert info.value.problems == [
        "no FROM line",
        "invalid int value [x]",
        "unknown parameter 'bogus'",
    ]


# --- the way back ---------------------------------------------------------------------------


def test_from_create_request() -> None:
    mf = from_create_request(
        {
            "model": "ignored",
            "from": "llama3",
            "files": {"model.gguf": f"sha256-{HEX.upper()}"},
            "adapters": {"lora.gguf": DIGEST},
            "template": "{{ .Prompt }}",
            "system": "Be brief.",
            "parameters": {"temperature": 0.5, "stop": ["a", "b"], "num_ctx": 8192.0},
            "messages": [{"role": "user", "content": "hi"}],
            "license": "MIT",
            "requires": "0.14.0",
            "renderer": "r",
            "parser": "p",
            "stream": False,
            "quantize": "q4_K_M",
        }
    )
    assert mf.instructions == [
        I("from", "llama3"),
        I("from", f"@sha256:{HEX}"),
        I("adapter", f"@sha256:{HEX}"),
        I("template", "{{ .Prompt }}"),
        I("system", "Be brief."),
        I("parameter", "0.5", "temperature"),
        I("parameter", "a", "stop"),
        I("parameter", "b", "stop"),
        I("parameter", "8192", "num_ctx"),
        I("message", "hi", "user"),
        I("license", "MIT"),
        I("requires", "0.14.0"),
        I("renderer", "r"),
        I("parser", "p"),
    ]


def test_deprecated_parameters_are_dropped(caplog: pytest.LogCaptureFixture) -> None:
    mf = from_create_request({"from": "m", "parameters": {"mirostat": 1, "seed": 3}})
    assert mf.parameters() == {"seed": 3}
    assert "parameter mirostat is deprecated" in caplog.text


@pytest.mark.parametrize(
    "text",
    [
        "FROM llama3\nPARAMETER temperature 0.25\nPARAMETER stop x\nPARAMETER stop y\n"
        "SYSTEM s\nTEMPLATE t\nLICENSE a\nLICENSE b\nMESSAGE user u\nMESSAGE assistant a\n"
        "REQUIRES 0.14.0\nRENDERER r\nPARSER p\n",
        f"FROM @sha256:{HEX}\nADAPTER @sha256:{HEX}\n",
        'FROM m\nSYSTEM """\nmulti\n"line"\n"""\nPARAMETER use_mmap true\n',
    ],
    ids=["everything", "blobs", "multiline"],
)
def test_body_round_trip(text: str, tmp_path: Path) -> None:
    body, _ = to_create_request(parse(text), "m", base_dir=tmp_path)
    again, _ = to_create_request(from_create_request(body), "m", base_dir=tmp_path)
    assert again == body


def test_modelfile_round_trip_with_local_file(tmp_path: Path) -> None:
    digest = write(tmp_path / "m.gguf", b"weights")
    body, blobs = to_create_request(parse("FROM m.gguf\nSYSTEM s"), "m", base_dir=tmp_path)
    mf = from_create_request(body)
    assert mf.value("from") == blob_reference(digest)
    again, again_blobs = to_create_request(mf, "m")
    assert again["files"] == {f"sha256-{digest[7:]}": digest}  # now the blob's own name
    assert again_blobs == {} and blobs == {digest: tmp_path / "m.gguf"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "neither 'from' or 'files' was specified"),
        ([], "request body must be a JSON object"),
        ({"from": 3}, "from must be a string"),
        ({"files": {"m.gguf": "md5:1"}}, "invalid digest format"),
        ({"files": ["x"]}, "files must be an object of filename to digest"),
        ({"from": "m", "parameters": {"numa": True}}, "unknown parameter 'numa'"),
        ({"from": "m", "parameters": {"top_k": "x"}}, r"invalid int value \[x\]"),
        ({"from": "m", "parameters": []}, "parameters must be an object"),
        ({"from": "m", "messages": {}}, "messages must be a list"),
        ({"from": "m", "messages": [{"role": "tool", "content": "x"}]}, "message role"),
        ({"from": "m", "messages": [{"role": "user", "content": 1}]}, "messages must be"),
        ({"from": "m", "license": [1]}, "license must be a string or a list of strings"),
        ({"from": "m", "requires": "soon"}, "requires must be a valid semver"),
        ({"from": "m", "system": ["x"]}, "system must be a string"),
    ],
)
def test_from_create_request_errors(body: Any, message: str) -> None:
    with pytest.raises(ModelfileError, match=message):
        from_create_request(body)


def test_blob_reference() -> None:
    assert blob_reference(f"sha256-{HEX.upper()}") == f"@sha256:{HEX}"
    with pytest.raises(ModelfileError, match="invalid digest format"):
        blob_reference("sha256:short")
