"""Predicted vs measured memory of the offline models under llama-cpp-python.

For each model and num_ctx, a fresh child process imports llama_cpp, notes its resident set,
loads the model exactly as the embedded neuron does (mmap, n_batch 512, all physical cores),
and measures:

* **loaded**: the resident-set increase after the load and a short generation: what a model
  ready to serve holds. Compared with the estimate's ``loaded_bytes``.
* **full context** (num_ctx up to ``--full-max-ctx``, default 8192): the peak resident-set
  increase (VmHWM) after filling the whole context with a prompt: the worst case, compared
  with the estimate's ``total_bytes``. Filling 32768 tokens takes many minutes on a small
  CPU, hence the limit; pass ``--full-max-ctx 32768`` to include it.
* llama.cpp's own buffer sizes from its log (model, KV, compute reservation), compared with
  the estimate's parts.

    python benchmarks/memory_estimate.py [--ctx 2048 8192 32768] [--flash-attention]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

MODELS = ("smollm2:135m", "gemma3:270m")
MiB = 2**20


def _status(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} missing from /proc/self/status")


def child(path: str, ctx: int, fill: bool, flash_attention: bool) -> None:
    from neurons.config import Settings
    from neurons.neuron.llama import configure_llama_cpp
    from neurons.neuron.options import default_threads

    llama_cpp = configure_llama_cpp(Settings().llama_extra_buffers)
    before = _status("VmRSS")
    threads = default_threads()
    model = llama_cpp.Llama(
        path,
        n_ctx=ctx,
        n_batch=512,
        n_threads=threads,
        n_threads_batch=threads,
        use_mmap=True,
        flash_attn=flash_attention,
        verbose=True,
    )
    model("The capital of France is", max_tokens=8)
    result = {"loaded": _status("VmRSS") - before}
    if fill:
        rng = random.Random(0)
        vocab = int(model.n_vocab())
        model.reset()
        model.eval([rng.randrange(1000, min(vocab, 30000)) for _ in range(ctx - 1)])
        result["peak"] = _status("VmHWM") - before
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")


_BUFFERS = {
    "model": re.compile(r"model buffer size =\s*([\d.]+) MiB"),
    "kv": re.compile(r"KV buffer size =\s*([\d.]+) MiB"),
    "compute": re.compile(r"compute buffer size =\s*([\d.]+) MiB"),
}


def measure(path: Path, ctx: int, fill: bool, flash_attention: bool) -> dict[str, Any]:
    args = [sys.executable, __file__, "--child", str(path), str(ctx), str(int(fill))]
    args.append(str(int(flash_attention)))
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"child failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    for name, pattern in _BUFFERS.items():
        # The first "compute buffer" line is the reservation (later lines repeat it).
        values = [float(v) for v in pattern.findall(done.stderr)]
        if name == "compute":
            values = values[:1]
        result[f"log_{name}"] = int(sum(values) * MiB)
    return result


def _err(predicted: int, measured: int) -> str:
    return f"{(predicted - measured) / measured * 100:+6.1f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ctx", type=int, nargs="+", default=[2048, 8192, 32768])
    parser.add_argument("--full-max-ctx", type=int, default=8192)
    parser.add_argument("--flash-attention", action="store_true")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    args = parser.parse_args()

    from neurons.hardware.gguf import read_model_profile
    from neurons.hardware.locate import locate_gguf
    from neurons.hardware.memory import EstimateOptions, estimate_memory

    cache = Path(tempfile.gettempdir()) / "neurons-benchmark-cache"
    worst = 0.0
    print(
        f"{'model':14} {'ctx':>6} | {'loaded pred':>11} {'measured':>9} {'err':>7} | "
        f"{'full pred':>9} {'measured':>9} {'err':>7} | "
        f"{'weights':>7} {'kv':>7} {'compute reserve':>15}  (error vs llama.cpp's log)"
    )
    for name in args.models:
        path = locate_gguf(name, Path("/nonexistent"), cache)
        profile = read_model_profile(path)
        for ctx in args.ctx:
            fill = ctx <= args.full_max_ctx
            options = EstimateOptions(num_ctx=ctx, num_gpu=0, flash_attention=args.flash_attention)
            estimate = estimate_memory(profile, options)
            measured = measure(path, ctx, fill, args.flash_attention)
            errors = [abs(estimate.loaded_bytes - measured["loaded"]) / measured["loaded"]]
            full = " " * 9 + " " * 10 + " " * 8
            if fill:
                errors.append(abs(estimate.total_bytes - measured["peak"]) / measured["peak"])
                full = (
                    f"{estimate.total_bytes / MiB:9.1f} {measured['peak'] / MiB:9.1f} "
                    f"{_err(estimate.total_bytes, measured['peak'])}"
                )
            worst = max(worst, *errors)
            print(
                f"{name:14} {ctx:>6} | {estimate.loaded_bytes / MiB:11.1f} "
                f"{measured['loaded'] / MiB:9.1f} {_err(estimate.loaded_bytes, measured['loaded'])}"
                f" | {full} | {_err(profile.tensor_bytes, measured['log_model'])} "
                f"{_err(estimate.kv_cache_bytes, measured['log_kv'])} "
                f"{_err(estimate.compute_reserved_bytes, measured['log_compute']):>15}",
                flush=True,
            )
    print(f"\nworst error: {worst * 100:.1f}% (target: within 10%)")
    print("sizes in MiB; loaded = after load + a short generation; full = context filled")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1", sys.argv[5] == "1")
    else:
        main()
