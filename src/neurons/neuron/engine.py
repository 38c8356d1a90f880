"""Runners (loaded models), keep-alive, and token generation for the embedded neuron.

Threading: llama.cpp work runs in worker threads so the event loop keeps streaming; every
runner has a lock because one llama.cpp context serves one request at a time. Fairness and
the 503 bound live in :class:`~neurons.neuron.scheduler.FairScheduler`, in front of this.
"""

from __future__ import annotations

import codecs
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from neurons.errors import EngineError, InvalidRequestError
from neurons.neuron.ggufmeta import GGUFInfo, read_gguf_info
from neurons.neuron.llama import LlamaModel
from neurons.neuron.modelstore import ModelStore, StoredModel
from neurons.neuron.options import LoadOptions, SamplingOptions
from neurons.neuron.prompt import PromptTemplate

__all__ = ["Engine", "GenerationResult", "Runner", "TokenEvent"]

log = logging.getLogger(__name__)


@dataclass
class Runner:
    """A model loaded into llama.cpp, with its keep-alive bookkeeping."""

    model: StoredModel
    info: GGUFInfo
    load: LoadOptions
    embedding: bool
    llm: LlamaModel
    template: PromptTemplate
    size_bytes: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    active: int = 0
    keep_alive: float | None = 300.0  # seconds; None = forever
    expires_at: float | None = None  # monotonic deadline once idle
    last_used: float = field(default_factory=time.monotonic)

    @property
    def key(self) -> tuple[str, bool]:
        return (self.model.manifest_digest, self.embedding)

    def expires_at_wall(self) -> datetime:
        """When the model unloads: keep_alive after the running request, or the idle deadline."""
        if self.keep_alive is None:
            return datetime.now(UTC) + timedelta(days=365 * 100)
        if self.active or self.expires_at is None:
            remaining = self.keep_alive
        else:
            remaining = max(0.0, self.expires_at - time.monotonic())
        return datetime.now(UTC) + timedelta(seconds=remaining)


@dataclass
class TokenEvent:
    text: str
    logprobs: list[dict[str, Any]] | None = None


@dataclass
class GenerationResult:
    done_reason: str
    prompt_eval_count: int
    prompt_eval_duration: int
    eval_count: int
    eval_duration: int
    context: list[int]


class Engine:
    def __init__(
        self, store: ModelStore, max_loaded: int = 3, default_keep_alive: float | None = 300.0
    ):
        self.store = store
        self.max_loaded = max_loaded
        self.default_keep_alive = default_keep_alive
        self.runners: dict[tuple[str, bool], Runner] = {}
        self._lock = threading.Lock()
        self.tokens_generated = 0  # lifetime counter, exposed for monitoring and tests

    # -- loading -----------------------------------------------------------------------------

    def acquire(self, model: StoredModel, load: LoadOptions, embedding: bool) -> Runner:
        """Return a runner for the model (loading or reloading it), marked active.
        Call :meth:`release` when done."""
        if model.model_path is None:
            raise InvalidRequestError(f'"{model.name.display}" does not support generate')
        key = (model.manifest_digest, embedding)
        with self._lock:
            runner = self.runners.get(key)
            if runner is not None and runner.load == load:
                runner.active += 1
                return runner
            if runner is not None:
                self._drop(key)
            self._evict_for_space()
        info = read_gguf_info(model.model_path)
        adapter = model.adapter_paths[0] if model.adapter_paths else None
        llm = LlamaModel(
            model.model_path,
            n_ctx=load.num_ctx,
            n_batch=load.num_ctx if embedding else load.num_batch,
            n_threads=load.num_thread,
            use_mmap=load.use_mmap,
            embedding=embedding,
            lora_path=adapter,
        )
        template = PromptTemplate(
            model.template, info.chat_template, bos_token=llm.bos_text, eos_token=llm.eos_text
        )
        runner = Runner(
            model=model,
            info=info,
            load=load,
            embedding=embedding,
            llm=llm,
            template=template,
            size_bytes=info.file_size + _kv_cache_bytes(info, load.num_ctx),
            keep_alive=self.default_keep_alive,
        )
        runner.active = 1
        with self._lock:
            self.runners[key] = runner
        return runner

    def release(self, runner: Runner, keep_alive: float | None | object = ...) -> None:
        """Mark a request finished. ``keep_alive`` (seconds, or None for forever) replaces the
        session value of every runner of the model: to the user a model is loaded or not,
        whether it has a generation runner, an embedding runner, or both."""
        with self._lock:
            runner.active -= 1
            runner.last_used = time.monotonic()
            siblings = [r for r in self.runners.values() if r.key[0] == runner.key[0]]
            if runner not in siblings:
                siblings.append(runner)
            for each in siblings:
                if keep_alive is not ...:
                    each.keep_alive = keep_alive  # type: ignore[assignment]
                if each.active == 0:
                    each.expires_at = (
                        None if each.keep_alive is None else time.monotonic() + each.keep_alive
                    )
                    if each.keep_alive == 0:
                        self._drop(each.key)

    def unload_model(self, manifest_digest: str) -> int:
        """Unload every idle runner of a model; busy ones unload when they finish."""
        dropped = 0
        with self._lock:
            for key, runner in list(self.runners.items()):
                if key[0] == manifest_digest:
                    runner.keep_alive = 0
                    if runner.active == 0:
                        self._drop(key)
                        dropped += 1
        return dropped

    def reap(self) -> None:
        now = time.monotonic()
        with self._lock:
            for key, runner in list(self.runners.items()):
                if (
                    runner.active == 0
                    and runner.expires_at is not None
                    and runner.expires_at <= now
                ):
                    self._drop(key)

    def close(self) -> None:
        with self._lock:
            for key in list(self.runners):
                self._drop(key)

    def _drop(self, key: tuple[str, bool]) -> None:
        runner = self.runners.pop(key, None)
        if runner is not None:
            log.info("unloading %s", runner.model.name.display)
            with runner.lock:
                runner.llm.close()

    def _evict_for_space(self) -> None:
        while len(self.runners) >= self.max_loaded:
            idle = [r for r in self.runners.values() if r.active == 0]
            if not idle:
                return  # every runner is busy; exceed the bound rather than fail
            victim = min(idle, key=lambda r: r.last_used)
            self._drop(victim.key)

    # -- generation --------------------------------------------------------------------------

    def fit_prompt(self, runner: Runner, tokens: list[int], num_keep: int) -> list[int]:
        """Ollama's truncation: keep the first ``num_keep`` tokens and the newest rest."""
        limit = runner.load.num_ctx - 1
        if len(tokens) <= limit:
            return tokens
        keep = max(0, min(num_keep, limit // 2))
        return tokens[:keep] + tokens[len(tokens) - (limit - keep) :]

    def generate(
        self,
        runner: Runner,
        tokens: list[int],
        sampling: SamplingOptions,
        cancel: threading.Event,
        fmt: Any = None,
        top_logprobs: int | None = None,
    ) -> Iterator[TokenEvent | GenerationResult]:
        """Yield text pieces, then one :class:`GenerationResult`. Runs in a worker thread."""
        llm = runner.llm
        with runner.lock:
            grammar = llm.make_grammar(fmt) if fmt else None
            tokens = self.fit_prompt(runner, tokens, sampling.num_keep)
            room = runner.load.num_ctx - len(tokens)
            limit = room if sampling.num_predict < 0 else min(sampling.num_predict, room)
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            stops = sampling.stop
            pending = ""
            pending_logprobs: list[dict[str, Any]] = []
            generated: list[int] = []
            done_reason = "length"
            start = time.perf_counter_ns()
            first_token_at = start
            if limit <= 0:
                yield GenerationResult("length", len(tokens), 0, 0, 0, tokens)
                return
            stream = llm.generate(
                tokens,
                seed=sampling.seed,
                top_k=sampling.top_k,
                top_p=sampling.top_p,
                min_p=sampling.min_p,
                typical_p=sampling.typical_p,
                temperature=sampling.temperature,
                repeat_penalty=sampling.repeat_penalty,
                repeat_last_n=sampling.repeat_last_n,
                presence_penalty=sampling.presence_penalty,
                frequency_penalty=sampling.frequency_penalty,
                grammar=grammar,
            )
            try:
                for token in stream:
                    if not generated:
                        first_token_at = time.perf_counter_ns()
                    if cancel.is_set():
                        done_reason = "cancelled"
                        break
                    if llm.is_end_of_generation(token):
                        done_reason = "stop"
                        break
                    generated.append(token)
                    self.tokens_generated += 1
                    if top_logprobs is not None:
                        pending_logprobs.append(_logprob_entry(llm, token, top_logprobs))
                    pending += decoder.decode(llm.piece(token))
                    hit = _find_stop(pending, stops)
                    if hit is not None:
                        pending = pending[:hit]
                        done_reason = "stop"
                        break
                    if len(generated) >= limit:
                        break
                    if pending and not _partial_stop(pending, stops):
                        yield TokenEvent(pending, pending_logprobs or None)
                        pending, pending_logprobs = "", []
            finally:
                stream.close()
            pending += decoder.decode(b"", final=True)
            if pending or pending_logprobs:
                yield TokenEvent(pending, pending_logprobs or None)
            end = time.perf_counter_ns()
            yield GenerationResult(
                done_reason=done_reason,
                prompt_eval_count=len(tokens),
                prompt_eval_duration=first_token_at - start,
                eval_count=len(generated),
                eval_duration=max(1, end - first_token_at),
                context=tokens + generated,
            )

    def embed(
        self, runner: Runner, texts: list[str], truncate: bool
    ) -> tuple[list[list[float]], int]:
        with runner.lock:
            limit = runner.load.num_ctx
            for text in texts:
                if len(runner.llm.tokenize(text)) > limit and not truncate:
                    raise InvalidRequestError("the input length exceeds the context length")
            try:
                return runner.llm.embed(texts)
            except (RuntimeError, ValueError) as exc:
                raise EngineError(str(exc)) from exc


def _find_stop(text: str, stops: list[str]) -> int | None:
    positions = [text.find(s) for s in stops if s and s in text]
    return min(positions) if positions else None


def _partial_stop(text: str, stops: list[str]) -> bool:
    """True when the text ends with the beginning of a stop sequence (hold it back)."""
    return any(text.endswith(s[:i]) for s in stops for i in range(1, len(s)))


def _logprob_entry(llm: LlamaModel, token: int, top: int) -> dict[str, Any]:
    logprobs = llm.last_logprobs()
    piece = llm.piece(token)
    entry: dict[str, Any] = {
        "token": piece.decode("utf-8", errors="replace"),
        "logprob": float(logprobs[token]),
        "bytes": list(piece),
    }
    if top > 0:
        best = np.argpartition(-logprobs, top)[:top]
        best = best[np.argsort(-logprobs[best])]
        entry["top_logprobs"] = [
            {
                "token": llm.piece(int(t)).decode("utf-8", errors="replace"),
                "logprob": float(logprobs[t]),
                "bytes": list(llm.piece(int(t))),
            }
            for t in best
        ]
    return entry


def _kv_cache_bytes(info: GGUFInfo, num_ctx: int) -> int:
    """f16 K and V for every layer: 2 × layers × kv_heads × head_dim × ctx × 2 bytes."""
    heads = info.arch_value("attention.head_count", 0) or 0
    kv_heads = info.arch_value("attention.head_count_kv", heads) or heads
    if isinstance(heads, list):
        heads = max(heads)
    if isinstance(kv_heads, list):
        kv_heads = max(kv_heads)
    embd = info.embedding_length
    key_len = info.arch_value("attention.key_length", embd // heads if heads else 0) or 0
    value_len = info.arch_value("attention.value_length", key_len) or key_len
    return int(info.block_count * kv_heads * (key_len + value_len) * num_ctx * 2)
