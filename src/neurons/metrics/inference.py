"""What the gateway saw of each inference, recorded once when its answer ends: the Prometheus
counters and histograms (vLLM's and llama.cpp's names, ``neurons:`` prefixed), seed 001's
:class:`~neurons.metrics.models.ModelMetrics`, and the live window.

The gateway hands over the facts it already has (node, model, API path, status, when the
request arrived, when the node's first byte came, and the last bytes of the answer); the token
counts and the node's own timings are read from those last bytes with a few regular
expressions, because Ollama puts them in the final object (``prompt_eval_count``,
``eval_count``, ``eval_duration``...) and parsing a whole answer as JSON would cost more than
the rest of the recording together (``benchmarks/gateway_overhead.py`` measures it).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

from neurons.metrics.models import ModelMetricsBook
from neurons.metrics.window import RecentWindow

__all__ = ["FINAL_BYTES", "Finished", "InferenceRecorder", "NodeTimings", "node_timings"]

# The final object's counters sit at its end, after a generation's ``context``: this much of
# an answer's tail holds them.
FINAL_BYTES = 2048
# One pass over the tail for the four fields (a pattern each cost four passes).
_FIELDS = re.compile(
    rb'"(prompt_eval_count|eval_count|eval_duration|prompt_eval_duration)":\s*(\d+)'
)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80)
TPOT_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5)


@dataclass(frozen=True)
class NodeTimings:
    """The counts and durations a node reported in its final object (0: not reported)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    eval_s: float = 0.0
    prompt_eval_s: float = 0.0


def node_timings(tail: bytes) -> NodeTimings:
    """Read the final object's fields from the last bytes of an answer.

    >>> node_timings(b'{"done":true,"prompt_eval_count":7,"eval_count":3,"eval_duration":60000000}')
    NodeTimings(prompt_tokens=7, completion_tokens=3, eval_s=0.06, prompt_eval_s=0.0)
    """
    # Later matches win: a tail of two chunks could hold an earlier line's object too.
    found = {name.decode(): int(number) for name, number in _FIELDS.findall(tail)}
    return NodeTimings(
        prompt_tokens=found.get("prompt_eval_count", 0),
        completion_tokens=found.get("eval_count", 0),
        eval_s=found.get("eval_duration", 0) / 1e9,
        prompt_eval_s=found.get("prompt_eval_duration", 0) / 1e9,
    )


@dataclass(frozen=True)
class Finished:
    """One answer the gateway relayed, as it ended."""

    node: str
    model: str
    route: str  # the Ollama API path the node served (/api/chat for an OpenAI chat too)
    status: int
    started: float  # perf_counter at the request's arrival
    ended: float  # perf_counter when the answer ended
    first_byte: float | None = None  # perf_counter of a stream's first chunk
    tail: bytes = b""
    cut: bool = False  # a stream that broke after its status line went out

    @property
    def error(self) -> bool:
        """The node's fault: a 5xx, or a stream cut short (a 4xx is the client's)."""
        return self.cut or self.status >= 500


class InferenceRecorder:
    """Records finished answers and failed attempts into the registry, the model book and the
    window. Called on the event loop only."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.clock = clock
        self.book = ModelMetricsBook()
        self.window = RecentWindow()
        self.requests = Counter(
            "neurons:inference_requests",
            "Answers the gateway relayed, by node, model, Ollama API path and status "
            "('cut' for a stream that broke after its status line).",
            ["node", "model", "route", "status"],
            registry=registry,
        )
        self.ttft = Histogram(
            "neurons:time_to_first_token_seconds",
            "From a request's arrival to its first token: a stream's first chunk, or the "
            "whole answer less the node's generation time.",
            ["model"],
            buckets=TTFT_BUCKETS,
            registry=registry,
        )
        self.tpot = Histogram(
            "neurons:time_per_output_token_seconds",
            "The node's generation time over the tokens it generated, per answer.",
            ["model"],
            buckets=TPOT_BUCKETS,
            registry=registry,
        )
        self.prompt_tokens = Counter(
            "neurons:prompt_tokens",
            "Prompt tokens the nodes evaluated (as each reported).",
            ["node", "model"],
            registry=registry,
        )
        self.generation_tokens = Counter(
            "neurons:generation_tokens",
            "Tokens the nodes generated (as each reported).",
            ["node", "model"],
            registry=registry,
        )
        self.retries = Counter(
            "neurons:gateway_retries",
            "Attempts that failed before any byte reached the client and moved the request "
            "to another node (or ended it), by the node that failed.",
            ["node", "route"],
            registry=registry,
        )

    def attempt_failed(self, node: str, model: str, route: str, *, counted: bool) -> None:
        """An attempt on ``node`` failed before anything reached the client. ``counted``: it
        was the node's fault (refused, cut, 5xx), so the model book counts an error; a 404
        from a stale inventory is a retry but no inference."""
        self.retries.labels(node, route).inc()
        if counted:
            now = self.clock()
            self.book.of(model, node).record(now, None, error=True)
            self.window.add(now, None, error=True, tokens=0)

    def finished(self, answer: Finished) -> None:
        status = "cut" if answer.cut else str(answer.status)
        self.requests.labels(answer.node, answer.model, answer.route, status).inc()
        if 400 <= answer.status < 500:
            return  # the client's error: no inference happened
        now = self.clock()
        latency = answer.ended - answer.started
        if answer.error:
            self.book.of(answer.model, answer.node).record(now, None, error=True)
            self.window.add(now, None, error=True, tokens=0)
            return
        timings = node_timings(answer.tail[-FINAL_BYTES:])
        if timings.prompt_tokens:
            self.prompt_tokens.labels(answer.node, answer.model).inc(timings.prompt_tokens)
        if timings.completion_tokens:
            self.generation_tokens.labels(answer.node, answer.model).inc(timings.completion_tokens)
            if timings.eval_s > 0:
                self.tpot.labels(answer.model).observe(timings.eval_s / timings.completion_tokens)
            if answer.first_byte is not None:
                self.ttft.labels(answer.model).observe(answer.first_byte - answer.started)
            elif timings.eval_s > 0:
                self.ttft.labels(answer.model).observe(max(0.0, latency - timings.eval_s))
        self.book.of(answer.model, answer.node).record(
            now,
            latency,
            error=False,
            prompt_tokens=timings.prompt_tokens,
            completion_tokens=timings.completion_tokens,
            eval_s=timings.eval_s,
        )
        self.window.add(now, latency, error=False, tokens=timings.completion_tokens)
