"""Compatibility, recommendations and comparisons: deterministic formulas over library entries
and a hardware inventory (pinned by stats files in tests, measured otherwise).

**Compatibility** of a model at ``num_ctx`` (default: Ollama's 4096, capped by the model):
the memory estimator gives the need, placed on the GPUs when they hold it all. With ``r`` the
need over 80% of the memory it lands in:

* memory: ``compatible`` (r ≤ 0.75, score 1), ``tight`` (r ≤ 1, score 1 − 2(r − 0.75)),
  ``limited`` (r ≤ 1.25: it runs only by eating the headroom, score 0.25), else
  ``incompatible`` (score 0);
* speed: measured tokens/s when an evaluation exists, else the roofline estimate of
  :mod:`neurons.library.performance`; score min(1, tokens/s ÷ 20) (20 tokens/s reads faster
  than people do); embedding models score 1;
* cpu: 1 with AVX2/NEON and ≥ 4 cores, else 0.7 (``limited``).

``compatibility_score = 0.6·memory + 0.3·speed + 0.1·cpu``, capped at 0.2 when the memory is
incompatible.

**Recommendations** for a task: a model must have the capability the task needs; its task fit
is 1.0 in the task's primary category, 0.7 in a secondary one, 0.4 as a general model.
``confidence = 0.4·fit + 0.35·quality + 0.25·compatibility``, ±0.05 per size class towards or
away from ``preferred_size``; models that do not fit are left out. Ties break by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from neurons.errors import InvalidRequestError
from neurons.hardware.inventory import HardwareInventory
from neurons.hardware.memory import (
    HEADROOM,
    EstimateOptions,
    MemoryEstimate,
    estimate_memory,
    memory_budget,
)
from neurons.library.catalog import SIZE_CLASSES
from neurons.library.performance import estimate_tokens_per_second
from neurons.library.search import LibraryEntry

__all__ = ["TASKS", "Compatibility", "compare", "compatibility", "recommend"]

DEFAULT_CTX = 4096
GB = 1e9


@dataclass(frozen=True)
class Task:
    primary: frozenset[str]
    secondary: frozenset[str] = frozenset()
    general_ok: bool = True
    requires: str = "completion"
    long_context: bool = False


TASKS: dict[str, Task] = {
    "code_generation": Task(frozenset({"code"}), frozenset({"reasoning"})),
    "creative_writing": Task(frozenset({"general"})),
    "analysis": Task(frozenset({"reasoning"}), frozenset({"math"})),
    "chat": Task(frozenset({"general"})),
    "summarization": Task(frozenset({"general"}), frozenset({"reasoning"}), long_context=True),
    "embedding": Task(frozenset({"embedding"}), general_ok=False, requires="embedding"),
    "math": Task(frozenset({"math"}), frozenset({"reasoning"})),
    "vision": Task(frozenset({"vision"}), general_ok=False, requires="vision"),
}


@dataclass
class Compatibility:
    entry: LibraryEntry
    estimate: MemoryEstimate | None
    score: float
    memory: str
    gpu: str
    cpu: str
    tokens_per_second: float | None
    speed_source: str
    warnings: list[str]
    recommendations: list[str]

    @property
    def fits(self) -> bool:
        return self.memory not in ("incompatible",)

    def to_dict(self) -> dict[str, Any]:
        est = self.estimate
        return {
            "compatibility_score": self.score,
            "hardware_compatibility": {"memory": self.memory, "gpu": self.gpu, "cpu": self.cpu},
            "warnings": self.warnings,
            "recommendations": self.recommendations,
            "performance_estimate": _speed_words(self.tokens_per_second, self.speed_source),
            "estimated_tokens_per_second": self.tokens_per_second,
            "tokens_per_second_source": self.speed_source,
            "memory_estimate": None
            if est is None
            else {
                "num_ctx": est.num_ctx,
                "total_bytes": est.total_bytes,
                "weights_bytes": est.weights_bytes,
                "kv_cache_bytes": est.kv_cache_bytes,
                "compute_bytes": est.compute_bytes,
                "gpu_layers": est.gpu_layers,
                "layers": est.layers,
                "gpu_bytes": est.gpu_bytes,
                "cpu_bytes": est.cpu_bytes,
            },
        }


def _speed_words(tps: float | None, source: str) -> str:
    if tps is None:
        return "speed unknown"
    if tps >= 30:
        verdict = "Fast: replies stream faster than reading speed"
    elif tps >= 10:
        verdict = "Good performance expected with current hardware"
    elif tps >= 3:
        verdict = "Usable but slow for interactive chat"
    else:
        verdict = "Very slow on this hardware"
    return f"{verdict} (~{tps:g} tokens/s, {source})"


def _memory_status(ratio: float) -> tuple[str, float]:
    if ratio <= 0.75:
        return "compatible", 1.0
    if ratio <= 1.0:
        return "tight", round(1 - 2 * (ratio - 0.75), 3)
    if ratio <= 1.25:
        return "limited", 0.25
    return "incompatible", 0.0


def compatibility(
    entry: LibraryEntry, inventory: HardwareInventory, *, num_ctx: int | None = None
) -> Compatibility:
    model = entry.model
    warnings: list[str] = []
    advice: list[str] = []
    ctx = min(num_ctx or DEFAULT_CTX, model.context_length)
    profile = model.profile()
    host = inventory.host
    has_avx = any(flag in host.cpu.flags for flag in ("avx2", "neon"))
    cpu_ok = has_avx and host.cpu.physical_cores >= 4
    cpu = "compatible" if cpu_ok else "limited"
    if not has_avx and host.cpu.flags:
        warnings.append("CPU lacks AVX2/NEON: llama.cpp falls back to slow kernels")
    if host.cpu.physical_cores < 4:
        warnings.append(f"only {host.cpu.physical_cores} physical cores")
    if profile is None:
        # Architecture facts missing: the weights alone (file size) bound the need from below.
        need, budget = model.file_size_bytes, host.memory.usable_bytes
        estimate = None
        warnings.append("architecture facts unknown: memory need is the file size only")
        gpu = "not_available" if not inventory.gpus else "unknown"
    else:
        estimate = estimate_memory(profile, EstimateOptions(num_ctx=ctx), inventory.gpus)
        need, budget, _ = memory_budget(estimate, inventory)
        on_gpu = estimate.gpu_layers >= estimate.layers
        if not inventory.gpus:
            gpu = "not_available"
        elif on_gpu:
            gpu = "compatible"
        elif estimate.gpu_layers:
            gpu = "partial"
            advice.append(
                f"{estimate.gpu_layers}/{estimate.layers} layers fit in VRAM; "
                "a smaller quantization or context would fit entirely"
            )
        else:
            gpu = "insufficient"
    ratio = need / (HEADROOM * budget) if budget else float("inf")
    memory, memory_score = _memory_status(ratio)
    where = "VRAM" if gpu == "compatible" else "available RAM"
    if memory == "tight":
        warnings.append(f"needs {need / GB:.1f} GB of {budget / GB:.1f} GB {where}: little room")
    elif memory == "limited":
        warnings.append(f"needs {need / GB:.1f} GB of {budget / GB:.1f} GB {where}: may swap")
    elif memory == "incompatible":
        warnings.append(f"needs {need / GB:.1f} GB but only {budget / GB:.1f} GB {where}")
        advice.append("choose a smaller model or a lower quantization")
    if not inventory.gpus and model.parameters >= 4e9 and memory != "incompatible":
        advice.append("Consider using GPU for better performance")

    measured = entry.measured
    if measured is not None and measured.tokens_per_second:
        tps: float | None = measured.tokens_per_second
        source = f"measured on {measured.node}"
    elif estimate is not None:
        tps, notes = estimate_tokens_per_second(model, estimate, inventory)
        source = "estimate:roofline-v1"
        warnings += notes
    else:
        tps, source = None, "unknown"
    if "embedding" in entry.capabilities and "completion" not in entry.capabilities:
        speed_score = 1.0
    else:
        speed_score = min(1.0, (tps or 0.0) / 20)
    cpu_score = 1.0 if cpu_ok else 0.7
    score = 0.6 * memory_score + 0.3 * speed_score + 0.1 * cpu_score
    if memory == "incompatible":
        score = min(score, 0.2)
    return Compatibility(
        entry=entry,
        estimate=estimate,
        score=round(score, 3),
        memory=memory,
        gpu=gpu,
        cpu=cpu,
        tokens_per_second=tps,
        speed_source=source,
        warnings=warnings,
        recommendations=advice,
    )


def _task_fit(entry: LibraryEntry, task: Task) -> float:
    model = entry.model
    if task.requires not in entry.capabilities:
        return 0.0
    categories = set(model.categories)
    if categories & task.primary:
        fit = 1.0
    elif categories & task.secondary:
        fit = 0.7
    elif task.general_ok and "general" in categories:
        fit = 0.4
    else:
        return 0.0
    if task.long_context and model.context_length >= 32768:
        fit = min(1.0, fit + 0.1)
    return fit


def _size_distance(size_class: str, preferred: str) -> int:
    order = list(SIZE_CLASSES)
    return abs(order.index(size_class) - order.index(preferred))


def recommend(
    entries: list[LibraryEntry],
    inventory: HardwareInventory,
    task_type: str,
    *,
    preferred_size: str | None = None,
    limit: int = 5,
) -> list[dict[str, Any]]:
    task = TASKS.get(task_type)
    if task is None:
        raise InvalidRequestError(f"unknown task_type '{task_type}' (one of {', '.join(TASKS)})")
    if preferred_size is not None and preferred_size not in SIZE_CLASSES:
        raise InvalidRequestError(
            f"unknown preferred_size '{preferred_size}' (one of {', '.join(SIZE_CLASSES)})"
        )
    if not 1 <= limit <= 50:
        raise InvalidRequestError("limit must be between 1 and 50")
    ranked: list[tuple[float, LibraryEntry, Compatibility, float]] = []
    for entry in entries:
        fit = _task_fit(entry, task)
        if fit == 0.0:
            continue
        compat = compatibility(entry, inventory)
        if not compat.fits:
            continue
        confidence = 0.4 * fit + 0.35 * entry.quality.value + 0.25 * compat.score
        if preferred_size is not None:
            distance = _size_distance(entry.model.size_class, preferred_size)
            confidence += 0.05 if distance == 0 else -0.05 * distance
        ranked.append((round(min(max(confidence, 0.0), 1.0), 3), entry, compat, fit))
    ranked.sort(key=lambda r: (-r[0], r[1].name))
    results = []
    for index, (confidence, entry, compat, fit) in enumerate(ranked[:limit]):
        others = [r[1] for r in ranked if r[1] is not entry][:3]
        results.append(
            {
                "model_name": entry.name,
                "confidence_score": confidence,
                "reasoning": _reasoning(entry, compat, fit, task_type),
                "expected_performance": entry.quality.value,
                "performance_source": entry.quality.source,
                "alternatives": [o.name for o in others],
                "trade_offs": _trade_offs(entry, compat, ranked, index, inventory),
                "compatibility_score": compat.score,
                "estimated_tokens_per_second": compat.tokens_per_second,
                "installed": bool(entry.installed_on),
            }
        )
    return results


def _reasoning(entry: LibraryEntry, compat: Compatibility, fit: float, task_type: str) -> str:
    model = entry.model
    # By band, not by exact value: the long-context bonus (+0.1) lifts a secondary-category
    # fit of 0.7 to 0.8, which is still "related", not "general".
    if fit > 1.0 - 1e-9:
        kind = "specialised for"
    elif fit > 0.7 - 1e-9:
        kind = "related to"
    else:
        kind = "a general model for"
    parts = [
        f"{model.parameter_size} {model.family} model {kind} {task_type.replace('_', ' ')}",
        f"memory {compat.memory}",
        f"expected quality {entry.quality.value:g} ({entry.quality.source})",
    ]
    if compat.tokens_per_second is not None:
        parts.append(f"~{compat.tokens_per_second:g} tokens/s ({compat.speed_source})")
    if entry.installed_on:
        parts.append("already on " + ", ".join(c.node for c in entry.installed_on))
    return "; ".join(parts)


def _trade_offs(
    entry: LibraryEntry,
    compat: Compatibility,
    ranked: list[tuple[float, LibraryEntry, Compatibility, float]],
    index: int,
    inventory: HardwareInventory,
) -> str:
    other_index = index + 1 if index + 1 < len(ranked) else index - 1
    if other_index < 0 or other_index == index:
        return "the only candidate that fits this task and hardware"
    _, other, other_compat, _ = ranked[other_index]
    size = entry.model.file_size_bytes / other.model.file_size_bytes
    words = [f"{size:.1f}x the download size of {other.name}"]
    if compat.tokens_per_second and other_compat.tokens_per_second:
        speed = compat.tokens_per_second / other_compat.tokens_per_second
        words.append(f"{speed:.1f}x its speed")
    diff = entry.quality.value - other.quality.value
    words.append(f"quality {'+' if diff >= 0 else ''}{diff:.2f}")
    return ", ".join(words)


def compare(
    entries: list[LibraryEntry], inventory: HardwareInventory, *, num_ctx: int | None = None
) -> dict[str, Any]:
    if len(entries) < 2:
        raise InvalidRequestError("compare needs at least two models")
    rows = {e.name: compatibility(e, inventory, num_ctx=num_ctx) for e in entries}
    table: dict[str, dict[str, Any]] = {
        "performance": {n: c.entry.quality.value for n, c in rows.items()},
        "performance_source": {n: c.entry.quality.source for n, c in rows.items()},
        "memory_usage": {
            n: round(
                (c.estimate.total_bytes if c.estimate else c.entry.model.file_size_bytes) / GB, 2
            )
            for n, c in rows.items()
        },
        "context": {n: c.entry.model.context_length for n, c in rows.items()},
        "speed": {n: c.tokens_per_second for n, c in rows.items()},
        "parameters": {n: c.entry.model.parameters for n, c in rows.items()},
        "compatibility": {n: c.score for n, c in rows.items()},
    }
    names = list(rows)
    # Every tie goes to the name that sorts first.
    best = min(names, key=lambda n: (-table["performance"][n], n))
    smallest = min(names, key=lambda n: (table["memory_usage"][n], n))
    longest = min(names, key=lambda n: (-table["context"][n], n))
    notes = [f"{best} has the best expected quality ({table['performance'][best]:g})"]
    notes.append(f"{smallest} needs the least memory ({table['memory_usage'][smallest]:g} GB)")
    speeds = {n: s for n, s in table["speed"].items() if s is not None}
    if speeds:
        fastest = min(speeds, key=lambda n: (-speeds[n], n))
        notes.append(f"{fastest} is the fastest here (~{speeds[fastest]:g} tokens/s)")
    notes.append(f"{longest} has the longest context ({table['context'][longest]:,} tokens)")
    for name, compat in rows.items():
        if not compat.fits:
            notes.append(f"{name} does not fit this hardware")
    return {"models": names, "comparison_table": table, "recommendations": notes}
