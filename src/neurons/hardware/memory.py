"""How much memory a GGUF model needs at a given context, and where (GPU layers or CPU).

The estimate follows what llama.cpp (as llama-cpp-python 0.3.36 drives it) really allocates,
measured on this project's offline models with ``benchmarks/memory_estimate.py``:

* **weights**: the tensor bytes from the GGUF header (exactly llama.cpp's "model buffer size").
  With mmap the whole file is mapped and populated, so the header counts too.
* **KV cache**: per layer, ``cells × n_head_kv × (key_length + value_length) × bytes/element``
  with ``cells = num_ctx × num_parallel`` padded to 256. Sliding-window layers keep only
  ``window × parallel + batch`` cells when ``swa_full`` is off (llama-server, i.e. Ollama);
  llama-cpp-python's default context parameters keep a full-size cache for them, and so does
  the embedded neuron. Quantised caches (q8_0, q4_0) need flash attention, as in Ollama.
* **compute**: what the graph touches at a full context. Without flash attention the
  attention scores ``n_head × n_kv × n_ubatch`` (f32) dominate, plus their f16 copy in the CPU
  backend's work buffer and one f32 mask per attention kind (global, sliding); with flash
  attention only an f16 mask per kind is left. Activations add
  ``(2·n_ff + q + k + v + 2·n_embd) × n_ubatch × 4`` bytes (doubled under flash attention).
  llama.cpp *reserves* more (``n_vocab × n_ubatch`` f32 logits for a batch that wants every
  token's logits); on a CPU those pages stay untouched, on a GPU the reservation is real VRAM,
  so it is what the GPU side counts.
* **overhead**: the runtime itself, 18 MiB plus 119 bytes per vocabulary entry (vocabulary
  tables, sampler arrays, graph metadata), calibrated on SmolLM2 (49k vocab) and Gemma 3
  (262k vocab); the logits buffer; and on a GPU, Ollama's fixed 457 MiB per-device minimum
  (CUDA context and cuBLAS workspace).

``total_bytes`` is the peak when the context is full: the figure that decides whether a
model fits. ``loaded_bytes`` is what a freshly loaded model holds before long prompts arrive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from neurons.errors import InvalidOptionError
from neurons.hardware.gguf import ModelProfile
from neurons.hardware.inventory import GpuStats, HardwareInventory

__all__ = [
    "HEADROOM",
    "KV_CACHE_TYPES",
    "EstimateOptions",
    "MemoryEstimate",
    "estimate_memory",
    "memory_budget",
]

MiB = 1 << 20

# Bytes per cached element, from ggml's type sizes (block bytes / block elements).
KV_CACHE_TYPES: dict[str, float] = {
    "f32": 4.0,
    "f16": 2.0,
    "bf16": 2.0,
    "q8_0": 34 / 32,
    "q5_1": 24 / 32,
    "q5_0": 22 / 32,
    "q4_1": 20 / 32,
    "q4_0": 18 / 32,
    "iq4_nl": 18 / 32,
}

RUNTIME_BASE_BYTES = 18 * MiB
RUNTIME_BYTES_PER_VOCAB = 119
GPU_MINIMUM_BYTES = 457 * MiB  # Ollama's ml/device.go MinimumMemory for CUDA/ROCm
KV_PAD = 256  # llama.cpp pads the KV cache size to a multiple of 256 cells
# The share of a memory budget a plan may fill: the rest is for the OS, other processes and
# estimate error. Advice, Modelfile tuning and the neuron's slot count all judge by it.
HEADROOM = 0.8


@dataclass(frozen=True)
class EstimateOptions:
    """The runner settings that change memory use. Defaults are the embedded neuron's."""

    num_ctx: int = 4096
    num_batch: int = 512
    num_parallel: int = 1
    num_gpu: int = -1  # -1: as many layers as fit in the GPUs given; 0: CPU only
    kv_cache_type: str = "f16"
    flash_attention: bool = False
    swa_full: bool = True
    use_mmap: bool = True

    def __post_init__(self) -> None:
        if self.num_ctx < 1:
            raise InvalidOptionError("num_ctx must be at least 1")
        if self.num_batch < 1:
            raise InvalidOptionError("num_batch must be at least 1")
        if self.num_parallel < 1:
            raise InvalidOptionError("num_parallel must be at least 1")
        if self.num_gpu < -1:
            raise InvalidOptionError("num_gpu must be -1 (auto), 0 (CPU) or a layer count")
        if self.kv_cache_type not in KV_CACHE_TYPES:
            known = ", ".join(KV_CACHE_TYPES)
            raise InvalidOptionError(f"unknown kv cache type {self.kv_cache_type!r} ({known})")


@dataclass
class MemoryEstimate:
    model: str
    architecture: str
    num_ctx: int
    num_parallel: int
    kv_cache_type: str
    flash_attention: bool
    weights_bytes: int
    kv_cache_bytes: int
    compute_bytes: int
    compute_reserved_bytes: int
    overhead_bytes: int
    total_bytes: int
    loaded_bytes: int
    layers: int
    gpu_layers: int
    gpu_bytes: int
    cpu_bytes: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _padded(cells: int) -> int:
    return -(-cells // KV_PAD) * KV_PAD


def _layer_cells(profile: ModelProfile, options: EstimateOptions, cells: int) -> list[int]:
    swa_cells = cells
    if profile.swa_layers and not options.swa_full:
        window = profile.sliding_window * options.num_parallel + options.num_batch
        swa_cells = min(cells, _padded(window))
    return [
        swa_cells if profile.is_swa_layer(layer) else cells for layer in range(profile.block_count)
    ]


def _activation_bytes(profile: ModelProfile, ubatch: int) -> int:
    q = profile.head_count * profile.key_length
    kv = profile.head_count_kv * (profile.key_length + profile.value_length)
    width = 2 * profile.feed_forward_length + q + kv + 2 * profile.embedding_length
    return width * ubatch * 4


def _compute_bytes(
    profile: ModelProfile, options: EstimateOptions, cells: list[int], ubatch: int
) -> tuple[int, int]:
    """(peak touched on a CPU at a full context, llama.cpp's reservation)."""
    n_kv = max(cells, default=0)
    # llama.cpp builds one mask per attention kind (global, sliding window), each as wide as
    # that kind's cache.
    mask_cells = sum(set(cells))
    activations = _activation_bytes(profile, ubatch)
    if options.flash_attention:
        masks = mask_cells * ubatch * 2
        touched = masks + 2 * activations
        attention_reserve = masks + activations
    else:
        scores = profile.head_count * n_kv * ubatch * 4
        masks = mask_cells * ubatch * 4
        touched = scores + scores // 2 + masks + activations
        attention_reserve = scores + masks + activations
    logits_reserve = profile.vocab_size * ubatch * 4
    return touched, max(attention_reserve, logits_reserve)


def _gpu_layer_count(
    profile: ModelProfile,
    options: EstimateOptions,
    layer_sizes: list[int],
    fixed_gpu: int,
    gpus: Sequence[GpuStats],
) -> int:
    total_layers = profile.block_count + 1  # + the output layer, as Ollama counts
    if options.num_gpu >= 0:
        return min(options.num_gpu, total_layers)
    if not gpus:
        return 0
    free = sum(gpu.usable_bytes for gpu in gpus) - fixed_gpu
    count, used = 0, 0
    # llama.cpp offloads the last layers first; the output layer only with all of them.
    for size in [*reversed(layer_sizes), profile.output_bytes]:
        if used + size > free:
            break
        used += size
        count += 1
    return count


def estimate_memory(
    profile: ModelProfile,
    options: EstimateOptions | None = None,
    gpus: Sequence[GpuStats] = (),
) -> MemoryEstimate:
    """Estimate memory for ``profile`` under ``options`` on a host with ``gpus``."""
    options = options or EstimateOptions()
    notes: list[str] = []
    num_ctx = options.num_ctx
    if profile.context_length and num_ctx > profile.context_length:
        notes.append(
            f"num_ctx {num_ctx} exceeds the model's training context "
            f"{profile.context_length}; llama.cpp allows it but quality degrades"
        )
    kv_type = options.kv_cache_type
    if KV_CACHE_TYPES[kv_type] < 2 and not options.flash_attention:
        notes.append(f"kv cache type {kv_type} needs flash attention; f16 is used instead")
        kv_type = "f16"
    cells = _layer_cells(profile, options, _padded(num_ctx * options.num_parallel))
    per_element = KV_CACHE_TYPES[kv_type]
    per_cell = profile.head_count_kv * (profile.key_length + profile.value_length) * per_element
    kv_layers = [int(c * per_cell) for c in cells]
    ubatch = min(options.num_batch, num_ctx * options.num_parallel)
    touched, reserved = _compute_bytes(profile, options, cells, ubatch)

    header = profile.file_size - profile.tensor_bytes if options.use_mmap else 0
    weights = profile.tensor_bytes + max(header, 0)
    kv_total = sum(kv_layers)
    output_buffer = profile.vocab_size * 4 * options.num_parallel
    runtime = RUNTIME_BASE_BYTES + RUNTIME_BYTES_PER_VOCAB * profile.vocab_size + output_buffer

    layer_sizes = [w + k for w, k in zip(profile.layer_bytes, kv_layers, strict=False)]
    devices = max(1, len(gpus))  # an explicit num_gpu on a host without GPUs: plan for one
    fixed_gpu = GPU_MINIMUM_BYTES * devices + reserved
    gpu_layers = _gpu_layer_count(profile, options, layer_sizes, fixed_gpu, gpus)
    offloaded = layer_sizes[len(layer_sizes) - min(gpu_layers, profile.block_count) :]
    gpu_bytes = sum(offloaded) if gpu_layers else 0
    if gpu_layers > profile.block_count:
        gpu_bytes += profile.output_bytes
    if gpu_layers:
        gpu_bytes += fixed_gpu
        compute = reserved + _activation_bytes(profile, ubatch)  # + a CPU-side graph buffer
        overhead = runtime + GPU_MINIMUM_BYTES * devices
        if gpu_layers < profile.block_count + 1:
            notes.append(f"partial offload: {gpu_layers}/{profile.block_count + 1} layers on GPU")
    else:
        compute = touched
        overhead = runtime
    total = weights + kv_total + compute + overhead
    loaded = total - compute + (reserved if gpu_layers else 0)
    return MemoryEstimate(
        model=profile.path,
        architecture=profile.architecture,
        num_ctx=num_ctx,
        num_parallel=options.num_parallel,
        kv_cache_type=kv_type,
        flash_attention=options.flash_attention,
        weights_bytes=weights,
        kv_cache_bytes=kv_total,
        compute_bytes=compute,
        compute_reserved_bytes=reserved,
        overhead_bytes=overhead,
        total_bytes=total,
        loaded_bytes=loaded,
        layers=profile.block_count + 1,
        gpu_layers=gpu_layers,
        gpu_bytes=gpu_bytes,
        cpu_bytes=total - gpu_bytes,
        notes=notes,
    )


def memory_budget(estimate: MemoryEstimate, inventory: HardwareInventory) -> tuple[int, int, str]:
    """(bytes needed, bytes there at 100%, where) for ``estimate`` on ``inventory``: a model
    wholly on the GPUs is judged by VRAM, anything else by the RAM its CPU part lands in."""
    if estimate.gpu_layers >= estimate.layers:
        return estimate.gpu_bytes, inventory.gpu_memory_bytes, "GPU memory"
    return estimate.cpu_bytes, inventory.host.memory.usable_bytes, "available RAM"
