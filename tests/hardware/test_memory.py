"""The memory estimator on synthetic profiles (numbers worked out by hand) and real models.

GPUs are faked (GpuStats objects): this machine has none. Agreement with real llama.cpp
allocations is measured by benchmarks/memory_estimate.py, not asserted here.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from neurons.errors import InvalidOptionError
from neurons.hardware.gguf import ModelProfile, read_model_profile
from neurons.hardware.inventory import GpuStats
from neurons.hardware.memory import (
    GPU_MINIMUM_BYTES,
    EstimateOptions,
    estimate_memory,
)

MiB = 1 << 20
GiB = 1 << 30


def llama3_8b() -> ModelProfile:
    """The shape of Llama 3.1 8B (Q4_K_M sizes rounded)."""
    return ModelProfile(
        path="llama3.gguf",
        file_size=4_920 * MiB,
        architecture="llama",
        parameter_count=8_030_000_000,
        quantization="Q4_K_M",
        block_count=32,
        head_count=32,
        head_count_kv=8,
        embedding_length=4096,
        feed_forward_length=14336,
        key_length=128,
        value_length=128,
        context_length=131072,
        vocab_size=128256,
        sliding_window=0,
        swa_layers=(),
        chat_template=None,
        tensor_bytes=4_900 * MiB,
        layer_bytes=tuple([140 * MiB] * 32),
        output_bytes=4_900 * MiB - 32 * 140 * MiB,
    )


def test_kv_cache_matches_ollamas_worked_example() -> None:
    # ollama-api.md §3.A: 4096 × 256 × 8 × 2 bytes = 16 MiB per layer, 512 MiB in all.
    estimate = estimate_memory(llama3_8b(), EstimateOptions(num_ctx=4096, num_gpu=0))
    assert estimate.kv_cache_bytes == 512 * MiB


@pytest.mark.parametrize(
    ("options", "kv_bytes"),
    [
        (EstimateOptions(num_ctx=4096, num_parallel=2), 1024 * MiB),
        (EstimateOptions(num_ctx=4000), 512 * MiB),  # padded to 4096 cells
        (EstimateOptions(num_ctx=4096, kv_cache_type="q8_0", flash_attention=True), 272 * MiB),
        (EstimateOptions(num_ctx=4096, kv_cache_type="q4_0", flash_attention=True), 144 * MiB),
        (EstimateOptions(num_ctx=4096, kv_cache_type="f32"), 1024 * MiB),
    ],
    ids=["parallel-2", "padding", "q8_0", "q4_0", "f32"],
)
def test_kv_cache_scaling(options: EstimateOptions, kv_bytes: int) -> None:
    assert estimate_memory(llama3_8b(), replace(options, num_gpu=0)).kv_cache_bytes == kv_bytes


def test_quantised_cache_without_flash_attention_falls_back_to_f16() -> None:
    estimate = estimate_memory(llama3_8b(), EstimateOptions(kv_cache_type="q8_0", num_gpu=0))
    assert estimate.kv_cache_type == "f16"
    assert estimate.kv_cache_bytes == 512 * MiB
    assert any("flash attention" in note for note in estimate.notes)


def test_sliding_window_layers() -> None:
    profile = replace(
        llama3_8b(),
        sliding_window=1024,
        swa_layers=tuple(i for i in range(32) if (i + 1) % 4),  # 24 SWA, 8 global
    )
    full = estimate_memory(profile, EstimateOptions(num_ctx=32768, num_gpu=0))
    trimmed = estimate_memory(profile, EstimateOptions(num_ctx=32768, num_gpu=0, swa_full=False))
    per_cell_layer = 8 * 256 * 2
    assert full.kv_cache_bytes == 32 * 32768 * per_cell_layer
    # window + batch = 1536 cells for the 24 sliding layers, the full context for 8 global.
    assert trimmed.kv_cache_bytes == (8 * 32768 + 24 * 1536) * per_cell_layer


def test_compute_grows_with_context_without_flash_attention() -> None:
    small = estimate_memory(llama3_8b(), EstimateOptions(num_ctx=2048, num_gpu=0))
    large = estimate_memory(llama3_8b(), EstimateOptions(num_ctx=8192, num_gpu=0))
    flash = estimate_memory(
        llama3_8b(), EstimateOptions(num_ctx=8192, num_gpu=0, flash_attention=True)
    )
    # Scores: 32 heads × n_kv × 512 × 4 bytes, plus their f16 copy and an f32 mask.
    per_cell = 32 * 512 * 4 * 3 // 2 + 512 * 4
    assert large.compute_bytes - small.compute_bytes == (8192 - 2048) * per_cell
    assert flash.compute_bytes < large.compute_bytes / 4
    for estimate in (small, large, flash):
        parts = (
            estimate.weights_bytes
            + estimate.kv_cache_bytes
            + estimate.compute_bytes
            + estimate.overhead_bytes
        )
        assert estimate.total_bytes == parts
        assert estimate.cpu_bytes == estimate.total_bytes and estimate.gpu_bytes == 0
        assert estimate.loaded_bytes == estimate.total_bytes - estimate.compute_bytes


def test_mmap_counts_the_whole_file() -> None:
    mapped = estimate_memory(llama3_8b(), EstimateOptions(num_gpu=0))
    read = estimate_memory(llama3_8b(), EstimateOptions(num_gpu=0, use_mmap=False))
    assert mapped.weights_bytes == 4_920 * MiB
    assert read.weights_bytes == 4_900 * MiB


def fake_gpu(total_gib: float) -> GpuStats:
    size = int(total_gib * GiB)
    return GpuStats(index=0, name="Fake GPU", memory_total_bytes=size, memory_free_bytes=size)


def test_auto_offload_puts_everything_on_a_big_gpu() -> None:
    estimate = estimate_memory(llama3_8b(), EstimateOptions(num_ctx=4096), [fake_gpu(24)])
    assert estimate.gpu_layers == 33
    assert estimate.gpu_bytes > 4_900 * MiB + 512 * MiB + GPU_MINIMUM_BYTES
    assert estimate.cpu_bytes < 200 * MiB  # the header, token embeddings' twin, runtime
    assert estimate.cpu_bytes + estimate.gpu_bytes == estimate.total_bytes


def test_auto_offload_is_partial_on_a_small_gpu() -> None:
    estimate = estimate_memory(llama3_8b(), EstimateOptions(num_ctx=4096), [fake_gpu(4)])
    assert 0 < estimate.gpu_layers < 33
    layer = 140 * MiB + 16 * MiB
    reserved = estimate.compute_reserved_bytes
    assert estimate.gpu_bytes == estimate.gpu_layers * layer + GPU_MINIMUM_BYTES + reserved
    assert estimate.gpu_bytes <= 4 * GiB
    assert any("partial offload" in note for note in estimate.notes)


def test_explicit_num_gpu_and_no_gpu() -> None:
    ten = estimate_memory(llama3_8b(), EstimateOptions(num_ctx=4096, num_gpu=10))
    assert ten.gpu_layers == 10
    assert ten.gpu_bytes == 10 * (140 + 16) * MiB + GPU_MINIMUM_BYTES + ten.compute_reserved_bytes
    assert estimate_memory(llama3_8b(), EstimateOptions(num_gpu=-1)).gpu_layers == 0
    assert estimate_memory(llama3_8b(), EstimateOptions(num_gpu=99)).gpu_layers == 33


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("num_ctx", 0, "num_ctx"),
        ("num_batch", 0, "num_batch"),
        ("num_parallel", 0, "num_parallel"),
        ("num_gpu", -2, "num_gpu"),
        ("kv_cache_type", "q3", "kv cache type"),
    ],
)
def test_bad_options_are_refused(field: str, value: object, message: str) -> None:
    with pytest.raises(InvalidOptionError, match=message):
        EstimateOptions(**{field: value})  # type: ignore[arg-type]


def test_context_beyond_training_is_noted(smollm2_gguf: Path) -> None:
    profile = read_model_profile(smollm2_gguf)
    estimate = estimate_memory(profile, EstimateOptions(num_ctx=16384, num_gpu=0))
    assert any("training context 8192" in note for note in estimate.notes)


def test_real_models_are_in_a_plausible_range(smollm2_gguf: Path, gemma3_gguf: Path) -> None:
    # Loose sanity bounds only; the benchmark measures the real error.
    smol = estimate_memory(read_model_profile(smollm2_gguf), EstimateOptions(num_ctx=2048))
    assert 120 * MiB < smol.loaded_bytes < 250 * MiB
    gemma = estimate_memory(read_model_profile(gemma3_gguf), EstimateOptions(num_ctx=32768))
    assert gemma.kv_cache_bytes == 18 * 32768 * 1 * 512 * 2  # full-size SWA cache
