"""The ONNX Runtime backend: the same vectors as torch, its export kept and reused, and a
clear error (or, under ``auto``, torch) where it cannot run. Real exports, real onnxruntime."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from neurons.config import Settings
from neurons.errors import ConfigError, ModelLoadError
from neurons.inference.config import InferenceConfig
from neurons.inference.model import Encoder, load_encoder
from neurons.system.inference import inference_config
from tests.inference.test_service import CORPUS, cosines

# Lengths from 1 token to past max_length, so batches are padded (and one is truncated).
MIXED = ["x", *CORPUS[:6], "a much longer text about rivers and cities " * 40]


@pytest.fixture(scope="module")
def torch_minilm() -> Encoder:
    return load_encoder(InferenceConfig(backend="torch"))


def test_the_cpu_default_is_onnx_and_gives_torchs_vectors(
    minilm: Encoder, torch_minilm: Encoder
) -> None:
    assert (minilm.backend, torch_minilm.backend) == ("onnx", "torch")
    model = getattr(torch_minilm, "model")  # noqa: B009 (SentenceTransformerEncoder's)
    raw = model.encode(MIXED, batch_size=4)  # sentence-transformers' own path
    for batch in (MIXED, MIXED[:1], MIXED[-2:], ["same words", "same words"]):
        served = minilm.encode(batch)
        assert served.shape == (len(batch), 384) and served.dtype == np.float32
        assert cosines(served, torch_minilm.encode(batch)).min() > 0.99999
    assert cosines(minilm.encode(MIXED), raw).min() > 0.99999
    assert minilm.token_counts(MIXED) == torch_minilm.token_counts(MIXED)


def test_the_export_is_written_once_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, minilm: Encoder
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = load_encoder(InferenceConfig())
    (exported,) = (tmp_path / "neurons" / "onnx").glob("*.onnx")
    assert exported.name.startswith(minilm.digest.removeprefix("sha256:")[:32])
    written = exported.stat().st_mtime_ns
    second = load_encoder(InferenceConfig())
    assert exported.stat().st_mtime_ns == written
    assert not list(exported.parent.glob(".*.tmp"))  # no half-written file left behind
    assert cosines(first.encode(CORPUS), second.encode(CORPUS)).min() > 0.99999
    assert cosines(second.encode(CORPUS), minilm.encode(CORPUS)).min() > 0.99999
    exported.write_bytes(exported.read_bytes()[:1000])  # damaged: exported again, not fatal
    third = load_encoder(InferenceConfig())
    assert third.backend == "onnx" and exported.stat().st_size > 1000
    assert cosines(third.encode(CORPUS), minilm.encode(CORPUS)).min() > 0.99999


def test_onnx_refuses_int8_by_name() -> None:
    with pytest.raises(ConfigError, match="^backend: onnx cannot serve this model: .*int8"):
        load_encoder(InferenceConfig(backend="onnx", quantization="int8"))
    assert load_encoder(InferenceConfig(quantization="int8")).backend == "torch"  # auto


def test_a_failed_export_is_torch_under_auto_and_an_error_under_onnx(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    with caplog.at_level(logging.WARNING, logger="neurons.inference.model"):
        fallback = load_encoder(InferenceConfig())
    assert fallback.backend == "torch"
    assert "ONNX export failed" in caplog.text
    with pytest.raises(ModelLoadError, match="^backend onnx: cannot export the model"):
        load_encoder(InferenceConfig(backend="onnx"))


def test_the_setting_reaches_the_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEURONS_INFERENCE_BACKEND", "torch")
    assert inference_config(Settings()).backend == "torch"
    with pytest.raises(ConfigError, match="^backend:"):
        InferenceConfig.from_dict({"backend": "tensorrt"})
