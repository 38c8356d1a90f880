"""Throughput of seed 001's embedding model, raw and through the control plane, in one run.

Side by side: ``SentenceTransformer.encode`` at its best batch size (8/16/32/64 tried), and
``POST /api/v1/model/inference`` (body ``{"texts": [...]}``) of a ``neurons serve`` process
under 16 concurrent clients (aiohttp, the cheaper load generator on a shared 2-core machine),
each sending 1-8 texts a request: with the cache off (``NEURONS_INFERENCE_CACHE_SIZE=0``), on
the default backend and on torch's (``NEURONS_INFERENCE_BACKEND=torch``), and with the cache
on, every text already seen (hits) against fresh texts (misses). Then int8 against fp32 in
process, both in torch: speed-up and cosine.

    python benchmarks/inference_throughput.py [--texts 768] [--clients 16]

Targets: the endpoint, cache off, >= 0.9x raw; a cache hit >= 10x faster than a miss.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx
import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from neurons.inference.config import InferenceConfig  # noqa: E402
from neurons.inference.model import load_encoder  # noqa: E402

WORDS = (
    "the a model network river mountain learning token cache batch vector city music doctor "
    "train weather market energy history language library garden ocean planet code server"
).split()
PATH = "/api/v1/model/inference"


def corpus(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [
        f"{seed}-{i} " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 30)))
        for i in range(n)
    ]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_plane(home: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "neurons", "serve", "--port", str(port)],
        env={**os.environ, **env, "NEURONS_HOME": str(home), "NEURONS_INFERENCE": "true"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.post(url + PATH, json={"texts": ["warm"]}, timeout=5).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    raise SystemExit("the control plane's inference endpoint did not come up")


async def load(url: str, texts: list[str], clients: int) -> tuple[float, list[float]]:
    """Send ``texts`` in requests of 1-8 from ``clients`` workers: texts/s, per-text ms."""
    rng = random.Random(7)
    chunks: list[list[str]] = []
    position = 0
    while position < len(texts):
        size = rng.randint(1, 8)
        chunks.append(texts[position : position + size])
        position += size
    queue = iter(chunks)
    per_text: list[float] = []
    # aiohttp, not httpx: the load generator shares the 2 cores with the plane, and httpx
    # spent about 3x aiohttp's CPU per request (0.65 CPU-s per 2,304 texts), all of it
    # taken from the forward passes being measured.
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for chunk in queue:
                started = time.perf_counter()
                async with session.post(url + PATH, json={"texts": chunk}) as response:
                    response.raise_for_status()
                    await response.read()
                per_text.append((time.perf_counter() - started) * 1000 / len(chunk))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
    return len(texts) / (time.perf_counter() - started), per_text


def raw_best(texts: list[str]) -> tuple[int, float]:
    encoder = load_encoder(InferenceConfig(device="cpu", backend="torch"))
    model = getattr(encoder, "model")  # noqa: B009
    best = (0, 0.0)
    for size in (8, 16, 32, 64):
        model.encode(texts[:64], batch_size=size, show_progress_bar=False)
        started = time.perf_counter()
        model.encode(texts, batch_size=size, show_progress_bar=False)
        rate = len(texts) / (time.perf_counter() - started)
        print(f"  raw encode batch_size={size}: {rate:.0f} texts/s")
        best = max(best, (size, rate), key=lambda pair: pair[1])
    return best


def int8_figures(texts: list[str]) -> tuple[float, float, float]:
    # Both in torch on its default threads: the speed-up is the quantization's alone.
    fp32 = load_encoder(InferenceConfig(device="cpu", backend="torch"))
    int8 = load_encoder(InferenceConfig(device="cpu", quantization="int8"))
    rates = []
    for encoder in (fp32, int8):
        encoder.encode(texts[:32])
        started = time.perf_counter()
        for start in range(0, len(texts), 32):
            encoder.encode(texts[start : start + 32])
        rates.append(len(texts) / (time.perf_counter() - started))
    a, b = fp32.encode(texts), int8.encode(texts)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return rates[1] / rates[0], float(cos.mean()), float(cos.min())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=768)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    texts = corpus(args.texts, 1)
    print("raw SentenceTransformer.encode:")
    size, raw = raw_best(texts)
    rows: list[tuple[str, float, str]] = [(f"raw encode (best batch_size={size})", raw, "1.00x")]
    with tempfile.TemporaryDirectory() as root:
        # Cache off, on the default backend and on torch (as before the ONNX backend).
        for label, backend in (("", "auto"), (", backend torch", "torch")):
            env = {"NEURONS_INFERENCE_CACHE_SIZE": "0", "NEURONS_INFERENCE_BACKEND": backend}
            plane, url = start_plane(Path(root) / backend, env)
            try:
                asyncio.run(load(url, corpus(128, 2), args.clients))  # warm
                rate, _ = asyncio.run(load(url, texts, args.clients))
                rows.append((f"endpoint, cache off{label}", rate, f"{rate / raw:.2f}x raw"))
            finally:
                plane.terminate()
                plane.wait(15)
        on, on_url = start_plane(Path(root) / "on", {})
        try:
            fresh = corpus(args.texts, 3)
            miss_rate, miss_ms = asyncio.run(load(on_url, fresh, args.clients))
            hit_rate, hit_ms = asyncio.run(load(on_url, fresh, args.clients))
            rows.append(("endpoint, cache on, misses", miss_rate, f"{miss_rate / raw:.2f}x raw"))
            rows.append(("endpoint, cache on, hits", hit_rate, f"{hit_rate / raw:.2f}x raw"))
        finally:
            on.terminate()
            on.wait(15)
    speedup, cos_mean, cos_min = int8_figures(texts[:256])
    print(f"\n{'path':<40} {'texts/s':>9}  ratio")
    for label, rate, ratio in rows:
        print(f"{label:<40} {rate:>9.0f}  {ratio}")
    hit, miss = statistics.median(hit_ms), statistics.median(miss_ms)
    print(
        f"\ncache: per-text latency p50 hit {hit:.2f} ms vs miss {miss:.2f} ms "
        f"({miss / hit:.1f}x faster; target >= 10x)"
    )
    print(
        f"int8 vs fp32 (in process, batches of 32): {speedup:.2f}x faster, cosine mean "
        f"{cos_mean:.4f}, min {cos_min:.4f}"
    )


if __name__ == "__main__":
    main()
