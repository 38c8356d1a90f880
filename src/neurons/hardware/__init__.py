"""Hardware inventory, GGUF model profiles and the memory estimator."""

from __future__ import annotations

from neurons.hardware.gguf import ModelProfile, read_model_profile
from neurons.hardware.inventory import GpuStats, HardwareInventory, HostStats
from neurons.hardware.memory import EstimateOptions, MemoryEstimate, estimate_memory

__all__ = [
    "EstimateOptions",
    "GpuStats",
    "HardwareInventory",
    "HostStats",
    "MemoryEstimate",
    "ModelProfile",
    "estimate_memory",
    "read_model_profile",
]
