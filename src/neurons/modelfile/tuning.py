"""Choosing Modelfile PARAMETERs for the hardware a model will run on.

:func:`tune_for_hardware` picks the four runner settings that depend on the host:

* ``num_ctx``: the largest context that fits, with headroom: the full-context memory estimate
  (:mod:`neurons.hardware.memory`) must stay within ``headroom`` (80%, as Ollama's scheduler
  keeps) of the memory it lands in (free VRAM when fully offloaded, else available RAM),
  capped by the model's training context. Candidates are powers of two and the training
  context itself.
* ``num_gpu``: 0 without a GPU; else the number of layers the estimate places on the GPUs.
* ``num_thread``: the physical core count, because llama.cpp decodes more slowly when it
  oversubscribes hyper-threads.
* ``num_batch``: 512 (llama.cpp's default) on a CPU, where a larger batch barely speeds up
  prompt processing but grows the attention buffer in proportion; 1024 when the model is fully
  on a GPU with room to spare, where a wider batch does speed up prompts.

:func:`determine_all` then gives every PARAMETER in the schema an explicit value with a
one-line reason: the tuned value, the Modelfile's own, or Ollama's default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from neurons.hardware.gguf import ModelProfile
from neurons.hardware.inventory import HardwareInventory
from neurons.hardware.memory import (
    HEADROOM,
    EstimateOptions,
    MemoryEstimate,
    estimate_memory,
    memory_budget,
)
from neurons.modelfile.schema import PARAMETERS

__all__ = ["DEFAULT_HEADROOM", "ParameterChoice", "determine_all", "tune_for_hardware"]

DEFAULT_HEADROOM = HEADROOM
MIN_CTX = 512
# Beyond this the KV cache of any real model dwarfs a desktop; stop searching there.
MAX_CTX = 1 << 20
GPU_BATCH = 1024
OLLAMA_DEFAULT_CTX = 4096  # the schema's num_ctx default: Ollama's tier below 24 GiB of VRAM


@dataclass(frozen=True)
class ParameterChoice:
    name: str
    value: Any
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "reason": self.reason}


def _gib(value: int) -> str:
    return f"{value / 2**30:.2f} GiB"


def _candidates(train_ctx: int) -> list[int]:
    top = min(train_ctx, MAX_CTX) if train_ctx > 0 else MAX_CTX
    sizes = {top}
    size = MIN_CTX
    while size < top:
        sizes.add(size)
        size *= 2
    return sorted(sizes, reverse=True)


def _fits(estimate: MemoryEstimate, inventory: HardwareInventory, headroom: float) -> bool:
    needed, allowed, _ = memory_budget(estimate, inventory)
    return needed <= allowed * headroom


def tune_for_hardware(
    inventory: HardwareInventory,
    profile: ModelProfile | None,
    *,
    num_parallel: int = 1,
    headroom: float = DEFAULT_HEADROOM,
    model_label: str = "the model",
) -> dict[str, ParameterChoice]:
    """Choose num_ctx, num_gpu, num_thread and num_batch for ``profile`` on ``inventory``.

    Without a profile (the model is not available locally, so its size is unknown) num_ctx
    and num_gpu fall back to Ollama's behaviour, and the reasons say so.
    """
    cores = inventory.host.cpu.physical_cores
    choices = {
        "num_thread": ParameterChoice(
            "num_thread", cores, f"{cores} physical cores; hyper-threads slow llama.cpp down"
        )
    }
    has_gpu = bool(inventory.gpus)
    if profile is None:
        choices["num_ctx"] = ParameterChoice(
            "num_ctx",
            OLLAMA_DEFAULT_CTX,
            f"{model_label} is not available locally, so its memory need is unknown; "
            "Ollama's default below 24 GiB of VRAM",
        )
        choices["num_gpu"] = ParameterChoice(
            "num_gpu",
            -1 if has_gpu else 0,
            "GPU found: let the runtime offload as many layers as fit"
            if has_gpu
            else "no GPU found: CPU only",
        )
        choices["num_batch"] = ParameterChoice("num_batch", 512, "llama.cpp's default batch")
        return choices

    chosen: MemoryEstimate | None = None
    for num_ctx in _candidates(profile.context_length):
        options = EstimateOptions(num_ctx=num_ctx, num_parallel=num_parallel, num_gpu=-1)
        estimate = estimate_memory(profile, options, inventory.gpus)
        if _fits(estimate, inventory, headroom):
            chosen = estimate
            break
    if chosen is None:
        smallest = EstimateOptions(num_ctx=MIN_CTX, num_parallel=num_parallel, num_gpu=-1)
        chosen = estimate_memory(profile, smallest, inventory.gpus)
        needed, allowed, where = memory_budget(chosen, inventory)
        ctx_reason = (
            f"even {MIN_CTX} tokens need {_gib(needed)}, more than {headroom:.0%} of "
            f"{_gib(allowed)} {where}: expect swapping or a refused load"
        )
    else:
        needed, allowed, where = memory_budget(chosen, inventory)
        capped = chosen.num_ctx == profile.context_length
        ctx_reason = (
            f"needs {_gib(needed)} of {_gib(allowed)} {where} (headroom {headroom:.0%})"
            + ("; the model's training context" if capped else "; the next size up does not fit")
        )
    choices["num_ctx"] = ParameterChoice("num_ctx", chosen.num_ctx, ctx_reason)
    if not has_gpu:
        gpu_reason = "no GPU found: CPU only"
    elif chosen.gpu_layers >= chosen.layers:
        gpu_reason = f"all {chosen.layers} layers fit in {_gib(inventory.gpu_memory_bytes)} VRAM"
    else:
        gpu_reason = f"{chosen.gpu_layers} of {chosen.layers} layers fit in VRAM"
    choices["num_gpu"] = ParameterChoice("num_gpu", chosen.gpu_layers, gpu_reason)

    batch, batch_reason = 512, "llama.cpp's default; larger batches gain little on a CPU"
    if has_gpu and chosen.gpu_layers >= chosen.layers:
        wide = EstimateOptions(
            num_ctx=chosen.num_ctx,
            num_parallel=num_parallel,
            num_gpu=chosen.gpu_layers,
            num_batch=GPU_BATCH,
        )
        if _fits(estimate_memory(profile, wide, inventory.gpus), inventory, headroom):
            batch, batch_reason = GPU_BATCH, "fully on GPU with room for a wider prompt batch"
        else:
            batch_reason = "fully on GPU, but a wider batch would not fit"
    choices["num_batch"] = ParameterChoice("num_batch", min(batch, chosen.num_ctx), batch_reason)
    return choices


def _default_reason(name: str, has_gpu: bool, has_draft: bool) -> tuple[Any, str]:
    spec = PARAMETERS[name]
    if name == "main_gpu":
        return 0, "the first GPU holds the model when it is not split" if has_gpu else (
            "no GPU: harmless, GPU 0 would be the main one"
        )
    if name == "use_mmap":
        return True, "mapping the file loads fast and shares pages between runners"
    if name == "draft_num_predict":
        return (
            (4, "Ollama's default with a DRAFT model")
            if has_draft
            else (
                0,
                "no DRAFT model in this Modelfile",
            )
        )
    if name == "stop":
        return [], "no stop sequences: the model's own end-of-turn tokens end a reply"
    meaning = spec.description.rstrip(".")
    return spec.default, f"Ollama's default; {meaning[0].lower()}{meaning[1:]}"


def determine_all(
    current: dict[str, Any],
    tuned: dict[str, ParameterChoice],
    *,
    has_gpu: bool,
    has_draft: bool = False,
) -> dict[str, ParameterChoice]:
    """An explicit value and a reason for every PARAMETER in the schema.

    Precedence: a value the Modelfile already sets wins (the author chose it), except for
    the hardware-tuned settings, which :func:`tune_for_hardware` just computed for this host.
    """
    result: dict[str, ParameterChoice] = {}
    for name in PARAMETERS:
        if name in tuned:
            result[name] = tuned[name]
        elif name in current and current[name] not in (None, []):
            result[name] = ParameterChoice(name, current[name], "set in the Modelfile")
        else:
            value, reason = _default_reason(name, has_gpu, has_draft)
            result[name] = ParameterChoice(name, value, reason)
    return result
