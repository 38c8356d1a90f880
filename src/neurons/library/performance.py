"""Performance figures for library models: measured where we have measured them, otherwise
estimated by the formulas below, and always labelled with their source.

**Quality** (``performance_score``, 0–1):

* ``measured``: the accuracy of the model on :mod:`neurons.library.evaluation`'s built-in
  set, run on a node (``neurons models evaluate``); the latest run counts.
* ``estimate:size-v1`` otherwise: ``0.30 + 0.19 × log10(parameters / 1.35e8)`` plus 0.02 per
  year of release after 2023 (at most 0.06), clamped to [0.05, 0.98]. Larger models score
  higher on public leaderboards roughly in proportion to log-parameters, and at a given size
  newer releases beat older ones (Llama 3 8B vs Llama 2 7B); the constants only place the
  smallest model we run (135M) at 0.30 and a 405B model near 0.96. It is a prior, not a
  benchmark, and says so.

**Speed** (decode tokens/s): a roofline. Each token reads every weight once (memory bound)
and does two flops per parameter (compute bound); the slower of the two wins::

    t_mem     = gpu_bytes / (0.7 × gpu_bandwidth) + cpu_bytes / (0.5 × ram_bandwidth)
    t_compute = 2 × parameters × cpu_share / (cores × 12 GFLOP/s)
    tokens/s  = 1 / max(t_mem, t_compute)

The efficiencies (0.7 of peak GPU bandwidth, 0.5 of measured copy bandwidth) are typical
llama.cpp figures; 12 GFLOP/s per core for quantised dot products is calibrated on SmolLM2
135M here (roofline 89 tokens/s, measured 82). Without a bandwidth figure 20 GB/s (dual-channel
DDR4) is assumed and said. A measured tokens/s from an evaluation replaces the estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from neurons.hardware.inventory import HardwareInventory
from neurons.hardware.memory import MemoryEstimate
from neurons.library.catalog import CatalogModel

__all__ = [
    "Measurement",
    "PerformanceFigure",
    "estimate_quality",
    "estimate_tokens_per_second",
    "quality",
]

DEFAULT_RAM_BANDWIDTH = 20_000_000_000
RAM_EFFICIENCY = 0.5
GPU_EFFICIENCY = 0.7
FLOPS_PER_CORE = 12e9
SIZE_FORMULA = "estimate:size-v1"


@dataclass(frozen=True)
class Measurement:
    """The latest evaluation of a model on a node."""

    model: str
    node: str
    score: float | None
    tokens_per_second: float | None
    items: int
    measured_at: str


@dataclass(frozen=True)
class PerformanceFigure:
    value: float
    source: str  # "measured" (with the node) or "estimate:..." naming the formula


def estimate_quality(model: CatalogModel) -> float:
    base = 0.30 + 0.19 * math.log10(model.parameters / 1.35e8)
    year = int(model.released[:4]) if model.released and model.released[:4].isdigit() else 2023
    recency = min(max(year - 2023, 0) * 0.02, 0.06)
    return round(min(max(base + recency, 0.05), 0.98), 3)


def quality(model: CatalogModel, measured: Measurement | None) -> PerformanceFigure:
    if measured is not None and measured.score is not None:
        return PerformanceFigure(round(measured.score, 3), f"measured on {measured.node}")
    return PerformanceFigure(estimate_quality(model), SIZE_FORMULA)


def estimate_tokens_per_second(
    model: CatalogModel, estimate: MemoryEstimate, inventory: HardwareInventory
) -> tuple[float, list[str]]:
    """Roofline decode speed for ``model`` placed as ``estimate`` says; notes on assumptions."""
    notes: list[str] = []
    ram_bandwidth = inventory.host.memory.bandwidth_bytes_per_s
    if ram_bandwidth is None:
        ram_bandwidth = DEFAULT_RAM_BANDWIDTH
        notes.append("RAM bandwidth unknown: 20 GB/s assumed")
    weights = estimate.weights_bytes
    gpu_share = estimate.gpu_layers / estimate.layers if estimate.layers else 0.0
    gpu_bytes = weights * gpu_share
    cpu_bytes = weights - gpu_bytes
    t_mem = cpu_bytes / (RAM_EFFICIENCY * ram_bandwidth)
    if gpu_bytes:
        bandwidths = [g.memory_bandwidth_bytes_per_s for g in inventory.gpus]
        known = [b for b in bandwidths if b]
        if known:
            gpu_bandwidth = float(sum(known) / len(known))
        else:
            gpu_bandwidth = 10 * float(ram_bandwidth)
            notes.append("GPU bandwidth unknown: 10x RAM bandwidth assumed")
        t_mem += gpu_bytes / (GPU_EFFICIENCY * gpu_bandwidth)
    cores = inventory.host.cpu.physical_cores
    t_compute = 2 * model.parameters * (1 - gpu_share) / (cores * FLOPS_PER_CORE)
    slowest = max(t_mem, t_compute, 1e-6)
    return round(1 / slowest, 1), notes
