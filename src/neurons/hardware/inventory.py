"""The hardware of one host: CPU, memory, disk and GPUs, measured live or read from JSON files.

The seed's ``OllamaModelfileManager`` takes ``host-stats.json`` and ``gpu-stats.json``; their
schema is the JSON form of :class:`HostStats` and :class:`GpuInventory` below (sizes in bytes,
unknown keys refused so a typo is not silently ignored)::

    host-stats.json
    {"cpu": {"model": "AMD Ryzen 9 7950X", "physical_cores": 16, "logical_cpus": 32,
             "flags": ["avx2", "avx512f"]},
     "memory": {"total_bytes": 68719476736, "available_bytes": 51539607552,
                "bandwidth_bytes_per_s": 60000000000},
     "disk": {"path": "/home/me/.neurons", "total_bytes": 1000204886016,
              "free_bytes": 400000000000},
     "os": "Linux", "arch": "x86_64", "hostname": "box"}

    gpu-stats.json
    {"gpus": [{"index": 0, "name": "NVIDIA GeForce RTX 4090", "vendor": "nvidia",
               "memory_total_bytes": 25757220864, "memory_free_bytes": 24000000000,
               "compute_capability": "8.9", "driver_version": "550.54.14",
               "memory_bandwidth_bytes_per_s": 1008000000000}]}

Only ``memory.total_bytes`` is required in a host file (the rest defaults to "unknown"); a GPU
file may also be a bare list of GPU objects. Bandwidths feed the tokens/s estimate; without
them a documented default is assumed. GPUs are measured with NVML (nvidia-ml-py);
without an NVIDIA driver the inventory is simply CPU-only.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import psutil
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from neurons.errors import ConfigError

__all__ = [
    "CpuStats",
    "DiskStats",
    "GpuInventory",
    "GpuStats",
    "HardwareInventory",
    "HostStats",
    "MemoryStats",
    "load_gpu_stats",
    "load_host_stats",
    "measure_gpus",
    "measure_host",
    "measure_memory_bandwidth",
]

# CPU features that decide llama.cpp's kernels (and which our AMX workaround looks at).
_INTERESTING_FLAGS = ("avx", "avx2", "avx512f", "avx512_bf16", "amx_tile", "f16c", "fma", "neon")


class _Stats(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CpuStats(_Stats):
    model: str = "unknown"
    physical_cores: int = Field(default=1, ge=1)
    logical_cpus: int = Field(default=1, ge=1)
    flags: list[str] = Field(default_factory=list)


class MemoryStats(_Stats):
    total_bytes: int = Field(ge=0)
    available_bytes: int | None = Field(default=None, ge=0)
    # Sustained copy bandwidth (bytes/s); decode speed of a model is bounded by it.
    bandwidth_bytes_per_s: int | None = Field(default=None, gt=0)

    @property
    def usable_bytes(self) -> int:
        """Available memory when known, else total (a stats file may omit it)."""
        return self.available_bytes if self.available_bytes is not None else self.total_bytes


class DiskStats(_Stats):
    path: str = ""
    total_bytes: int = Field(default=0, ge=0)
    free_bytes: int = Field(default=0, ge=0)


class HostStats(_Stats):
    cpu: CpuStats = Field(default_factory=CpuStats)
    memory: MemoryStats
    disk: DiskStats = Field(default_factory=DiskStats)
    os: str = "unknown"
    arch: str = "unknown"
    hostname: str = "unknown"


class GpuStats(_Stats):
    index: int = Field(default=0, ge=0)
    name: str = "unknown"
    vendor: str = "nvidia"
    memory_total_bytes: int = Field(ge=0)
    memory_free_bytes: int | None = Field(default=None, ge=0)
    compute_capability: str | None = None
    driver_version: str | None = None
    memory_bandwidth_bytes_per_s: int | None = Field(default=None, gt=0)

    @property
    def usable_bytes(self) -> int:
        free = self.memory_free_bytes
        return free if free is not None else self.memory_total_bytes


class GpuInventory(_Stats):
    gpus: list[GpuStats] = Field(default_factory=list)


class HardwareInventory(_Stats):
    """Everything the estimator and the tuner need to know about one host."""

    host: HostStats
    gpus: list[GpuStats] = Field(default_factory=list)
    source: dict[str, str] = Field(default_factory=dict)

    @property
    def gpu_memory_bytes(self) -> int:
        return sum(gpu.usable_bytes for gpu in self.gpus)

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def collect(
        cls,
        host_stats_path: str | Path | None = None,
        gpu_stats_path: str | Path | None = None,
        *,
        disk_path: str | Path | None = None,
        bandwidth: bool = False,
    ) -> HardwareInventory:
        """Read the stats files that exist; measure whatever is missing (with ``bandwidth``,
        the memory bandwidth too)."""
        source: dict[str, str] = {}
        if host_stats_path is not None and Path(host_stats_path).is_file():
            host = load_host_stats(host_stats_path)
            source["host"] = str(host_stats_path)
        else:
            host = measure_host(disk_path, bandwidth=bandwidth)
            source["host"] = "measured"
        if gpu_stats_path is not None and Path(gpu_stats_path).is_file():
            gpus = load_gpu_stats(gpu_stats_path)
            source["gpus"] = str(gpu_stats_path)
        else:
            gpus = measure_gpus()
            source["gpus"] = "measured (NVML)" if gpus else "measured (no NVIDIA GPU)"
        return cls(host=host, gpus=gpus, source=source)


def _read_json(path: str | Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from exc


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
    )


def load_host_stats(path: str | Path) -> HostStats:
    try:
        return HostStats.model_validate(_read_json(path))
    except ValidationError as exc:
        raise ConfigError(f"invalid host stats in {path}: {_problems(exc)}") from exc


def load_gpu_stats(path: str | Path) -> list[GpuStats]:
    data = _read_json(path)
    if isinstance(data, list):
        data = {"gpus": data}
    try:
        return GpuInventory.model_validate(data).gpus
    except ValidationError as exc:
        raise ConfigError(f"invalid GPU stats in {path}: {_problems(exc)}") from exc


def _cpu_model_and_flags() -> tuple[str, list[str]]:
    model: str = platform.processor() or "unknown"
    flags: list[str] = []
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("unknown", "x86_64", ""):
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    present = set(value.split())
                    flags = [flag for flag in _INTERESTING_FLAGS if flag in present]
    except OSError:
        pass
    return model or "unknown", flags


_BANDWIDTH_BYTES = 256 << 20  # larger than any L3 cache, so the copy goes to RAM


@lru_cache(maxsize=1)
def measure_memory_bandwidth() -> int:
    """Best of five 256 MiB copies (read + write bytes per second), measured once."""
    import numpy as np

    source = np.ones(_BANDWIDTH_BYTES, dtype=np.uint8)
    target = np.empty_like(source)
    np.copyto(target, source)  # fault every page in before timing
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        np.copyto(target, source)
        best = max(best, 2 * _BANDWIDTH_BYTES / max(time.perf_counter() - start, 1e-9))
    return int(best)


def measure_host(disk_path: str | Path | None = None, *, bandwidth: bool = False) -> HostStats:
    """Measure this host with psutil (and /proc/cpuinfo for the CPU model and flags);
    ``bandwidth`` adds a memory-bandwidth measurement (about half a second)."""
    model, flags = _cpu_model_and_flags()
    logical = psutil.cpu_count(logical=True) or os.cpu_count() or 1
    physical = psutil.cpu_count(logical=False) or logical
    memory = psutil.virtual_memory()
    disk_at = Path(disk_path) if disk_path is not None else Path.home()
    while not disk_at.exists() and disk_at != disk_at.parent:
        disk_at = disk_at.parent
    try:
        usage = psutil.disk_usage(str(disk_at))
        disk = DiskStats(path=str(disk_at), total_bytes=usage.total, free_bytes=usage.free)
    except OSError:
        disk = DiskStats(path=str(disk_at))
    return HostStats(
        cpu=CpuStats(model=model, physical_cores=physical, logical_cpus=logical, flags=flags),
        memory=MemoryStats(
            total_bytes=memory.total,
            available_bytes=memory.available,
            bandwidth_bytes_per_s=measure_memory_bandwidth() if bandwidth else None,
        ),
        disk=disk,
        os=platform.system() or "unknown",
        arch=platform.machine() or "unknown",
        hostname=socket.gethostname() or "unknown",
    )


def measure_gpus() -> list[GpuStats]:
    """NVIDIA GPUs through NVML; an empty list when the library or the driver is missing."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return []
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            try:
                major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
                capability: str | None = f"{major}.{minor}"
            except pynvml.NVMLError:
                capability = None
            try:
                # Peak bandwidth: bus width (bits) / 8 × memory clock × 2 (double data rate).
                bus = int(pynvml.nvmlDeviceGetMemoryBusWidth(handle))
                clock = int(pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_MEM))
                bandwidth: int | None = bus // 8 * clock * 1_000_000 * 2 or None
            except (pynvml.NVMLError, AttributeError):
                bandwidth = None
            gpus.append(
                GpuStats(
                    index=index,
                    name=_text(pynvml.nvmlDeviceGetName(handle)),
                    vendor="nvidia",
                    memory_total_bytes=int(memory.total),
                    memory_free_bytes=int(memory.free),
                    compute_capability=capability,
                    driver_version=driver,
                    memory_bandwidth_bytes_per_s=bandwidth,
                )
            )
        return gpus
    except pynvml.NVMLError:
        return []
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
