"""``neurons hardware``: this host's inventory, and memory estimates for a model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from neurons.config import Settings

__all__ = ["hardware_app"]

hardware_app = typer.Typer(
    help="Show this host's hardware, or estimate a model's memory.",
    invoke_without_command=True,
)

HostStatsOption = Annotated[
    Path | None, typer.Option("--host-stats", help="Read host stats from this JSON file.")
]
GpuStatsOption = Annotated[
    Path | None, typer.Option("--gpu-stats", help="Read GPU stats from this JSON file.")
]


def _gib(value: int | None) -> str:
    return "?" if value is None else f"{value / 2**30:.1f} GiB"


def _mib(value: int) -> str:
    return f"{value / 2**20:,.1f} MiB"


@hardware_app.callback()
def hardware(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    host_stats: HostStatsOption = None,
    gpu_stats: GpuStatsOption = None,
) -> None:
    """Print CPU, memory, disk and GPUs (measured, or read from stats files)."""
    if ctx.invoked_subcommand is not None:
        return
    from neurons.hardware.inventory import HardwareInventory

    settings = Settings()
    inventory = HardwareInventory.collect(host_stats, gpu_stats, disk_path=settings.home)
    if as_json:
        typer.echo(inventory.to_json())
        return
    host = inventory.host
    table = Table(title=f"{host.hostname} ({host.os} {host.arch})", show_header=False)
    table.add_row("CPU", host.cpu.model)
    table.add_row("cores / threads", f"{host.cpu.physical_cores} / {host.cpu.logical_cpus}")
    table.add_row("CPU features", ", ".join(host.cpu.flags) or "-")
    table.add_row(
        "RAM total / available",
        f"{_gib(host.memory.total_bytes)} / {_gib(host.memory.available_bytes)}",
    )
    table.add_row(
        f"disk ({host.disk.path})",
        f"{_gib(host.disk.free_bytes)} free of {_gib(host.disk.total_bytes)}",
    )
    if not inventory.gpus:
        table.add_row("GPUs", "none (CPU only)")
    for gpu in inventory.gpus:
        table.add_row(
            f"GPU {gpu.index}",
            f"{gpu.name}: {_gib(gpu.memory_free_bytes)} free of {_gib(gpu.memory_total_bytes)}",
        )
    Console().print(table)


@hardware_app.command("estimate")
def estimate(
    model: Annotated[str, typer.Argument(help="A GGUF file or a model name.")],
    num_ctx: Annotated[int, typer.Option("--num-ctx", help="Context length.")] = 4096,
    num_gpu: Annotated[
        int, typer.Option("--num-gpu", help="Layers on GPU (-1: as many as fit).")
    ] = -1,
    num_batch: Annotated[int, typer.Option("--num-batch", help="Batch size.")] = 512,
    parallel: Annotated[int, typer.Option("--parallel", help="Parallel sequences.")] = 1,
    kv_cache_type: Annotated[
        str, typer.Option("--kv-cache-type", help="f16, q8_0 or q4_0.")
    ] = "f16",
    flash_attention: Annotated[
        bool, typer.Option("--flash-attention/--no-flash-attention")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    host_stats: HostStatsOption = None,
    gpu_stats: GpuStatsOption = None,
) -> None:
    """Estimate the memory MODEL needs: weights, KV cache, compute buffers, overhead."""
    from neurons.hardware.gguf import read_model_profile
    from neurons.hardware.inventory import HardwareInventory
    from neurons.hardware.locate import locate_gguf
    from neurons.hardware.memory import EstimateOptions, estimate_memory

    settings = Settings()
    path = locate_gguf(model, settings.resolved_models_dir, settings.home / "cache")
    inventory = HardwareInventory.collect(host_stats, gpu_stats, disk_path=settings.home)
    options = EstimateOptions(
        num_ctx=num_ctx,
        num_batch=num_batch,
        num_parallel=parallel,
        num_gpu=num_gpu,
        kv_cache_type=kv_cache_type,
        flash_attention=flash_attention,
    )
    profile = read_model_profile(path)
    result = estimate_memory(profile, options, inventory.gpus)
    available = inventory.host.memory.usable_bytes
    fits = result.cpu_bytes <= available and (
        not result.gpu_layers or result.gpu_bytes <= max(inventory.gpu_memory_bytes, 0)
    )
    if as_json:
        data = result.to_dict()
        data.update(model=model, path=str(path), fits=fits, ram_available_bytes=available)
        data["profile"] = profile.to_dict()
        typer.echo(json.dumps(data, indent=2))
        return
    table = Table(
        title=f"{model} ({profile.architecture}, {profile.parameter_size}, "
        f"{profile.quantization}) at num_ctx {result.num_ctx}"
    )
    table.add_column("part")
    table.add_column("bytes", justify="right")
    for label, value in (
        ("weights", result.weights_bytes),
        ("KV cache", result.kv_cache_bytes),
        ("compute", result.compute_bytes),
        ("overhead", result.overhead_bytes),
        ("total (full context)", result.total_bytes),
        ("loaded (idle)", result.loaded_bytes),
        (f"GPU ({result.gpu_layers}/{result.layers} layers)", result.gpu_bytes),
        ("CPU", result.cpu_bytes),
    ):
        table.add_row(label, _mib(value))
    console = Console()
    console.print(table)
    for note in result.notes:
        console.print(f"note: {note}")
    verdict = "fits" if fits else "does NOT fit"
    console.print(f"{verdict} in {_gib(available)} of available RAM")
