"""Hardware tuning against stats-file hosts (GPUs described in files: this machine has none)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from neurons.hardware.gguf import ModelProfile, read_model_profile
from neurons.hardware.inventory import (
    CpuStats,
    GpuStats,
    HardwareInventory,
    HostStats,
    MemoryStats,
)
from neurons.hardware.locate import locate_gguf
from neurons.hardware.memory import EstimateOptions, estimate_memory
from neurons.modelfile.schema import PARAMETERS
from neurons.modelfile.tuning import determine_all, tune_for_hardware

GiB = 1 << 30


def host(ram_gib: float, cores: int = 8, gpus: list[GpuStats] | None = None) -> HardwareInventory:
    stats = HostStats(
        cpu=CpuStats(physical_cores=cores, logical_cpus=cores * 2),
        memory=MemoryStats(total_bytes=int(ram_gib * GiB), available_bytes=int(ram_gib * GiB)),
    )
    return HardwareInventory(host=stats, gpus=gpus or [])


def gpu(gib: float) -> GpuStats:
    return GpuStats(name="Fake GPU", memory_total_bytes=int(gib * GiB))


@pytest.fixture(scope="module")
def gemma() -> ModelProfile:
    path = locate_gguf("gemma3:270m", Path("/nonexistent"), Path("/tmp/neurons-test-cache"))
    return read_model_profile(path)


def test_big_host_gets_the_training_context(gemma: ModelProfile) -> None:
    tuned = tune_for_hardware(host(64), gemma)
    assert tuned["num_ctx"].value == 32768
    assert "training context" in tuned["num_ctx"].reason
    assert tuned["num_thread"].value == 8 and "physical cores" in tuned["num_thread"].reason
    assert tuned["num_gpu"].value == 0 and "no GPU" in tuned["num_gpu"].reason
    assert tuned["num_batch"].value == 512


def test_small_host_gets_the_largest_context_that_fits(gemma: ModelProfile) -> None:
    inventory = host(1.0)
    tuned = tune_for_hardware(inventory, gemma)
    num_ctx = tuned["num_ctx"].value
    assert 512 <= num_ctx < 32768

    def need(ctx: int) -> int:
        return estimate_memory(gemma, EstimateOptions(num_ctx=ctx, num_gpu=-1)).total_bytes

    assert need(num_ctx) <= 0.8 * GiB < need(num_ctx * 2)
    assert "does not fit" in tuned["num_ctx"].reason


def test_hopeless_host_is_told_so(gemma: ModelProfile) -> None:
    tuned = tune_for_hardware(host(0.2), gemma)
    assert tuned["num_ctx"].value == 512
    assert "expect swapping" in tuned["num_ctx"].reason


def test_gpu_host_offloads_everything_and_widens_the_batch(gemma: ModelProfile) -> None:
    tuned = tune_for_hardware(host(16, gpus=[gpu(24)]), gemma)
    assert tuned["num_gpu"].value == gemma.block_count + 1
    assert "all 19 layers" in tuned["num_gpu"].reason
    assert tuned["num_batch"].value == 1024
    assert "GPU memory" in tuned["num_ctx"].reason


def test_small_gpu_gets_a_partial_offload(gemma: ModelProfile) -> None:
    big = replace(gemma, layer_bytes=tuple(200 << 20 for _ in gemma.layer_bytes))
    tuned = tune_for_hardware(host(64, gpus=[gpu(2)]), big)
    assert 0 < tuned["num_gpu"].value < big.block_count + 1
    assert "layers fit in VRAM" in tuned["num_gpu"].reason
    assert tuned["num_batch"].value == 512


def test_unknown_model_falls_back_to_ollamas_behaviour() -> None:
    tuned = tune_for_hardware(host(8), None, model_label="llama3")
    assert tuned["num_ctx"].value == 4096
    assert "llama3 is not available locally" in tuned["num_ctx"].reason
    assert tune_for_hardware(host(8, gpus=[gpu(8)]), None)["num_gpu"].value == -1


def test_determine_all_covers_every_parameter(gemma: ModelProfile) -> None:
    tuned = tune_for_hardware(host(64), gemma)
    everything = determine_all({"temperature": 0.7, "num_ctx": 99}, tuned, has_gpu=False)
    assert list(everything) == list(PARAMETERS)
    assert everything["temperature"].value == 0.7
    assert everything["temperature"].reason == "set in the Modelfile"
    assert everything["num_ctx"].value == 32768  # hardware wins for tuned settings
    assert everything["top_k"].value == 40 and "Ollama's default" in everything["top_k"].reason
    assert everything["draft_num_predict"].value == 0
    assert all(choice.reason and "\n" not in choice.reason for choice in everything.values())
