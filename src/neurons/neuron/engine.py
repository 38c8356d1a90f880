"""Runners (loaded models), their slots, and keep-alive for the embedded neuron.

A generation runner is one llama.cpp context with a sequence per slot, driven by a decode
loop (:class:`~neurons.neuron.slots.DecodeLoop`) that batches every request of the model into
each step; an embedding runner batches concurrent embed calls
(:class:`~neurons.neuron.slots.EmbedBatcher`). All of them run on the engine's one
:class:`~neurons.neuron.slots.LlamaThread`, so the process keeps one OpenMP team. Fairness
and the 503 bound live in :class:`~neurons.neuron.scheduler.FairScheduler`, in front of this.

Slots: ``num_parallel`` (``OLLAMA_NUM_PARALLEL``), as far as the memory estimate of the
model at ``num_ctx × slots`` fits in :data:`~neurons.hardware.memory.HEADROOM` of the
available RAM (the node's host stats file when one pins it); fewer otherwise, and one for
models whose cache cannot be trimmed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from neurons.errors import EngineError, InvalidRequestError
from neurons.hardware.gguf import ModelProfile, profile_from_info
from neurons.hardware.memory import HEADROOM, EstimateOptions, MemoryEstimate, estimate_memory
from neurons.neuron.llama import EmbeddingModel, GenerationModel, Vocabulary, grammar_for_format
from neurons.neuron.modelstore import ModelStore, StoredModel
from neurons.neuron.options import LoadOptions, SamplingOptions
from neurons.neuron.prompt import PromptTemplate
from neurons.neuron.results import GenerationResult, TokenEvent
from neurons.neuron.slots import (
    PREFILL_STRETCH,
    DecodeLoop,
    EmbedBatcher,
    LlamaThread,
    Sink,
    SlotRequest,
)
from neurons.ollama.ggufmeta import GGUFInfo, read_gguf_info

__all__ = ["Engine", "GenerationResult", "Runner", "TokenEvent"]

log = logging.getLogger(__name__)


@dataclass
class Runner:
    """A model loaded into llama.cpp, its worker thread, and its keep-alive bookkeeping."""

    model: StoredModel
    info: GGUFInfo
    load: LoadOptions
    embedding: bool
    llm: GenerationModel | EmbeddingModel
    worker: DecodeLoop | EmbedBatcher
    template: PromptTemplate
    size_bytes: int
    active: int = 0
    keep_alive: float | None = 300.0  # seconds; None = forever
    expires_at: float | None = None  # monotonic deadline once idle
    last_used: float = field(default_factory=time.monotonic)

    @property
    def key(self) -> tuple[str, bool]:
        return (self.model.manifest_digest, self.embedding)

    @property
    def vocab(self) -> Vocabulary:
        return self.llm.vocab

    @property
    def slots(self) -> int:
        return self.llm.slots

    def expires_at_wall(self) -> datetime:
        """When the model unloads: keep_alive after the running request, or the idle deadline."""
        if self.keep_alive is None:
            return datetime.now(UTC) + timedelta(days=365 * 100)
        if self.active or self.expires_at is None:
            remaining = self.keep_alive
        else:
            remaining = max(0.0, self.expires_at - time.monotonic())
        return datetime.now(UTC) + timedelta(seconds=remaining)

    def status(self) -> dict[str, Any]:
        """Slot and batching counters for /api/neuron/status."""
        worker = self.worker
        entry: dict[str, Any] = {
            "name": self.model.name.display,
            "embedding": self.embedding,
            "slots": self.slots,
            "active_requests": self.active,
        }
        if isinstance(worker, DecodeLoop):
            entry.update(
                slots_busy=worker.busy_slots,
                waiting=worker.waiting,
                steps=worker.steps,
                batch_size_last=worker.last_batch,
                batch_size_mean=round(worker.batch_tokens / worker.steps, 2)
                if worker.steps
                else 0.0,
                prompt_tokens_reused=worker.prompt_tokens_reused,
                prompt_tokens_evaluated=worker.prompt_tokens_evaluated,
            )
        else:
            entry.update(embed_batches=worker.batches, embed_requests=worker.requests)
        return entry


class Engine:
    def __init__(
        self,
        store: ModelStore,
        max_loaded: int = 3,
        default_keep_alive: float | None = 300.0,
        num_parallel: int = 1,
        prefill_stretch: float = PREFILL_STRETCH,
        available_memory: Callable[[], int] | None = None,
        extra_buffers: str = "auto",
    ):
        self.store = store
        self.max_loaded = max_loaded
        self.default_keep_alive = default_keep_alive
        self.num_parallel = num_parallel
        self.prefill_stretch = prefill_stretch
        self.available_memory = available_memory or _available_memory
        self.extra_buffers = extra_buffers
        self.runners: dict[tuple[str, bool], Runner] = {}
        self._lock = threading.Condition()
        self._loading: set[tuple[str, bool]] = set()
        self._retired_tokens = 0  # tokens generated by runners since unloaded
        self._llama = LlamaThread()

    @property
    def tokens_generated(self) -> int:
        """Lifetime counter, exposed for monitoring and tests."""
        live = sum(
            r.worker.tokens_generated
            for r in list(self.runners.values())
            if isinstance(r.worker, DecodeLoop)
        )
        return self._retired_tokens + live

    # -- loading -----------------------------------------------------------------------------

    def acquire(self, model: StoredModel, load: LoadOptions, embedding: bool) -> Runner:
        """Return a runner for the model (loading or reloading it), marked active. A reload
        with other settings waits until the loaded runner's requests are done. Call
        :meth:`release` when finished."""
        if model.model_path is None:
            raise InvalidRequestError(f'"{model.name.display}" does not support generate')
        key = (model.manifest_digest, embedding)
        with self._lock:
            while True:
                runner = self.runners.get(key)
                if key in self._loading or (
                    runner is not None and runner.load != load and runner.active
                ):
                    self._lock.wait()
                    continue
                if runner is not None and runner.load == load:
                    runner.active += 1
                    return runner
                if runner is not None:
                    self._drop(key)
                self._evict_for_space()
                self._loading.add(key)
                break
        try:
            runner = self._load(model, load, embedding)
        finally:
            with self._lock:
                self._loading.discard(key)
                self._lock.notify_all()
        with self._lock:
            runner.active = 1
            self.runners[key] = runner
        return runner

    def _load(self, model: StoredModel, load: LoadOptions, embedding: bool) -> Runner:
        assert model.model_path is not None
        info = read_gguf_info(model.model_path)
        adapter = model.adapter_paths[0] if model.adapter_paths else None
        profile = _profile(info)
        name = model.name.display
        llm: GenerationModel | EmbeddingModel
        worker: DecodeLoop | EmbedBatcher
        if embedding:
            llm = self._open_embedding(model.model_path, info, load, adapter)
            worker = EmbedBatcher(self._llama, llm)
        else:
            slots = self._slots_that_fit(info, profile, load)
            llm = self._open_generation(model.model_path, info, load, slots, adapter)
            worker = DecodeLoop(self._llama, llm, self.prefill_stretch)
        vocab = llm.vocab
        template = PromptTemplate(
            model.template,
            info.chat_template,
            bos_token=vocab.bos_text,
            eos_token=vocab.eos_text,
            tokenizer_adds_bos=vocab.adds_bos,
        )
        log.info("loaded %s (%d slot%s)", name, llm.slots, "" if llm.slots == 1 else "s")
        return Runner(
            model=model,
            info=info,
            load=load,
            embedding=embedding,
            llm=llm,
            worker=worker,
            template=template,
            size_bytes=info.file_size + _kv_cache_bytes(profile, load, llm.slots),
            keep_alive=self.default_keep_alive,
        )

    # The token source: the only places that open llama.cpp. Mock mode
    # (neurons.neuron.mock.MockEngine) overrides these three and nothing else, so batching,
    # stops, num_predict, keep-alive and every route stay the real ones.

    def _open_generation(
        self, path: Path, info: GGUFInfo, load: LoadOptions, slots: int, adapter: Path | None
    ) -> GenerationModel:
        return GenerationModel(
            path,
            n_ctx=load.num_ctx,
            slots=slots,
            n_batch=load.num_batch,
            n_threads=load.num_thread,
            use_mmap=load.use_mmap,
            lora_path=adapter,
            extra_buffers=self.extra_buffers,
        )

    def _open_embedding(
        self, path: Path, info: GGUFInfo, load: LoadOptions, adapter: Path | None
    ) -> EmbeddingModel:
        return EmbeddingModel(
            path,
            n_ctx=load.num_ctx,
            n_threads=load.num_thread,
            use_mmap=load.use_mmap,
            lora_path=adapter,
            extra_buffers=self.extra_buffers,
        )

    def _format_grammar(self, fmt: Any) -> str:
        """What the sampler is given for a ``format``: GBNF for llama.cpp."""
        return grammar_for_format(fmt)

    def _slots_that_fit(
        self, info: GGUFInfo, profile: ModelProfile | None, load: LoadOptions
    ) -> int:
        """``num_parallel``, or fewer when the model at ``num_ctx × slots`` would not fit in
        the headroom of the available memory."""
        wanted = self.num_parallel
        if profile is None:
            log.warning("%s: no memory estimate; using %d slots", info.path.name, wanted)
            return wanted
        budget = HEADROOM * self.available_memory()
        slots = wanted
        while slots > 1 and _estimate(profile, load, slots).total_bytes > budget:
            slots -= 1
        if slots < wanted:
            log.warning(
                "%s: %d parallel slots at num_ctx %d do not fit in memory; using %d",
                info.path.name,
                wanted,
                load.num_ctx,
                slots,
            )
        return slots

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
            self._lock.notify_all()

    def unload_model(self, manifest_digest: str) -> int:
        """Unload every idle runner of a model; busy ones unload when their requests end."""
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
        self._llama.close()

    def _drop(self, key: tuple[str, bool]) -> None:
        runner = self.runners.pop(key, None)
        if runner is not None:
            log.info("unloading %s", runner.model.name.display)
            runner.worker.close()
            if isinstance(runner.worker, DecodeLoop):
                self._retired_tokens += runner.worker.tokens_generated
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

    def start_generation(
        self,
        runner: Runner,
        tokens: list[int],
        sampling: SamplingOptions,
        sink: Sink,
        cancel: threading.Event,
        fmt: Any = None,
        top_logprobs: int | None = None,
    ) -> SlotRequest | None:
        """Queue a generation on the runner's decode loop; events go to ``sink`` on the
        loop's thread, and setting ``cancel`` stops it at the next step. Returns the request,
        or None when there is no room to generate: then the one result has already been
        sent."""
        llm = runner.llm
        worker = runner.worker
        if not isinstance(llm, GenerationModel) or not isinstance(worker, DecodeLoop):
            raise EngineError("this runner was loaded for embeddings")
        tokens = self.fit_prompt(runner, tokens, sampling.num_keep)
        room = runner.load.num_ctx - len(tokens)
        limit = room if sampling.num_predict < 0 else min(sampling.num_predict, room)
        if limit <= 0 or not tokens:
            sink(GenerationResult("length", len(tokens), 0, 0, 0, tokens))
            return None
        sampler = llm.sampler(
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
            grammar=self._format_grammar(fmt) if fmt else None,
        )
        sampler.accept_prompt(tokens)
        request = SlotRequest(
            tokens=tokens,
            sampler=sampler,
            limit=limit,
            stops=sampling.stop,
            top_logprobs=top_logprobs,
            sink=sink,
            cancel=cancel,
        )
        try:
            worker.submit(request)
        except EngineError:
            sampler.close()
            raise
        return request

    def embed(
        self, runner: Runner, texts: list[str], truncate: bool
    ) -> tuple[Future[list[list[float]]], int]:
        """Queue texts on the runner's embedding thread (after checking their length here);
        returns the future vectors and the number of tokens they take."""
        llm = runner.llm
        worker = runner.worker
        if not isinstance(worker, EmbedBatcher):
            raise EngineError("this runner was not loaded for embeddings")
        limit = runner.load.num_ctx
        count = 0
        for text in texts:
            length = len(llm.vocab.tokenize(text))
            if length > limit and not truncate:
                raise InvalidRequestError("the input length exceeds the context length")
            count += min(length, limit)
        return worker.submit(texts), count


def _available_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def _profile(info: GGUFInfo) -> ModelProfile | None:
    """The memory estimator's view of the model, or None for a header it cannot read."""
    try:
        return profile_from_info(info)
    except (ValueError, ZeroDivisionError):
        return None


def _estimate(profile: ModelProfile, load: LoadOptions, slots: int) -> MemoryEstimate:
    options = EstimateOptions(
        num_ctx=load.num_ctx, num_batch=load.num_batch, num_parallel=slots, num_gpu=0
    )
    return estimate_memory(profile, options)


def _kv_cache_bytes(profile: ModelProfile | None, load: LoadOptions, slots: int) -> int:
    return 0 if profile is None else _estimate(profile, load, slots).kv_cache_bytes
