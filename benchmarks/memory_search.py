"""Language memory: recall@1 on the paraphrase pairs, and search latency by namespace size.

**Recall**: the pairs of ``tests/memory/paraphrases.py`` (one side stored, the other the
query), through :class:`~neurons.memory.MemoryService` with the control plane's own embedding
model (all-MiniLM-L6-v2, :class:`~neurons.system.inference.LocalInference`). Target (issue
22): recall@1 >= 0.9.

**Latency**: one namespace of N entries (N = ``--sizes``) in a real SQLite file, then
``--queries`` searches of k=5, each with a query never embedded before (so the model's cache
does not answer it). The stored vectors are random unit vectors inserted through the
repository: a search's cost does not depend on what they say, and embedding 50,000 texts
would take minutes on a CPU. Prints p50/p95 of the whole search (embedding the query, reading
the namespace's matrix, the product, reading the k entries) and of the query's embedding
alone, which the rest is measured against.

    python benchmarks/memory_search.py [--sizes 1000 10000 50000] [--queries 50]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.memory.paraphrases

from tests.memory.paraphrases import PAIRS  # noqa: E402

from neurons.config import Settings  # noqa: E402
from neurons.memory import MemoryService, ModelEmbeddings  # noqa: E402
from neurons.store import open_store  # noqa: E402
from neurons.system.inference import LocalInference, inference_config  # noqa: E402


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


async def run(sizes: list[int], queries: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp), ollama_base_url="", import_default_models=False)
        local = LocalInference(inference_config(settings))
        await local.ready()
        embeddings = ModelEmbeddings(local)
        store = open_store(settings.resolved_database_url)
        try:
            service = MemoryService(store, embeddings)
            ids = {s: (await service.add("pairs", s))[0].id for s, _ in PAIRS}
            found = 0
            for stored, query in PAIRS:
                hits = await service.search("pairs", query, 1)
                found += bool(hits) and hits[0].entry.id == ids[stored]
            print(f"recall@1: {found / len(PAIRS):.3f} ({found}/{len(PAIRS)} pairs)")

            probe = await embeddings.embed(["probe"])
            rng = np.random.default_rng(22)
            have = 0
            print(f"{'entries':>8} {'search p50':>11} {'p95':>8} {'embed p50':>10} (ms, k=5)")
            for size in sorted(sizes):
                batch = rng.standard_normal((size - have, probe.matrix.shape[1]))
                batch /= np.linalg.norm(batch, axis=1, keepdims=True)
                for row in batch:
                    service.repository.add("bench", "x", {}, row, probe.model, probe.digest)
                have = size
                whole, embed = [], []
                for i in range(queries):
                    t0 = time.perf_counter()
                    await embeddings.embed([f"embedding alone {size} {i}"])
                    embed.append((time.perf_counter() - t0) * 1000)
                    t0 = time.perf_counter()
                    await service.search("bench", f"a query never seen {size} {i}", 5)
                    whole.append((time.perf_counter() - t0) * 1000)
                print(
                    f"{size:>8} {statistics.median(whole):>11.1f} {pct(whole, 95):>8.1f} "
                    f"{statistics.median(embed):>10.1f}"
                )
        finally:
            store.close()
            await local.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(run(args.sizes, args.queries))


if __name__ == "__main__":
    main()
