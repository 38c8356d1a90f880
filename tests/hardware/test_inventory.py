"""Host inventory: measured live, read from the seed's JSON files, and NVML faked.

This machine has no NVIDIA GPU, so the NVML path runs against a stand-in ``pynvml`` module
injected into ``sys.modules`` (the only fake here, and said so).
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from neurons.errors import ConfigError
from neurons.hardware.inventory import (
    HardwareInventory,
    load_gpu_stats,
    load_host_stats,
    measure_gpus,
    measure_host,
)

HOST = {
    "cpu": {"model": "Test CPU", "physical_cores": 16, "logical_cpus": 32, "flags": ["avx2"]},
    "memory": {"total_bytes": 64 << 30, "available_bytes": 48 << 30},
    "disk": {"path": "/data", "total_bytes": 1 << 40, "free_bytes": 1 << 39},
    "os": "Linux",
    "arch": "x86_64",
    "hostname": "box",
}
GPU = {
    "index": 0,
    "name": "RTX 4090",
    "memory_total_bytes": 24 << 30,
    "memory_free_bytes": 23 << 30,
}


def test_measure_host_is_plausible(tmp_path: Path) -> None:
    host = measure_host(tmp_path / "not" / "yet")
    assert host.cpu.physical_cores >= 1 and host.cpu.logical_cpus >= host.cpu.physical_cores
    assert host.memory.total_bytes > 0
    assert 0 < (host.memory.available_bytes or 0) <= host.memory.total_bytes
    assert host.disk.path == str(tmp_path)  # the nearest existing parent
    assert host.disk.total_bytes > 0


def test_no_nvml_means_cpu_only() -> None:
    # The real pynvml finds no driver on this machine: an empty list, no exception.
    assert measure_gpus() == []


def test_stats_files_round_trip(tmp_path: Path) -> None:
    host_file, gpu_file = tmp_path / "host-stats.json", tmp_path / "gpu-stats.json"
    host_file.write_text(json.dumps(HOST))
    gpu_file.write_text(json.dumps({"gpus": [GPU]}))
    inventory = HardwareInventory.collect(host_file, gpu_file)
    assert inventory.host == load_host_stats(host_file)
    assert inventory.host.cpu.physical_cores == 16
    assert inventory.gpu_memory_bytes == 23 << 30
    assert inventory.source == {"host": str(host_file), "gpus": str(gpu_file)}
    again = HardwareInventory.model_validate_json(inventory.to_json())
    assert again == inventory


def test_minimal_files_and_bare_gpu_list(tmp_path: Path) -> None:
    host_file, gpu_file = tmp_path / "h.json", tmp_path / "g.json"
    host_file.write_text(json.dumps({"memory": {"total_bytes": 8 << 30}}))
    gpu_file.write_text(json.dumps([{"memory_total_bytes": 8 << 30}]))
    host = load_host_stats(host_file)
    assert host.memory.usable_bytes == 8 << 30 and host.cpu.model == "unknown"
    assert load_gpu_stats(gpu_file)[0].usable_bytes == 8 << 30


def test_missing_files_are_measured(tmp_path: Path) -> None:
    inventory = HardwareInventory.collect(tmp_path / "absent.json", tmp_path / "absent2.json")
    assert inventory.source["host"] == "measured"
    assert inventory.host.memory.total_bytes > 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "not valid JSON"),
        (json.dumps({"cpu": {}}), "memory: Field required"),
        (json.dumps({"memory": {"total_bytes": -1}}), "memory.total_bytes"),
        (json.dumps({"memory": {"total_bytes": 1}, "ram": 3}), "ram: Extra inputs"),
    ],
    ids=["bad-json", "no-memory", "negative", "typo"],
)
def test_bad_host_files_are_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "host-stats.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_host_stats(path)


def test_bad_gpu_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "gpu-stats.json"
    path.write_text(json.dumps({"gpus": [{"name": "x"}]}))
    with pytest.raises(ConfigError, match="memory_total_bytes"):
        load_gpu_stats(path)


class _FakeNVMLError(Exception):
    pass


def _fake_pynvml(fail_init: bool = False) -> types.ModuleType:
    module = types.ModuleType("pynvml")
    memory = types.SimpleNamespace(total=80 << 30, free=79 << 30)
    calls: list[str] = []

    def init() -> None:
        if fail_init:
            raise _FakeNVMLError("driver not loaded")
        calls.append("init")

    functions: dict[str, Any] = {
        "NVMLError": _FakeNVMLError,
        "nvmlInit": init,
        "nvmlShutdown": lambda: calls.append("shutdown"),
        "nvmlSystemGetDriverVersion": lambda: b"550.54",
        "nvmlDeviceGetCount": lambda: 2,
        "nvmlDeviceGetHandleByIndex": lambda index: index,
        "nvmlDeviceGetMemoryInfo": lambda handle: memory,
        "nvmlDeviceGetCudaComputeCapability": lambda handle: (9, 0),
        "nvmlDeviceGetName": lambda handle: f"NVIDIA H100 #{handle}",
        "calls": calls,
    }
    for name, value in functions.items():
        setattr(module, name, value)
    return module


def test_nvml_gpus_are_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    gpus = measure_gpus()
    assert [g.name for g in gpus] == ["NVIDIA H100 #0", "NVIDIA H100 #1"]
    assert gpus[1].index == 1 and gpus[0].memory_free_bytes == 79 << 30
    assert gpus[0].compute_capability == "9.0" and gpus[0].driver_version == "550.54"
    assert fake.calls == ["init", "shutdown"]  # type: ignore[attr-defined]


def test_nvml_without_driver_is_cpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(fail_init=True))
    assert measure_gpus() == []
