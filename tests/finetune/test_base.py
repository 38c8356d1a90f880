"""Loading a served GGUF into transformers: converted once, then from the cache; what is
loaded computes what llama.cpp computes and keeps the GGUF's chat template."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
import torch

from neurons.errors import InvalidDigestError, InvalidRequestError
from neurons.finetune import base as base_module
from neurons.finetune.base import (
    MARKER,
    base_cache_path,
    gguf_architecture,
    load_base,
    read_base_info,
)
from neurons.neuron.defaults import _smollm2_path
from neurons.neuron.llama import configure_llama_cpp
from neurons.ollama.names import file_digest

SMOLLM2 = _smollm2_path(Path())


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, float]:
    """One real conversion of SmolLM2 for the module: (cache dir, digest, seconds taken)."""
    cache = tmp_path_factory.mktemp("base-cache")
    digest = file_digest(SMOLLM2).removeprefix("sha256:")  # the cache names entries by hex
    started = time.monotonic()
    load_base(SMOLLM2, cache, digest=digest)
    return cache, digest, time.monotonic() - started


@pytest.fixture
def no_conversion(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make any conversion fail loudly; returns the digests it was asked for."""
    calls: list[str] = []

    def refuse(gguf_path: Path, cache_dir: Path, hex_digest: str, template: str | None) -> None:
        calls.append(hex_digest)
        raise AssertionError("converted although the cache should have been used")

    monkeypatch.setattr(base_module, "_convert", refuse)
    return calls


@pytest.fixture
def copy_conversion(
    monkeypatch: pytest.MonkeyPatch, converted: tuple[Path, str, float]
) -> list[str]:
    """Stand in for a conversion by copying the module's good entry (the real one takes
    ~20 s); returns the digests it was asked for."""
    good = converted[0] / converted[1]
    calls: list[str] = []

    def copy(gguf_path: Path, cache_dir: Path, hex_digest: str, template: str | None) -> None:
        calls.append(hex_digest)
        shutil.copytree(good, cache_dir / hex_digest)

    monkeypatch.setattr(base_module, "_convert", copy)
    return calls


def test_header_info() -> None:
    info = read_base_info(SMOLLM2)
    assert gguf_architecture(SMOLLM2) == info.architecture == "llama"
    assert (info.block_count, info.head_count, info.head_count_kv) == (30, 9, 3)
    assert info.chat_template is not None and "<|im_start|>" in info.chat_template
    assert info.tensor_shapes["blk.0.attn_k.weight"] == (576, 192)  # ggml order: in, out


def test_first_load_converts_later_loads_use_the_cache(
    converted: tuple[Path, str, float], no_conversion: list[str]
) -> None:
    cache, digest, first_s = converted
    entry = cache / digest
    assert (entry / MARKER).is_file() and (entry / "model.safetensors").is_file()
    assert [p.name for p in cache.iterdir()] == [digest]  # no temp dir left over

    started = time.monotonic()
    model, tokenizer = load_base(SMOLLM2, cache, digest=f"sha256:{digest}")
    cached_s = time.monotonic() - started

    print(f"first load (conversion) {first_s:.1f} s, from the cache {cached_s:.1f} s")
    assert no_conversion == []
    assert cached_s < first_s
    assert model.dtype == torch.float32 and not getattr(model, "is_quantized", False)
    assert getattr(model, "hf_quantizer", None) is None
    assert "quantization_config" not in json.loads((entry / "config.json").read_text())
    # the digest is found the same way without being told, and in the blob store's spelling
    load_base(SMOLLM2, cache)
    load_base(SMOLLM2, cache, digest=f"sha256-{digest.upper()}")
    assert base_cache_path(cache, f"sha256:{digest}") == entry


def test_the_converted_model_computes_what_llama_cpp_does(
    converted: tuple[Path, str, float],
) -> None:
    cache, digest, _ = converted
    model, tokenizer = load_base(SMOLLM2, cache, digest=digest)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])

    llm = configure_llama_cpp().Llama(
        model_path=str(SMOLLM2), logits_all=True, n_ctx=256, verbose=False, n_threads=2
    )
    try:
        assert list(llm.tokenize(text.encode(), add_bos=False, special=True)) == ids
        llm.eval(ids)
        reference = np.array(llm.scores[: len(ids)], dtype=np.float64)
    finally:
        llm.close()
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double().numpy()

    def log_softmax(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        x = x - x.max(-1, keepdims=True)
        return x - np.log(np.exp(x).sum(-1, keepdims=True))

    p, q = log_softmax(reference), log_softmax(logits)
    kl = float((np.exp(p) * (p - q)).sum(-1).mean())
    print(f"KL(llama.cpp || transformers) of the base = {kl:.4f}")
    assert kl < 0.05  # Q4_1 in llama.cpp against its exact dequantization in float32
    assert (p.argmax(-1) == q.argmax(-1)).mean() > 0.9


def test_tokenizer_keeps_the_chat_template(converted: tuple[Path, str, float]) -> None:
    cache, digest, _ = converted
    _, tokenizer = load_base(SMOLLM2, cache, digest=digest)
    assert tokenizer.chat_template == read_base_info(SMOLLM2).chat_template
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert rendered.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


def test_dtype(converted: tuple[Path, str, float], no_conversion: list[str]) -> None:
    cache, digest, _ = converted
    model, _ = load_base(SMOLLM2, cache, digest=digest, dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16


def _drop_marker(entry: Path) -> None:
    (entry / MARKER).unlink()


def _truncate_weights(entry: Path) -> None:
    with (entry / "model.safetensors").open("r+b") as handle:
        handle.truncate(1000)


def _garble_weights(entry: Path) -> None:
    # same size, so only loading it can tell
    weights = entry / "model.safetensors"
    weights.write_bytes(b"\xff" * weights.stat().st_size)


def _drop_tokenizer(entry: Path) -> None:
    (entry / "tokenizer.json").unlink()


@pytest.mark.parametrize(
    "damage", [_drop_marker, _truncate_weights, _garble_weights, _drop_tokenizer]
)
def test_a_damaged_cache_entry_is_rebuilt(
    converted: tuple[Path, str, float],
    copy_conversion: list[str],
    tmp_path: Path,
    damage: Callable[[Path], None],
) -> None:
    good, digest, _ = converted
    shutil.copytree(good / digest, tmp_path / digest)
    damage(tmp_path / digest)

    model, tokenizer = load_base(SMOLLM2, tmp_path, digest=digest)

    assert copy_conversion == [digest]
    assert tokenizer.chat_template is not None and model.config.num_hidden_layers == 30


def test_stale_temp_dirs_are_removed(
    converted: tuple[Path, str, float], copy_conversion: list[str], tmp_path: Path
) -> None:
    _, digest, _ = converted
    stale = tmp_path / f".{digest}.abc.tmp"
    fresh = tmp_path / f".{digest}.def.tmp"  # perhaps another process converting right now
    for path in (stale, fresh):
        path.mkdir()
        (path / "model.safetensors").write_bytes(b"half")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))

    load_base(SMOLLM2, tmp_path, digest=digest)

    assert copy_conversion == [digest]
    assert not stale.exists() and fresh.exists()


def test_refusals(tmp_path: Path) -> None:
    with pytest.raises(InvalidDigestError):
        load_base(SMOLLM2, tmp_path, digest="sha256:1234")
    with pytest.raises(InvalidRequestError, match="does not exist"):
        load_base(tmp_path / "missing.gguf", tmp_path)

    bert = tmp_path / "bert.gguf"
    writer = gguf.GGUFWriter(bert, "bert")
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(InvalidRequestError, match="cannot fine-tune a 'bert' model"):
        load_base(bert, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()
