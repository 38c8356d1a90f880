"""Compatibility, recommendations and comparisons (``neurons.library.advice``) against pinned
hardware inventories, checked with the docstring's formulas and hand-worked numbers:

* memory ratio ``r = need / (0.8 · budget)``: compatible (r ≤ 0.75, 1), tight (r ≤ 1,
  1 − 2(r − 0.75)), limited (r ≤ 1.25, 0.25), incompatible (0);
* speed ``min(1, tokens/s ÷ 20)``, 1 for embedding-only models; cpu 1, or 0.7 without
  AVX2/NEON or with fewer than 4 cores;
* ``score = 0.6·memory + 0.3·speed + 0.1·cpu``, capped at 0.2 when incompatible;
* ``confidence = 0.4·fit + 0.35·quality + 0.25·compatibility`` ± 0.05 per size class.

The hardware is built from ``HostStats`` / ``CpuStats`` / ``MemoryStats`` objects. The GPUs
are fake ``GpuStats`` objects (no GPU is needed or used): only their sizes and bandwidths
matter to the formulas. The memory need of a model is computed in the test with
``estimate_memory``, the estimator ``compatibility()`` uses.
"""

from __future__ import annotations

from typing import Any

import pytest

from neurons.errors import InvalidRequestError
from neurons.hardware.inventory import (
    CpuStats,
    GpuStats,
    HardwareInventory,
    HostStats,
    MemoryStats,
)
from neurons.hardware.memory import GPU_MINIMUM_BYTES, EstimateOptions, estimate_memory
from neurons.library.advice import (
    TASKS,
    _memory_status,
    _task_fit,
    compare,
    compatibility,
    recommend,
)
from neurons.library.catalog import ArchitectureFacts, CatalogModel, load_catalog
from neurons.library.discovery import LocalCopy
from neurons.library.performance import Measurement
from neurons.library.search import Library, LibraryEntry

GB = 1_000_000_000
RAM_NOTE = "RAM bandwidth unknown: 20 GB/s assumed"
NO_AVX = "CPU lacks AVX2/NEON: llama.cpp falls back to slow kernels"


def make_model(
    name: str,
    *,
    parameters: int = GB,
    file_size: int = 600_000_000,
    context_length: int = 8192,
    capabilities: tuple[Any, ...] = ("completion",),
    categories: tuple[Any, ...] = ("general",),
    architecture: ArchitectureFacts | None = None,
    released: str | None = None,
) -> CatalogModel:
    return CatalogModel(
        name=name,
        family="llama",
        description="test model",
        parameters=parameters,
        parameter_size=f"{parameters / GB:g}B",
        quantization="Q4_K_M",
        file_size_bytes=file_size,
        context_length=context_length,
        capabilities=capabilities,
        categories=categories,
        architecture=architecture,
        released=released,
    )


ARCH = ArchitectureFacts(
    name="llama",
    block_count=16,
    embedding_length=2048,
    head_count=32,
    head_count_kv=8,
    vocab_size=32000,
)
# 1B parameters, 600 MB of weights, 16 blocks (+ output = 17 layers). Roofline on 8 cores at
# 40 GB/s: t_mem = 6e8 / (0.5·40e9) = 0.03 s, t_compute = 2e9 / (8·12e9) = 0.0208 s
# -> 33.3 tokens/s (speed score 1). Quality: 0.30 + 0.19·log10(1e9 / 1.35e8) = 0.465.
TINY = make_model("tiny:1b", architecture=ARCH)


def measured(name: str, score: float | None, tps: float | None) -> Measurement:
    return Measurement(
        model=name,
        node="node-a",
        score=score,
        tokens_per_second=tps,
        items=16,
        measured_at="2025-01-01T00:00:00.000000+00:00",
    )


def entry(
    model: CatalogModel,
    *,
    score: float | None = None,
    tps: float | None = None,
    installed: bool = False,
) -> LibraryEntry:
    m = measured(model.name, score, tps) if score is not None or tps is not None else None
    copies = [LocalCopy("node-a", 1, "sha256:" + "0" * 64, None, None, None)] if installed else []
    return LibraryEntry(model, copies, m)


def host(
    available: int,
    *,
    cores: int = 8,
    flags: tuple[str, ...] = ("avx2",),
    bandwidth: int | None = 40 * GB,
    gpus: tuple[GpuStats, ...] = (),
) -> HardwareInventory:
    return HardwareInventory(
        host=HostStats(
            cpu=CpuStats(physical_cores=cores, logical_cpus=2 * cores, flags=list(flags)),
            memory=MemoryStats(
                total_bytes=max(available, 64 * GB),
                available_bytes=available,
                bandwidth_bytes_per_s=bandwidth,
            ),
        ),
        gpus=list(gpus),
    )


def fake_gpu(free: int, bandwidth: int | None = 1000 * GB) -> GpuStats:
    return GpuStats(
        name="Fake GPU",
        memory_total_bytes=free,
        memory_free_bytes=free,
        memory_bandwidth_bytes_per_s=bandwidth,
    )


def cpu_need(model: CatalogModel = TINY, num_ctx: int = 4096) -> int:
    profile = model.profile()
    assert profile is not None
    return estimate_memory(profile, EstimateOptions(num_ctx=num_ctx)).cpu_bytes


# -- memory -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ratio", "status", "score"),
    [
        (0.0, "compatible", 1.0),
        (0.75, "compatible", 1.0),
        (0.7501, "tight", 1.0),  # 1 − 2·0.0001 = 0.9998 -> 1.0 at 3 decimals
        (0.8, "tight", 0.9),
        (0.875, "tight", 0.75),
        (1.0, "tight", 0.5),
        (1.0001, "limited", 0.25),
        (1.25, "limited", 0.25),
        (1.2501, "incompatible", 0.0),
        (float("inf"), "incompatible", 0.0),
    ],
    ids=[
        "zero",
        "0.75-edge",
        "just-over-0.75",
        "0.8",
        "0.875",
        "1.0-edge",
        "just-over-1",
        "1.25-edge",
        "just-over-1.25",
        "no-budget",
    ],
)
def test_memory_status_boundaries(ratio: float, status: str, score: float) -> None:
    assert _memory_status(ratio) == (status, score)


@pytest.mark.parametrize(
    ("ratio", "status", "score", "warning"),
    [
        (0.5, "compatible", 1.0, None),  # 0.6·1 + 0.3·1 + 0.1·1
        (0.875, "tight", 0.85, "little room"),  # 0.6·0.75 + 0.4
        (0.9, "tight", 0.82, "little room"),  # 0.6·0.7 + 0.4
        (1.1, "limited", 0.55, "may swap"),  # 0.6·0.25 + 0.4
        (1.5, "incompatible", 0.2, "but only"),  # 0.6·0 + 0.4 = 0.4, capped at 0.2
    ],
    ids=["compatible", "tight-0.875", "tight-0.9", "limited", "incompatible"],
)
def test_memory_bands_on_a_cpu_host(
    ratio: float, status: str, score: float, warning: str | None
) -> None:
    need = cpu_need()
    available = int(need / (0.8 * ratio))  # a RAM size that puts the need at ``ratio``
    result = compatibility(entry(TINY), host(available))
    assert result.memory == status
    assert result.gpu == "not_available" and result.cpu == "compatible"
    assert result.tokens_per_second == 33.3 and result.speed_source == "estimate:roofline-v1"
    assert result.score == score
    assert result.fits is (status != "incompatible")
    assert result.estimate is not None and result.estimate.cpu_bytes == need
    memory_warnings = [w for w in result.warnings if w.startswith("needs ")]
    if warning is None:
        assert memory_warnings == []
    else:
        assert len(memory_warnings) == 1 and warning in memory_warnings[0]
        assert "available RAM" in memory_warnings[0]
    smaller = "choose a smaller model or a lower quantization"
    assert (smaller in result.recommendations) is (status == "incompatible")


def test_num_ctx_is_capped_by_the_model_and_defaults_to_4096() -> None:
    inv = host(64 * GB)
    default = compatibility(entry(TINY), inv).estimate
    assert default is not None and default.num_ctx == 4096
    big = compatibility(entry(TINY), inv, num_ctx=1 << 20).estimate
    assert big is not None and big.num_ctx == 8192  # the model's context length
    small = compatibility(entry(TINY), inv, num_ctx=512).estimate
    assert small is not None and small.num_ctx == 512


# -- gpu --------------------------------------------------------------------------------------


def test_gpu_not_available_without_gpus() -> None:
    result = compatibility(entry(TINY), host(64 * GB))
    assert result.gpu == "not_available"
    assert result.estimate is not None and result.estimate.gpu_layers == 0


def test_gpu_compatible_when_every_layer_fits() -> None:
    inv = host(64 * GB, gpus=(fake_gpu(8 * GB),))
    result = compatibility(entry(TINY), inv)
    est = result.estimate
    assert est is not None and est.gpu_layers == est.layers == 17
    assert result.gpu == "compatible" and result.memory == "compatible"
    # Full offload, 1 TB/s: t_mem = 6e8 / (0.7·1e12) = 0.000857 s, no CPU share -> 1166.7
    assert result.tokens_per_second == 1166.7
    assert result.score == 1.0


def test_gpu_memory_ratio_is_against_vram() -> None:
    profile = TINY.profile()
    assert profile is not None
    gpu_need = estimate_memory(profile, EstimateOptions(), [fake_gpu(8 * GB)]).gpu_bytes
    vram = int(gpu_need / (0.8 * 0.9))  # tight on the GPU, however much RAM there is
    result = compatibility(entry(TINY), host(64 * GB, gpus=(fake_gpu(vram),)))
    assert result.gpu == "compatible" and result.memory == "tight"
    assert result.score == 0.82  # 0.6·0.7 + 0.3 + 0.1
    assert any(w.startswith("needs ") and w.endswith("VRAM: little room") for w in result.warnings)


def test_gpu_partial_offload() -> None:
    profile = TINY.profile()
    assert profile is not None
    cpu_estimate = estimate_memory(profile, EstimateOptions())
    # Per layer: its share of the weights plus its KV cache; fixed: Ollama's per-device
    # minimum plus llama.cpp's compute reservation. Room for 8.5 layers -> 8 offloaded.
    layer = profile.layer_bytes[0] + cpu_estimate.kv_cache_bytes // 16
    fixed = GPU_MINIMUM_BYTES + cpu_estimate.compute_reserved_bytes
    inv = host(64 * GB, gpus=(fake_gpu(fixed + 8 * layer + layer // 2),))
    result = compatibility(entry(TINY), inv)
    assert result.gpu == "partial"
    assert result.estimate is not None and result.estimate.gpu_layers == 8
    assert result.recommendations[0].startswith("8/17 layers fit in VRAM")
    # The need checked against RAM is the CPU side of the split.
    assert result.memory == "compatible"
    assert result.estimate.cpu_bytes < cpu_estimate.cpu_bytes


def test_gpu_insufficient_when_no_layer_fits() -> None:
    inv = host(64 * GB, gpus=(fake_gpu(256 << 20),))  # less than Ollama's 457 MiB minimum
    result = compatibility(entry(TINY), inv)
    assert result.gpu == "insufficient"
    assert result.estimate is not None and result.estimate.gpu_layers == 0
    assert result.memory == "compatible"  # all of it in RAM, which is plenty


# -- cpu --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "cores", "status", "score", "warnings"),
    [
        (("avx2",), 8, "compatible", 1.0, []),
        (("avx2",), 4, "compatible", 1.0, []),
        (("neon",), 4, "compatible", 1.0, []),
        (("avx",), 8, "limited", 0.97, [NO_AVX]),
        ((), 8, "limited", 0.97, []),  # flags unknown: limited, but no claim about them
        (("avx2",), 3, "limited", 0.97, ["only 3 physical cores"]),
        (
            ("avx",),
            2,
            "limited",
            0.97,
            [NO_AVX, "only 2 physical cores"],
        ),
    ],
    ids=["avx2-8", "avx2-4", "neon-4", "avx-only", "flags-unknown", "3-cores", "avx-2-cores"],
)
def test_cpu_status(
    flags: tuple[str, ...], cores: int, status: str, score: float, warnings: list[str]
) -> None:
    # A measured 40 tokens/s pins the speed score at 1, so only the cpu term moves:
    # 0.6 + 0.3 + 0.1·(1 or 0.7).
    result = compatibility(entry(TINY, tps=40.0), host(64 * GB, cores=cores, flags=flags))
    assert result.cpu == status
    assert result.score == score
    assert result.warnings == warnings


# -- speed ------------------------------------------------------------------------------------


def test_speed_score_from_the_roofline() -> None:
    # 2 cores: t_compute = 2e9 / (2·12e9) = 0.0833 s -> 12.0 tokens/s, speed 12/20 = 0.6;
    # score = 0.6·1 + 0.3·0.6 + 0.1·0.7 = 0.85
    result = compatibility(entry(TINY), host(64 * GB, cores=2))
    assert result.tokens_per_second == 12.0
    assert result.score == 0.85


def test_measured_tokens_per_second_replace_the_estimate() -> None:
    inv = host(64 * GB, bandwidth=None)
    estimated = compatibility(entry(TINY), inv)
    # 20 GB/s assumed: t_mem = 6e8 / 1e10 = 0.06 s -> 16.7 tokens/s, and the note says so
    assert estimated.tokens_per_second == 16.7
    assert estimated.speed_source == "estimate:roofline-v1"
    assert RAM_NOTE in estimated.warnings
    result = compatibility(entry(TINY, tps=10.0), inv)
    assert result.tokens_per_second == 10.0
    assert result.speed_source == "measured on node-a"
    assert RAM_NOTE not in result.warnings
    assert result.score == 0.85  # 0.6 + 0.3·(10/20) + 0.1
    # A measurement with a score but no speed leaves the roofline in place.
    assert compatibility(entry(TINY, score=0.5), inv).tokens_per_second == 16.7


def test_to_dict_shape() -> None:
    data = compatibility(entry(TINY), host(64 * GB)).to_dict()
    assert data["compatibility_score"] == 1.0
    assert data["hardware_compatibility"] == {
        "memory": "compatible",
        "gpu": "not_available",
        "cpu": "compatible",
    }
    assert data["estimated_tokens_per_second"] == 33.3
    assert data["tokens_per_second_source"] == "estimate:roofline-v1"
    assert data["performance_estimate"] == (
        "Fast: replies stream faster than reading speed (~33.3 tokens/s, estimate:roofline-v1)"
    )
    assert data["memory_estimate"]["num_ctx"] == 4096
    assert data["memory_estimate"]["layers"] == 17


# -- models without architecture facts --------------------------------------------------------

PLAIN = make_model("plain:7b", parameters=7 * GB, file_size=4 * GB)


@pytest.mark.parametrize(
    "model",
    [
        PLAIN,
        make_model(
            "partial:7b",
            parameters=7 * GB,
            file_size=4 * GB,
            architecture=ArchitectureFacts(name="llama", block_count=32, embedding_length=4096),
        ),
    ],
    ids=["no-facts", "incomplete-facts"],
)
def test_model_without_architecture_facts(model: CatalogModel) -> None:
    # need = file size 4e9, budget 16e9: r = 4e9 / 12.8e9 = 0.3125 -> compatible;
    # no speed known: 0.6·1 + 0.3·0 + 0.1·1 = 0.7
    result = compatibility(entry(model), host(16 * GB))
    assert result.estimate is None
    assert result.memory == "compatible" and result.gpu == "not_available"
    assert result.tokens_per_second is None and result.speed_source == "unknown"
    assert result.score == 0.7
    assert "architecture facts unknown: memory need is the file size only" in result.warnings
    assert "Consider using GPU for better performance" in result.recommendations
    data = result.to_dict()
    assert data["memory_estimate"] is None and data["performance_estimate"] == "speed unknown"


def test_model_without_architecture_facts_other_cases() -> None:
    # With a (fake) GPU the placement is unknown.
    with_gpu = compatibility(entry(PLAIN), host(16 * GB, gpus=(fake_gpu(24 * GB),)))
    assert with_gpu.gpu == "unknown"
    assert "Consider using GPU for better performance" not in with_gpu.recommendations
    # A measured speed counts: 0.6 + 0.3·1 + 0.1 = 1.0
    assert compatibility(entry(PLAIN, tps=20.0), host(16 * GB)).score == 1.0
    # r = 4e9 / (0.8·4e9) = 1.25 -> limited: 0.6·0.25 + 0 + 0.1 = 0.25
    limited = compatibility(entry(PLAIN), host(4 * GB))
    assert (limited.memory, limited.score) == ("limited", 0.25)
    # Incompatible below the cap: 0 + 0 + 0.1 = 0.1 stays 0.1; with 40 tokens/s 0.4 -> 0.2
    assert compatibility(entry(PLAIN), host(2 * GB)).score == 0.1
    assert compatibility(entry(PLAIN, tps=40.0), host(2 * GB)).score == 0.2
    # Under 4B parameters there is no GPU advice.
    small = make_model("small:3b", parameters=3 * GB, file_size=2 * GB)
    assert compatibility(entry(small), host(16 * GB)).recommendations == []


def test_embedding_models_score_full_speed() -> None:
    embedder = make_model(
        "embed:335m",
        parameters=335_000_000,
        file_size=670_000_000,
        capabilities=("embedding",),
        categories=("embedding",),
    )
    # No speed is known, yet speed scores 1: 0.6 + 0.3 + 0.1
    result = compatibility(entry(embedder), host(16 * GB))
    assert result.tokens_per_second is None
    assert result.score == 1.0


# -- recommend --------------------------------------------------------------------------------

BIG_HOST = host(64 * GB)


def candidate(
    name: str,
    categories: tuple[Any, ...],
    *,
    capabilities: tuple[Any, ...] = ("completion",),
    quality: float = 0.6,
    parameters: int = GB,
    file_size: int = 500_000_000,
    context_length: int = 8192,
    installed: bool = False,
) -> LibraryEntry:
    """A model whose compatibility is 1.0 on BIG_HOST (memory 1, measured 40 tokens/s -> speed
    1, cpu 1) and whose quality is measured, so confidence = 0.4·fit + 0.35·quality + 0.25."""
    model = make_model(
        name,
        parameters=parameters,
        file_size=file_size,
        context_length=context_length,
        capabilities=capabilities,
        categories=categories,
    )
    return entry(model, score=quality, tps=40.0, installed=installed)


CANDIDATES: list[LibraryEntry] = [
    candidate("coder:1b", ("code",), file_size=GB),
    candidate("thinker:1b", ("reasoning",), context_length=32768),
    candidate("general:1b", ("general",)),
    candidate("viewer:1b", ("general", "vision"), capabilities=("completion", "vision")),
    # vision by category only: without the capability it is no vision model
    candidate("blind:1b", ("vision",)),
    # embedding-only, even if its categories claim "general"
    candidate("embed:1b", ("embedding", "general"), capabilities=("embedding",)),
    # too big for 64 GB: r = 200e9 / 51.2e9 -> incompatible, left out everywhere
    candidate("big:1b", ("general", "code"), file_size=200 * GB),
]


def ranking(task: str, **kwargs: Any) -> list[tuple[str, float]]:
    results = recommend(CANDIDATES, BIG_HOST, task, **kwargs)
    return [(r["model_name"], r["confidence_score"]) for r in results]


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        # fit 1.0 -> 0.4 + 0.21 + 0.25 = 0.86; 0.7 -> 0.74; 0.4 -> 0.62
        (
            "code_generation",
            [("coder:1b", 0.86), ("thinker:1b", 0.74), ("general:1b", 0.62), ("viewer:1b", 0.62)],
        ),
        ("chat", [("general:1b", 0.86), ("viewer:1b", 0.86)]),
        ("creative_writing", [("general:1b", 0.86), ("viewer:1b", 0.86)]),
        ("analysis", [("thinker:1b", 0.86), ("general:1b", 0.62), ("viewer:1b", 0.62)]),
        ("math", [("thinker:1b", 0.74), ("general:1b", 0.62), ("viewer:1b", 0.62)]),
        # long context (32768) adds 0.1 to the fit: thinker 0.8 -> 0.32 + 0.46 = 0.78
        ("summarization", [("general:1b", 0.86), ("viewer:1b", 0.86), ("thinker:1b", 0.78)]),
        ("embedding", [("embed:1b", 0.86)]),
        ("vision", [("viewer:1b", 0.86)]),
    ],
    ids=[
        "code_generation",
        "chat",
        "creative_writing",
        "analysis",
        "math",
        "summarization",
        "embedding",
        "vision",
    ],
)
def test_recommend_by_task(task: str, expected: list[tuple[str, float]]) -> None:
    assert ranking(task) == expected


@pytest.mark.parametrize(
    ("categories", "capabilities", "context", "task", "fit"),
    [
        (("code",), ("completion",), 8192, "code_generation", 1.0),
        (("reasoning",), ("completion",), 8192, "code_generation", 0.7),
        (("general",), ("completion",), 8192, "code_generation", 0.4),
        (("vision",), ("completion",), 8192, "code_generation", 0.0),
        (("code",), ("embedding",), 8192, "code_generation", 0.0),
        (("general",), ("completion",), 32768, "summarization", 1.0),  # capped at 1
        (("reasoning",), ("completion",), 32768, "summarization", 0.8),
        (("reasoning",), ("completion",), 32767, "summarization", 0.7),
        (("general",), ("completion",), 32768, "chat", 1.0),
        (("embedding",), ("embedding",), 8192, "embedding", 1.0),
        (("general",), ("completion", "embedding"), 8192, "embedding", 0.0),
        (("general", "vision"), ("completion", "vision"), 8192, "vision", 1.0),
        (("general",), ("completion", "vision"), 8192, "vision", 0.0),
    ],
    ids=[
        "primary",
        "secondary",
        "general",
        "other-category",
        "missing-capability",
        "long-context-capped",
        "long-context-secondary",
        "context-just-short",
        "chat-no-long-context-bonus",
        "embedding",
        "embedding-task-no-general",
        "vision",
        "vision-task-no-general",
    ],
)
def test_task_fit(
    categories: tuple[Any, ...],
    capabilities: tuple[Any, ...],
    context: int,
    task: str,
    fit: float,
) -> None:
    model = make_model(
        "m:1b", categories=categories, capabilities=capabilities, context_length=context
    )
    assert _task_fit(entry(model), TASKS[task]) == pytest.approx(fit)


def test_embedding_only_models_are_never_recommended_for_chat() -> None:
    for task in TASKS:
        if task != "embedding":
            assert "embed:1b" not in [name for name, _ in ranking(task)]


@pytest.mark.parametrize(
    ("preferred", "confidence"),
    [
        (None, 0.86),
        ("small", 0.91),  # same class: +0.05
        ("tiny", 0.81),  # one class away: −0.05
        ("medium", 0.81),
        ("large", 0.76),  # two: −0.10
        ("huge", 0.71),  # three: −0.15
    ],
    ids=["none", "same", "one-below", "one-above", "two-above", "three-above"],
)
def test_preferred_size_moves_confidence(preferred: str | None, confidence: float) -> None:
    assert ranking("code_generation", preferred_size=preferred)[0] == ("coder:1b", confidence)


def test_preferred_size_reorders_and_confidence_is_clamped() -> None:
    small = candidate("coder:1b", ("code",))
    medium = candidate("zcoder:8b", ("code",), parameters=8 * GB, file_size=4 * GB)
    perfect = candidate("perfect:1b", ("code",), quality=1.0)  # 0.4 + 0.35 + 0.25 = 1.0
    entries = [small, medium, perfect]

    def top(preferred: str | None) -> list[tuple[str, float]]:
        results = recommend(entries, BIG_HOST, "code_generation", preferred_size=preferred)
        return [(r["model_name"], r["confidence_score"]) for r in results]

    # Equal confidence: by name. perfect:1b at 1.0 + 0.05 is clamped to 1.0.
    assert top(None) == [("perfect:1b", 1.0), ("coder:1b", 0.86), ("zcoder:8b", 0.86)]
    assert top("small") == [("perfect:1b", 1.0), ("coder:1b", 0.91), ("zcoder:8b", 0.81)]
    assert top("medium") == [("perfect:1b", 0.95), ("zcoder:8b", 0.91), ("coder:1b", 0.81)]


def test_recommend_is_deterministic_and_order_independent() -> None:
    first = recommend(CANDIDATES, BIG_HOST, "code_generation")
    assert recommend(CANDIDATES, BIG_HOST, "code_generation") == first
    assert recommend(CANDIDATES[::-1], BIG_HOST, "code_generation") == first


def test_recommend_limit_alternatives_and_trade_offs() -> None:
    results = recommend(CANDIDATES, BIG_HOST, "code_generation")
    by_name = {r["model_name"]: r for r in results}
    assert by_name["coder:1b"]["alternatives"] == ["thinker:1b", "general:1b", "viewer:1b"]
    assert by_name["thinker:1b"]["alternatives"] == ["coder:1b", "general:1b", "viewer:1b"]
    # Each compares with the next one down; the last with the one above it.
    assert by_name["coder:1b"]["trade_offs"] == (
        "2.0x the download size of thinker:1b, 1.0x its speed, quality +0.00"
    )
    assert by_name["viewer:1b"]["trade_offs"] == (
        "1.0x the download size of general:1b, 1.0x its speed, quality +0.00"
    )
    # limit cuts the list, not the alternatives.
    top = recommend(CANDIDATES, BIG_HOST, "code_generation", limit=1)
    assert [r["model_name"] for r in top] == ["coder:1b"]
    assert top[0]["alternatives"] == ["thinker:1b", "general:1b", "viewer:1b"]
    only = recommend(CANDIDATES, BIG_HOST, "vision")
    assert only[0]["alternatives"] == []
    assert only[0]["trade_offs"] == "the only candidate that fits this task and hardware"


def test_recommendation_fields_and_reasoning() -> None:
    entries = [
        candidate("coder:1b", ("code",), installed=True),
        candidate("thinker:1b", ("reasoning",), context_length=32768),
        candidate("general:1b", ("general",), context_length=32768),
    ]
    code = {r["model_name"]: r for r in recommend(entries, BIG_HOST, "code_generation")}
    coder = code["coder:1b"]
    assert coder["expected_performance"] == 0.6
    assert coder["performance_source"] == "measured on node-a"
    assert coder["compatibility_score"] == 1.0
    assert coder["estimated_tokens_per_second"] == 40.0
    assert coder["installed"] is True and code["thinker:1b"]["installed"] is False
    assert coder["reasoning"] == (
        "1B llama model specialised for code generation; memory compatible; "
        "expected quality 0.6 (measured on node-a); ~40 tokens/s (measured on node-a); "
        "already on node-a"
    )
    assert "model related to code generation;" in code["thinker:1b"]["reasoning"]
    assert "model a general model for code generation;" in code["general:1b"]["reasoning"]
    # The long-context bonus does not change what a model is: a reasoning model with a 32k
    # context is still related to summarization (fit 0.7 + 0.1 = 0.8), not a general model.
    summary = {r["model_name"]: r for r in recommend(entries, BIG_HOST, "summarization")}
    assert "model related to summarization;" in summary["thinker:1b"]["reasoning"]
    assert "model specialised for summarization;" in summary["general:1b"]["reasoning"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"task_type": "poetry"},
        {"task_type": "chat", "preferred_size": "giant"},
        {"task_type": "chat", "limit": 0},
        {"task_type": "chat", "limit": 51},
    ],
    ids=["task", "preferred-size", "limit-0", "limit-51"],
)
def test_recommend_rejects_bad_requests(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError):
        recommend(CANDIDATES, BIG_HOST, **kwargs)


def test_recommend_limit_bounds_are_inclusive() -> None:
    assert len(recommend(CANDIDATES, BIG_HOST, "code_generation", limit=50)) == 4
    assert len(recommend(CANDIDATES, BIG_HOST, "code_generation", limit=1)) == 1


# -- recommend on the real catalog ------------------------------------------------------------

DESKTOP = HardwareInventory(
    host=HostStats(
        cpu=CpuStats(physical_cores=8, logical_cpus=16, flags=["avx2"]),
        memory=MemoryStats(total_bytes=16 * GB, bandwidth_bytes_per_s=40 * GB),
    )
)


@pytest.mark.parametrize(
    "task",
    list(TASKS),
    ids=list(TASKS),
)
def test_recommend_on_the_packaged_catalog(task: str) -> None:
    entries = Library(load_catalog()).entries()
    results = recommend(entries, DESKTOP, task, limit=50)
    assert results, f"nothing recommended for {task} on a 16 GB desktop"
    spec = TASKS[task]
    by_name = {e.name: e for e in entries}
    for item in results:
        model = by_name[item["model_name"]].model
        assert spec.requires in model.capabilities
        assert _task_fit(by_name[model.name], spec) > 0
        # Everything recommended fits: 16 GB rules out every 70B model.
        assert compatibility(by_name[model.name], DESKTOP).fits
        assert model.parameters < 40 * GB
        # confidence = 0.4·fit + 0.35·quality + 0.25·compatibility (inputs rounded to 3)
        expected = (
            0.4 * _task_fit(by_name[model.name], spec)
            + 0.35 * item["expected_performance"]
            + 0.25 * item["compatibility_score"]
        )
        assert item["confidence_score"] == pytest.approx(expected, abs=1.5e-3)
        assert item["performance_source"] == "estimate:size-v1"
        assert item["installed"] is False
    keys = [(-r["confidence_score"], r["model_name"]) for r in results]
    assert keys == sorted(keys)
    if task == "embedding":
        assert all(by_name[r["model_name"]].model.categories == ("embedding",) for r in results)
    if task != "embedding":
        assert not any("embedding" in by_name[r["model_name"]].model.capabilities for r in results)
    if task == "code_generation":
        assert "code" in by_name[results[0]["model_name"]].model.categories
    # Same inputs, same answer; the default limit is 5.
    assert recommend(entries, DESKTOP, task, limit=50) == results
    assert recommend(entries, DESKTOP, task) == results[:5]


def test_recommend_on_the_packaged_catalog_twice_gives_identical_output() -> None:
    entries = Library(load_catalog()).entries()
    first = recommend(entries, DESKTOP, "chat")
    second = recommend(Library(load_catalog()).entries(), DESKTOP, "chat")
    assert first == second
    assert len(first) == 5
    assert recommend(entries[::-1], DESKTOP, "chat") == first


# -- compare ----------------------------------------------------------------------------------

HUGE = make_model("huge:100b", parameters=100 * GB, file_size=100 * GB, context_length=32768)


def test_compare_table_and_notes() -> None:
    entries = [entry(TINY), entry(PLAIN), entry(HUGE)]
    result = compare(entries, host(16 * GB))
    assert result["models"] == ["tiny:1b", "plain:7b", "huge:100b"]
    table = result["comparison_table"]
    # quality: 0.30 + 0.19·log10(p / 1.35e8): 1e9 -> 0.465, 7e9 -> 0.626, 1e11 -> 0.845
    assert table["performance"] == {"tiny:1b": 0.465, "plain:7b": 0.626, "huge:100b": 0.845}
    assert set(table["performance_source"].values()) == {"estimate:size-v1"}
    tiny_total = cpu_need()  # CPU-only: the whole estimate
    assert table["memory_usage"] == {
        "tiny:1b": round(tiny_total / GB, 2),
        "plain:7b": 4.0,  # file size: no architecture facts
        "huge:100b": 100.0,
    }
    assert table["context"] == {"tiny:1b": 8192, "plain:7b": 8192, "huge:100b": 32768}
    assert table["speed"] == {"tiny:1b": 33.3, "plain:7b": None, "huge:100b": None}
    assert table["parameters"] == {"tiny:1b": GB, "plain:7b": 7 * GB, "huge:100b": 100 * GB}
    # tiny 1.0; plain 0.6 + 0 + 0.1 = 0.7; huge incompatible 0 + 0 + 0.1 = 0.1
    assert table["compatibility"] == {"tiny:1b": 1.0, "plain:7b": 0.7, "huge:100b": 0.1}
    assert result["recommendations"] == [
        "huge:100b has the best expected quality (0.845)",
        f"tiny:1b needs the least memory ({round(tiny_total / GB, 2):g} GB)",
        "tiny:1b is the fastest here (~33.3 tokens/s)",
        "huge:100b has the longest context (32,768 tokens)",
        "huge:100b does not fit this hardware",
    ]


def test_compare_without_speeds_and_with_num_ctx() -> None:
    result = compare([entry(PLAIN), entry(HUGE)], host(16 * GB))
    assert not any("fastest" in line for line in result["recommendations"])
    default = compare([entry(TINY), entry(PLAIN)], host(16 * GB))
    longer = compare([entry(TINY), entry(PLAIN)], host(16 * GB), num_ctx=8192)
    assert longer["comparison_table"]["memory_usage"]["tiny:1b"] == round(
        cpu_need(num_ctx=8192) / GB, 2
    )
    assert (
        longer["comparison_table"]["memory_usage"]["tiny:1b"]
        > default["comparison_table"]["memory_usage"]["tiny:1b"]
    )


@pytest.mark.parametrize("count", [0, 1], ids=["none", "one"])
def test_compare_needs_two_models(count: int) -> None:
    with pytest.raises(InvalidRequestError):
        compare([entry(TINY)][:count], host(16 * GB))
