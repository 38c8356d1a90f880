"""Decode throughput: the embedded neuron over HTTP vs raw llama-cpp-python in-process.

Same GGUF (smollm2:135m), same prompt tokens, same options (greedy, num_ctx 4096, num_batch
512, same thread count), measured in one run, alternating A/B so drift hits both sides.

Decode tokens/s on both sides = (tokens after the first) / (time from first to last token),
taken where the tokens arrive: the HTTP client reading the NDJSON stream, or the Python loop
around ``Llama.generate``. The neuron's own eval_count/eval_duration is printed too.

    .venv/bin/python benchmarks/neuron_throughput.py [--tokens 256] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from neurons.config import Settings
from neurons.neuron.defaults import _smollm2_path
from neurons.neuron.llama import configure_llama_cpp
from neurons.neuron.options import default_threads
from neurons.neuron.process import NeuronProcess

PROMPT = "Write a long, detailed story about a lighthouse keeper and a storm."


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rate(stamps: list[float]) -> float:
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0


def run_http(url: str, tokens: int, threads: int) -> tuple[float, float, int]:
    body = {
        "model": "smollm2:135m",
        "messages": [{"role": "user", "content": PROMPT}],
        "options": {
            "temperature": 0, "seed": 1, "num_predict": tokens, "num_ctx": 4096,
            "num_batch": 512, "num_thread": threads, "top_k": 40, "top_p": 0.9,
        },
    }  # fmt: skip
    stamps: list[float] = []
    final: dict[str, int] = {}
    with httpx.stream("POST", url + "/api/chat", json=body, timeout=300) as response:
        for line in response.iter_lines():
            chunk = json.loads(line)
            if chunk["done"]:
                final = chunk
            elif chunk["message"]["content"]:
                stamps.append(time.perf_counter())
    reported = final["eval_count"] / final["eval_duration"] * 1e9
    return rate(stamps), reported, final["eval_count"]


def run_raw(model: Any, prompt_tokens: list[int], tokens: int) -> tuple[float, int]:
    """llama-cpp-python's own ``Llama.generate`` loop, one sequence."""
    stamps: list[float] = []
    model.set_seed(1)
    stream = model.generate(
        prompt_tokens, top_k=40, top_p=0.9, min_p=0.0, typical_p=1.0, temp=0.0,
        repeat_penalty=1.0, reset=True,
    )  # fmt: skip
    eos = model.token_eos()
    for token in stream:
        if token == eos:
            break
        model.detokenize([token])  # detokenise, as any real consumer must
        stamps.append(time.perf_counter())
        if len(stamps) >= tokens:
            break
    stream.close()
    return rate(stamps), len(stamps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    threads = default_threads()
    gguf = _smollm2_path(Path("."))

    with tempfile.TemporaryDirectory() as home:
        neuron = NeuronProcess(Path(home) / "home", port=free_port()).start()
        try:
            # Warm the neuron (load + prompt cache) and get the exact prompt it renders.
            run_http(neuron.url, 8, threads)
            llama_cpp = configure_llama_cpp(Settings().llama_extra_buffers)
            raw = llama_cpp.Llama(
                str(gguf), n_ctx=4096, n_batch=512, n_threads=threads, n_threads_batch=threads,
                verbose=False,
            )  # fmt: skip
            from neurons.neuron.prompt import ChatMessage, PromptTemplate
            from neurons.ollama.ggufmeta import read_gguf_info

            template = PromptTemplate(None, read_gguf_info(gguf).chat_template)
            text = template.render([ChatMessage("user", PROMPT)])
            prompt_tokens = raw.tokenize(text.encode(), add_bos=True, special=True)
            run_raw(raw, prompt_tokens, 8)

            http_rates, reported_rates, raw_rates = [], [], []
            for i in range(args.rounds):
                h, reported, n_http = run_http(neuron.url, args.tokens, threads)
                r, n_raw = run_raw(raw, prompt_tokens, args.tokens)
                http_rates.append(h)
                reported_rates.append(reported)
                raw_rates.append(r)
                print(
                    f"round {i + 1}: neuron/http {h:7.1f} tok/s ({n_http} tok, self-reported "
                    f"{reported:.1f})   raw llama-cpp-python {r:7.1f} tok/s ({n_raw} tok)"
                )
            raw.close()
        finally:
            neuron.stop()

    http_med = statistics.median(http_rates)
    raw_med = statistics.median(raw_rates)
    print()
    print(f"threads={threads} tokens={args.tokens} rounds={args.rounds} model=smollm2:135m")
    print(f"embedded neuron over HTTP : {http_med:7.1f} tok/s (median)")
    print(f"  neuron self-reported    : {statistics.median(reported_rates):7.1f} tok/s (median)")
    print(f"raw llama-cpp-python      : {raw_med:7.1f} tok/s (median)")
    print(f"ratio neuron/raw          : {http_med / raw_med:7.3f}   (target >= 0.95)")


if __name__ == "__main__":
    main()
