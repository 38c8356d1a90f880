"""The neuron's ``/metrics``: the counters ``/api/neuron/status`` reports, in Prometheus text.

Names follow llama.cpp's server (``prompt_tokens_total``, ``tokens_predicted_total``,
``requests_processing``, ``requests_deferred``) under a ``neurons:`` prefix. The collector
reads the scheduler and the engine at scrape time, so nothing is counted twice and no number
is made up. Each app has a registry of its own: tests run several neurons in one process.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from neurons.neuron.service import Neuron

__all__ = ["NeuronCollector", "neuron_registry"]


class NeuronCollector(Collector):
    def __init__(self, neuron: Neuron, slots: int) -> None:
        self.neuron = neuron
        self.slots = slots

    def collect(self) -> Iterator[Metric]:
        scheduler = self.neuron.scheduler
        engine = self.neuron.engine
        runners: list[dict[str, Any]] = [r.status() for r in list(engine.runners.values())]
        decoders = [r for r in runners if "steps" in r]  # embedding runners have no slots

        yield CounterMetricFamily(
            "neurons:tokens_predicted",
            "Tokens generated since the neuron started.",
            value=engine.tokens_generated,
        )
        yield _gauge("neurons:requests_processing", "Requests holding a slot.", scheduler.running)
        yield _gauge("neurons:requests_deferred", "Requests queued for a slot.", scheduler.waiting)
        yield _gauge("neurons:slots_total", "Requests the neuron runs at once.", self.slots)
        yield _gauge(
            "neurons:slots_busy",
            "Decode slots with a request, all loaded models together.",
            sum(r["slots_busy"] for r in decoders),
        )
        yield _gauge("neurons:models_loaded", "Models in memory.", len(runners))
        # The per-model counters live in a model's decode loop: they start again at zero when
        # the model is reloaded, which Prometheus' rate() reads as a counter reset.
        per_model = (
            (
                "neurons:prompt_tokens",
                "Prompt tokens evaluated since the model loaded.",
                "prompt_tokens_evaluated",
            ),
            (
                "neurons:prompt_tokens_reused",
                "Prompt tokens taken from the prompt cache.",
                "prompt_tokens_reused",
            ),
            ("neurons:decode_steps", "Batched decode steps since the model loaded.", "steps"),
        )
        for name, help_text, key in per_model:
            counter = CounterMetricFamily(name, help_text, labels=["model"])
            for runner in decoders:
                counter.add_metric([runner["name"]], runner[key])
            yield counter
        busy = GaugeMetricFamily(
            "neurons:model_slots_busy", "Decode slots with a request, per model.", labels=["model"]
        )
        for runner in decoders:
            busy.add_metric([runner["name"]], runner["slots_busy"])
        yield busy


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, value=value)


def neuron_registry(neuron: Neuron, slots: int) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NeuronCollector(neuron, slots))
    return registry
