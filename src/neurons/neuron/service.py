"""The neuron's request lifecycle: queue slot → runner (load) → work in a thread → release.

Routes stay thin: they parse the body, call :class:`Neuron`, and shape Ollama's JSON.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from neurons.errors import InvalidRequestError
from neurons.neuron.engine import Engine, GenerationResult, Runner, TokenEvent
from neurons.neuron.modelstore import ModelStore, StoredModel
from neurons.neuron.options import SamplingOptions, resolve_options
from neurons.neuron.prompt import PromptInput, PromptTemplate
from neurons.neuron.scheduler import FairScheduler
from neurons.neuron.slots import SlotRequest
from neurons.ollama.capabilities import model_capabilities
from neurons.ollama.durations import parse_keep_alive
from neurons.ollama.ggufmeta import read_gguf_info
from neurons.ollama.replies import ReplyParser
from neurons.ollama.tools import tool_names

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
    capabilities: list[str]


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
        capabilities = model_capabilities(
            go_template=model.template, chat_template=info.chat_template, info=info
        )
        return Prepared(model, sampling, load, keep_alive, started, capabilities)

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
        prompt: PromptInput | None,
        raw_prompt: str | None,
        context: list[int] | None,
        fmt: Any,
        top_logprobs: int | None,
        template: str | None = None,
    ) -> AsyncGenerator[TokenEvent | GenerationResult | int, None]:
        """Yields the load duration (int, first), then token events, then the result. With
        thinking on or tools given, each event's text is split into thinking, tool calls
        and content as Ollama splits it; events with nothing in them are not sent."""
        async with self.scheduler.slot():
            runner, load_ns = await self.load(prepared)
            try:
                yield load_ns
                text, tokens = await self._in_thread(
                    lambda: self._prompt_tokens(runner, prompt, raw_prompt, context, template)
                )
                reply = self._reply_parser(runner, prompt, text, template)
                stream = self._stream(runner, prepared, tokens, fmt, top_logprobs)
                try:
                    async for event in stream:
                        if reply is None:
                            yield event
                        elif isinstance(event, GenerationResult):
                            last = reply.finish()
                            if last:
                                yield TokenEvent(last.content)
                            yield event
                        else:
                            piece = reply.add(event.text)
                            split = TokenEvent(
                                piece.content, event.logprobs, piece.thinking, piece.tool_calls
                            )
                            if split:
                                yield split
                finally:
                    # Closed here, not left to the garbage collector: a client that went away
                    # must have its slot cancelled before the runner and queue slot go back.
                    await stream.aclose()
            finally:
                self.release(runner, prepared)

    @staticmethod
    def _prompt_tokens(
        runner: Runner,
        prompt: PromptInput | None,
        raw_prompt: str | None,
        context: list[int] | None,
        template: str | None,
    ) -> tuple[str, list[int]]:
        vocab = runner.vocab
        if raw_prompt is not None:
            text = raw_prompt
        else:
            text = _renderer(runner, template).render(prompt or PromptInput([]))
        return text, list(context or []) + vocab.tokenize(text, add_bos=not context)

    @staticmethod
    def _reply_parser(
        runner: Runner, prompt: PromptInput | None, text: str, template: str | None
    ) -> ReplyParser | None:
        """Thinking is split out when it is on and the template shows its tags; tool calls
        when the request gave tools (Ollama's rules)."""
        if prompt is None or not (prompt.thinking_on or prompt.tools):
            return None
        renderer = _renderer(runner, template)
        return ReplyParser(
            thinking=renderer.thinking_tags() if prompt.thinking_on else None,
            prompt=text,
            tool_tag=renderer.tool_call_tag(),
            tool_names=tool_names(prompt.tools),
        )

    async def _stream(
        self,
        runner: Runner,
        prepared: Prepared,
        tokens: list[int],
        fmt: Any,
        top_logprobs: int | None,
    ) -> AsyncGenerator[TokenEvent | GenerationResult, None]:
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


def _renderer(runner: Runner, template: str | None) -> PromptTemplate:
    """The model's template, or the request's ``template`` override."""
    if template:
        return PromptTemplate(template, None, runner.vocab.bos_text)
    return runner.template


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
