"""Performance figures: the size-v1 quality prior and the roofline decode speed, checked
against the formulas in ``neurons.library.performance``'s docstring with numbers worked out
by hand.

    quality   = clamp(0.30 + 0.19·log10(p / 1.35e8) + min(0.02·(year − 2023), 0.06), 0.05, 0.98)
    t_mem     = gpu_bytes / (0.7 × gpu_bandwidth) + cpu_bytes / (0.5 × ram_bandwidth)
    t_compute = 2 × parameters × cpu_share / (cores × 12 GFLOP/s)
    tokens/s  = 1 / max(t_mem, t_compute)

Memory estimates are built by hand (only weights and the layer split matter here); GPUs are
fake ``GpuStats`` objects, whatever this machine has.
"""

from __future__ import annotations

import pytest

from neurons.hardware.inventory import (
    CpuStats,
    GpuStats,
    HardwareInventory,
    HostStats,
    MemoryStats,
)
from neurons.hardware.memory import MemoryEstimate
from neurons.library.catalog import CatalogModel
from neurons.library.performance import (
    Measurement,
    PerformanceFigure,
    estimate_quality,
    estimate_tokens_per_second,
    quality,
)

GB = 1_000_000_000
RAM_NOTE = "RAM bandwidth unknown: 20 GB/s assumed"
GPU_NOTE = "GPU bandwidth unknown: 10x RAM bandwidth assumed"


def make_model(parameters: int, released: str | None = None) -> CatalogModel:
    return CatalogModel(
        name="m:test",
        family="llama",
        description="test model",
        parameters=parameters,
        parameter_size="?",
        quantization="Q4_K_M",
        file_size_bytes=max(parameters // 2, 1),
        context_length=4096,
        capabilities=("completion",),
        categories=("general",),
        released=released,
    )


# -- quality ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parameters", "released", "expected"),
    [
        # 0.30 + 0.19·log10(1) = 0.30 (the docstring's anchor: 135M at 0.30)
        (135_000_000, None, 0.30),
        (135_000_000, "2023-06", 0.30),
        # 0.30 + 0.19·1 + 0.02·1 = 0.51
        (1_350_000_000, "2024-01", 0.51),
        # 0.30 + 0.19·2 + 0.02·2 = 0.72
        (13_500_000_000, "2025-03", 0.72),
        # 0.30 + 0.19·3 + 0.06 (three years, the cap) = 0.93
        (135_000_000_000, "2026-01", 0.93),
        (135_000_000_000, "2031-01", 0.93),  # recency capped at 0.06
        # before 2023: no recency, never negative: 0.30 + 0.19 = 0.49
        (1_350_000_000, "2020-05", 0.49),
        (1_350_000_000, "unknown", 0.49),  # not a year: 2023 assumed
        # 0.30 + 0.19·log10(1e9 / 1.35e8) = 0.30 + 0.19·0.86967 = 0.46524
        (1_000_000_000, None, 0.465),
        # 0.30 + 0.19·log10(7e9 / 1.35e8) + 0.02 = 0.30 + 0.19·1.71479 + 0.02 = 0.64581
        (7_000_000_000, "2024-07", 0.646),
        # the docstring's other anchor: 405B near 0.96 (0.30 + 0.19·3.47712 = 0.96065)
        (405_000_000_000, None, 0.961),
        # clamped below: 0.30 + 0.19·log10(1e6 / 1.35e8) = 0.30 − 0.40477 < 0.05
        (1_000_000, None, 0.05),
        # clamped above: 0.30 + 0.19·5 + 0.06 = 1.31 > 0.98
        (13_500_000_000_000, "2026-01", 0.98),
    ],
    ids=[
        "135M-anchor",
        "135M-2023",
        "1.35B-2024",
        "13.5B-2025",
        "135B-2026",
        "recency-cap",
        "before-2023",
        "released-not-a-year",
        "1B",
        "7B-2024",
        "405B-anchor",
        "clamp-low",
        "clamp-high",
    ],
)
def test_estimate_quality(parameters: int, released: str | None, expected: float) -> None:
    assert estimate_quality(make_model(parameters, released)) == expected


def measured(score: float | None, tps: float | None = None) -> Measurement:
    return Measurement(
        model="m:test",
        node="node-a",
        score=score,
        tokens_per_second=tps,
        items=16,
        measured_at="2025-01-01T00:00:00.000000+00:00",
    )


@pytest.mark.parametrize(
    ("measurement", "expected"),
    [
        (None, PerformanceFigure(0.51, "estimate:size-v1")),
        (measured(0.8125), PerformanceFigure(0.812, "measured on node-a")),  # rounded to 3
        (measured(0.0), PerformanceFigure(0.0, "measured on node-a")),  # 0 is a measurement
        (measured(1.0, 30.0), PerformanceFigure(1.0, "measured on node-a")),
        # a measurement without a score (speed only) leaves the estimate in place
        (measured(None, 30.0), PerformanceFigure(0.51, "estimate:size-v1")),
    ],
    ids=["estimate", "measured", "measured-zero", "measured-one", "speed-only"],
)
def test_quality_source_labels(
    measurement: Measurement | None, expected: PerformanceFigure
) -> None:
    assert quality(make_model(1_350_000_000, "2024-01"), measurement) == expected


# -- speed ------------------------------------------------------------------------------------


def estimate(weights: int, layers: int = 17, gpu_layers: int = 0) -> MemoryEstimate:
    return MemoryEstimate(
        model="m:test",
        architecture="llama",
        num_ctx=4096,
        num_parallel=1,
        kv_cache_type="f16",
        flash_attention=False,
        weights_bytes=weights,
        kv_cache_bytes=0,
        compute_bytes=0,
        compute_reserved_bytes=0,
        overhead_bytes=0,
        total_bytes=weights,
        loaded_bytes=weights,
        layers=layers,
        gpu_layers=gpu_layers,
        gpu_bytes=0,
        cpu_bytes=weights,
    )


def inventory(
    cores: int, ram_bandwidth: int | None, gpu_bandwidths: tuple[int | None, ...] = ()
) -> HardwareInventory:
    return HardwareInventory(
        host=HostStats(
            cpu=CpuStats(physical_cores=cores, logical_cpus=cores, flags=["avx2"]),
            memory=MemoryStats(total_bytes=64 * GB, bandwidth_bytes_per_s=ram_bandwidth),
        ),
        gpus=[
            GpuStats(index=i, memory_total_bytes=24 * GB, memory_bandwidth_bytes_per_s=bandwidth)
            for i, bandwidth in enumerate(gpu_bandwidths)
        ],
    )


@pytest.mark.parametrize(
    ("parameters", "est", "inv", "expected", "notes"),
    [
        # memory bound: t_mem = 1e9 / (0.5·40e9) = 0.05 s; t_compute = 2e9 / (8·12e9) = 0.0208 s
        (1 * GB, estimate(1 * GB), inventory(8, 40 * GB), 20.0, []),
        # compute bound: t_mem = 1e8 / 2e10 = 0.005 s; t_compute = 2e9 / (1·12e9) = 0.1667 s -> 6
        (1 * GB, estimate(100_000_000), inventory(1, 40 * GB), 6.0, []),
        # 4 cores: t_compute = 2e9 / 48e9 = 0.04167 s vs t_mem = 0.005 s -> 24
        (1 * GB, estimate(100_000_000), inventory(4, 40 * GB), 24.0, []),
        # RAM bandwidth unknown: 20 GB/s -> t_mem = 1e9 / 1e10 = 0.1 s -> 10
        (1 * GB, estimate(1 * GB), inventory(8, None), 10.0, [RAM_NOTE]),
        # full offload, 1 TB/s GPU: t_mem = 7e9 / (0.7·1e12) = 0.01 s, no CPU share -> 100
        (7 * GB, estimate(7 * GB, 33, 33), inventory(8, 40 * GB, (1000 * GB,)), 100.0, []),
        # two GPUs: their mean bandwidth (1e12 + 0.4e12) / 2 = 0.7e12 -> 7e9 / 4.9e11 -> 70
        (
            7 * GB,
            estimate(7 * GB, 33, 33),
            inventory(8, 40 * GB, (1000 * GB, 400 * GB)),
            70.0,
            [],
        ),
        # a GPU of unknown bandwidth is left out of the mean
        (7 * GB, estimate(7 * GB, 33, 33), inventory(8, 40 * GB, (1000 * GB, None)), 100.0, []),
        # GPU bandwidth unknown: 10 × 40 GB/s -> 7e9 / (0.7·4e11) = 0.025 s -> 40
        (7 * GB, estimate(7 * GB, 33, 33), inventory(8, 40 * GB, (None,)), 40.0, [GPU_NOTE]),
        # both unknown: RAM 20 GB/s, GPU 200 GB/s -> 7e9 / 1.4e11 = 0.05 s -> 20
        (
            7 * GB,
            estimate(7 * GB, 33, 33),
            inventory(8, None, (None,)),
            20.0,
            [RAM_NOTE, GPU_NOTE],
        ),
        # half offload: 1e9 / 2e10 + 1e9 / 7e11 = 0.051429 s; t_compute = 1e9 / 96e9 -> 19.4
        (1 * GB, estimate(2 * GB, 10, 5), inventory(8, 40 * GB, (1000 * GB,)), 19.4, []),
        # half offload, compute bound: 2·8e9·0.5 / (1·12e9) = 0.6667 s -> 1.5
        (8 * GB, estimate(2 * GB, 10, 5), inventory(1, 40 * GB, (1000 * GB,)), 1.5, []),
    ],
    ids=[
        "cpu-memory-bound",
        "cpu-compute-bound",
        "cpu-compute-bound-4-cores",
        "ram-bandwidth-unknown",
        "gpu-full-offload",
        "two-gpus-mean",
        "gpu-unknown-bandwidth-ignored",
        "gpu-bandwidth-unknown",
        "both-unknown",
        "partial-offload",
        "partial-offload-compute-bound",
    ],
)
def test_roofline_tokens_per_second(
    parameters: int,
    est: MemoryEstimate,
    inv: HardwareInventory,
    expected: float,
    notes: list[str],
) -> None:
    assert estimate_tokens_per_second(make_model(parameters), est, inv) == (expected, notes)


def test_roofline_without_gpu_layers_ignores_gpus() -> None:
    # The same CPU-only placement on a host with GPUs: no GPU term and no GPU note.
    inv = inventory(8, 40 * GB, (None,))
    assert estimate_tokens_per_second(make_model(GB), estimate(GB), inv) == (20.0, [])
