"""The neuron's request lifecycle: queue slot → runner (load) → work in a thread → release.

Routes stay thin: they parse the body, call :class:`Neuron`, and shape Ollama's JSON.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from neurons.errors import InvalidRequestError
from neurons.neuron.durations import parse_keep_alive
from neurons.neuron.engine import Engine, GenerationResult, Runner, TokenEvent
from neurons.neuron.ggufmeta import read_gguf_info
from neurons.neuron.modelstore import ModelStore, StoredModel
from neurons.neuron.options import SamplingOptions, resolve_options
from neurons.neuron.prompt import ChatMessage, PromptTemplate
from neurons.neuron.scheduler import FairScheduler

__all__ = ["Neuron", "Prepared"]

T = TypeVar("T")
_UNSET: Any = ...


@dataclass
class Prepared:
    """A request with its model resolved and options validated, not yet queued."""

    model: StoredModel
    sampling: SamplingOptions
    runner_options: Any
    keep_alive: Any  # seconds, None (forever) or _UNSET (keep the runner's session value)
    started_ns: int


class Neuron:
    def __init__(self, store: ModelStore, engine: Engine, scheduler: FairScheduler) -> None:
        self.store = store
        self.engine = engine
        self.scheduler = scheduler
        # llama.cpp runs on a fixed set of threads (one per slot). Each new calling thread
        # gets its own OpenMP team, and idle teams spin: hopping between pool threads cut
        # decode speed to a third in benchmarks/neuron_throughput.py.
        self.executor = ThreadPoolExecutor(max_workers=scheduler.slots, thread_name_prefix="llama")

    def prepare(self, body: dict[str, Any]) -> Prepared:
        started = time.perf_counter_ns()
        model = self.store.load(str(body["model"]))
        if model.model_path is None:
            raise InvalidRequestError(f'"{model.name.display}" does not support generate')
        info = read_gguf_info(model.model_path)
        options = body.get("options")
        if options is not None and not isinstance(options, dict):
            raise InvalidRequestError("options must be an object")
        load, sampling = resolve_options(model.params, options, info.context_length)
        keep_alive = (
            _UNSET if body.get("keep_alive") is None else parse_keep_alive(body["keep_alive"])
        )
        return Prepared(model, sampling, load, keep_alive, started)

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn)

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.engine.close()

    async def load(self, prepared: Prepared, embedding: bool = False) -> tuple[Runner, int]:
        """Queue, then load; returns the active runner and the load duration in ns."""
        t0 = time.perf_counter_ns()
        runner = await self._in_thread(
            lambda: self.engine.acquire(prepared.model, prepared.runner_options, embedding)
        )
        return runner, time.perf_counter_ns() - t0

    def release(self, runner: Runner, prepared: Prepared) -> None:
        if prepared.keep_alive is _UNSET:
            self.engine.release(runner)
        else:
            self.engine.release(runner, prepared.keep_alive)

    async def load_only(self, prepared: Prepared, embedding: bool = False) -> int:
        """Empty prompt: load (or, with keep_alive 0, unload) the model."""
        async with self.scheduler.slot():
            if prepared.keep_alive == 0:
                digest = prepared.model.manifest_digest
                await self._in_thread(lambda: self.engine.unload_model(digest))
                return 0
            runner, load_ns = await self.load(prepared, embedding)
            self.release(runner, prepared)
            return load_ns

    async def generate(
        self,
        prepared: Prepared,
        messages: list[ChatMessage] | None,
        raw_prompt: str | None,
        context: list[int] | None,
        fmt: Any,
        top_logprobs: int | None,
        template: str | None = None,
    ) -> AsyncGenerator[TokenEvent | GenerationResult | int, None]:
        """Yields the load duration (int, first), then token events, then the result."""
        async with self.scheduler.slot():
            runner, load_ns = await self.load(prepared)
            cancel = threading.Event()
            try:
                yield load_ns
                if raw_prompt is not None:
                    tokens = list(context or []) + runner.llm.tokenize(
                        raw_prompt, add_bos=not context
                    )
                else:
                    renderer = runner.template
                    if template:
                        renderer = PromptTemplate(template, None, runner.llm.bos_text)
                    text = renderer.render(messages or [])
                    tokens = list(context or []) + runner.llm.tokenize(text, add_bos=not context)
                async for event in self._pump(
                    lambda: self.engine.generate(
                        runner, tokens, prepared.sampling, cancel, fmt, top_logprobs
                    ),
                    cancel,
                ):
                    yield event
            finally:
                cancel.set()
                self.release(runner, prepared)

    async def _pump(
        self,
        make: Callable[[], Any],
        cancel: threading.Event,
    ) -> AsyncIterator[Any]:
        """Run a blocking generator in a thread and yield its items on the event loop."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        def work() -> None:
            try:
                for item in make():
                    loop.call_soon_threadsafe(queue.put_nowait, ("item", item))
                    if cancel.is_set():
                        break
            except BaseException as exc:  # handed to the event loop, re-raised there
                loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, ("end", None))

        worker = loop.run_in_executor(self.executor, work)
        try:
            while True:
                kind, value = await queue.get()
                if kind == "item":
                    yield value
                elif kind == "error":
                    raise value
                else:
                    break
        finally:
            cancel.set()
            # The runner must be idle before its slot and lock are handed on.
            await asyncio.shield(worker)

    async def embed(
        self, prepared: Prepared, texts: list[str], truncate: bool
    ) -> tuple[list[list[float]], int, int]:
        async with self.scheduler.slot():
            runner, load_ns = await self.load(prepared, embedding=True)
            try:
                vectors, count = await self._in_thread(
                    lambda: self.engine.embed(runner, texts, truncate)
                )
            finally:
                self.release(runner, prepared)
            return vectors, count, load_ns
