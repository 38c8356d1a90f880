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
from neurons.neuron.engine import Engine, GenerationResult, Runner, TokenEvent
from neurons.neuron.modelstore import ModelStore, StoredModel
from neurons.neuron.options import SamplingOptions, resolve_options
from neurons.neuron.prompt import ChatMessage, PromptTemplate
from neurons.neuron.scheduler import FairScheduler
from neurons.neuron.slots import SlotRequest
from neurons.ollama.durations import parse_keep_alive
from neurons.ollama.ggufmeta import read_gguf_info

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
        # Tokenizing, template rendering and handing work to the llama thread. llama.cpp's
        # decoding runs on the engine's one llama thread (neurons.neuron.slots), never here:
        # every new calling thread gets its own OpenMP team, and idle teams spin (hopping
        # between pool threads once cut decode speed to a third, and a second model's idle
        # team cost a running stream 10%).
        self.executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="neuron")
        # Loads, unloads and the reaper: a load may wait for the requests of a runner it
        # replaces, so it gets threads of its own (one per admitted request, and spares),
        # never the ones those requests need to finish.
        self.loader = ThreadPoolExecutor(
            max_workers=scheduler.slots + 2, thread_name_prefix="neuron-load"
        )

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

    async def in_loader(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.loader, fn)

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.loader.shutdown(wait=True, cancel_futures=True)
        self.engine.close()

    async def load(self, prepared: Prepared, embedding: bool = False) -> tuple[Runner, int]:
        """Queue, then load; returns the active runner and the load duration in ns."""
        t0 = time.perf_counter_ns()
        runner = await self.in_loader(
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
                await self.in_loader(lambda: self.engine.unload_model(digest))
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
            try:
                yield load_ns
                tokens = await self._in_thread(
                    lambda: self._prompt_tokens(runner, messages, raw_prompt, context, template)
                )
                async for event in self._stream(runner, prepared, tokens, fmt, top_logprobs):
                    yield event
            finally:
                self.release(runner, prepared)

    @staticmethod
    def _prompt_tokens(
        runner: Runner,
        messages: list[ChatMessage] | None,
        raw_prompt: str | None,
        context: list[int] | None,
        template: str | None,
    ) -> list[int]:
        vocab = runner.vocab
        if raw_prompt is not None:
            text = raw_prompt
        else:
            renderer = runner.template
            if template:
                renderer = PromptTemplate(template, None, vocab.bos_text)
            text = renderer.render(messages or [])
        return list(context or []) + vocab.tokenize(text, add_bos=not context)

    async def _stream(
        self,
        runner: Runner,
        prepared: Prepared,
        tokens: list[int],
        fmt: Any,
        top_logprobs: int | None,
    ) -> AsyncIterator[TokenEvent | GenerationResult]:
        """Hand the prompt to the model's decode loop and yield what it sends back. Leaving
        early (the client went away) cancels the request: its slot is free at the next step,
        and this returns once the loop has let go of it."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[TokenEvent | GenerationResult | BaseException] = asyncio.Queue()
        cancel = threading.Event()

        def sink(item: TokenEvent | GenerationResult | BaseException) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        started = asyncio.ensure_future(
            self._in_thread(
                lambda: self.engine.start_generation(
                    runner, tokens, prepared.sampling, sink, cancel, fmt, top_logprobs
                )
            )
        )
        finished = False
        try:
            await asyncio.shield(started)
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                yield item
                if isinstance(item, GenerationResult):
                    finished = True
                    return
        finally:
            if not finished:
                cancel.set()
                # The slot must be let go before the runner may be released and unloaded.
                await asyncio.shield(_let_go(started, queue))

    async def embed(
        self, prepared: Prepared, texts: list[str], truncate: bool
    ) -> tuple[list[list[float]], int, int]:
        async with self.scheduler.slot():
            runner, load_ns = await self.load(prepared, embedding=True)
            try:
                future, count = await self._in_thread(
                    lambda: self.engine.embed(runner, texts, truncate)
                )
                vectors = await asyncio.wrap_future(future)
            finally:
                self.release(runner, prepared)
            return vectors, count, load_ns


async def _let_go(
    started: asyncio.Future[SlotRequest | None],
    queue: asyncio.Queue[TokenEvent | GenerationResult | BaseException],
) -> None:
    """Wait until a cancelled generation is over: its final item has come."""
    try:
        request = await started
    except Exception:  # it never started: nothing holds a slot
        return
    if request is None:
        return
    while not isinstance(await queue.get(), GenerationResult | BaseException):
        pass
