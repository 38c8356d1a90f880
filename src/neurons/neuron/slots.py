"""Continuous batching: one decode loop per loaded model evaluates every request it serves,
and one thread (:class:`LlamaThread`) runs the loops of all the models.

Generation (:class:`DecodeLoop`), as llama-server's ``update_slots`` and Ollama's runner do
it. The model's context holds one sequence per slot. Each step the loop:

1. drops requests whose client left (their slot is free from this step on);
2. gives waiting requests a free slot, first come first served: the slot whose cached tokens
   share the longest prefix with the prompt (the prompt cache: turn N of a chat evaluates only
   what is new), else the least recently used one, so other slots keep their caches;
3. builds one batch: the last sampled token of every generating slot, then chunks of pending
   prompts (chunked prefill). While streams are generating, a chunk is sized so that a step
   takes about ``prefill_stretch`` times a plain decode step (both measured as it runs), so
   a long prompt arriving does not stall the streams already running;
4. runs one ``llama_decode``, then samples each slot that has logits with its own sampler chain
   and checks its own stop sequences, ``num_predict`` and end-of-generation.

Embeddings (:class:`EmbedBatcher`): requests that arrive while one is being computed are
evaluated together in the next call.

Each request hands in a ``sink``, called on the llama thread with every
:class:`~neurons.neuron.engine.TokenEvent`, then exactly one final
:class:`~neurons.neuron.engine.GenerationResult` or exception.
"""

from __future__ import annotations

import codecs
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

from neurons.errors import EngineError
from neurons.neuron.llama import EmbeddingModel, GenerationModel, SlotSampler
from neurons.neuron.results import GenerationResult, TokenEvent

__all__ = ["DecodeLoop", "EmbedBatcher", "LlamaThread", "SlotRequest", "common_prefix"]

log = logging.getLogger(__name__)

# A step that carries prompt tokens may take this many plain decode steps (the default of
# Settings.prefill_stretch). On a CPU a step costs about a fixed part plus a part per token
# (2 cores, SmolLM2: 3.5 ms + 3.6 ms a token), so the running streams' token gaps grow by
# about this factor while a prompt is evaluated, and the prompt takes longer than it would
# alone (benchmarks/neuron_concurrency.py measures both).
PREFILL_STRETCH = 2.0
MIN_PREFILL_CHUNK = 1
_EMA = 0.2

Sink = Callable[[TokenEvent | GenerationResult | BaseException], None]
J = TypeVar("J")


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two token lists.

    >>> common_prefix([1, 2, 3], [1, 2, 4, 5])
    2
    """
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(diff[0]) if diff.size else n


@dataclass
class SlotRequest:
    """One generation: a prompt already fitted to the context, and how to sample it."""

    tokens: list[int]
    sampler: SlotSampler
    limit: int  # the most tokens to generate
    stops: list[str]
    top_logprobs: int | None
    sink: Sink
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Slot:
    """One sequence of the context: its cached tokens and, while busy, its request."""

    seq: int
    cached: list[int] = field(default_factory=list)  # tokens whose KV the sequence holds
    last_used: float = 0.0
    request: SlotRequest | None = None
    order: int = 0  # admission order: prompts are evaluated first come first served
    todo: list[int] = field(default_factory=list)  # prompt tokens still to evaluate
    next_token: int | None = None  # sampled, to evaluate in the next step
    in_batch: list[int] = field(default_factory=list)
    logits_index: int = -1
    reused: int = 0
    generated: list[int] = field(default_factory=list)
    pending: str = ""
    pending_logprobs: list[dict[str, Any]] = field(default_factory=list)
    decoder: Any = None
    started_ns: int = 0
    first_token_ns: int = 0


class _StepCosts:
    """Smoothed cost of a plain decode step and of one more prompt token in a step."""

    def __init__(self, stretch: float) -> None:
        self.stretch = stretch
        self.decode_s: float | None = None
        self.prompt_token_s: float | None = None

    @staticmethod
    def _ema(old: float | None, new: float) -> float:
        return new if old is None else (1 - _EMA) * old + _EMA * new

    def observe(self, generating: int, prompt: int, elapsed: float) -> None:
        if prompt == 0:
            self.decode_s = self._ema(self.decode_s, elapsed)
        else:
            base = self.decode_s if generating and self.decode_s is not None else 0.0
            self.prompt_token_s = self._ema(self.prompt_token_s, max(elapsed - base, 0.0) / prompt)

    def prefill_chunk(self, n_batch: int) -> int:
        if not self.decode_s or not self.prompt_token_s:
            return MIN_PREFILL_CHUNK
        allowed = (self.stretch - 1.0) * self.decode_s / self.prompt_token_s
        return max(MIN_PREFILL_CHUNK, min(n_batch, int(allowed)))


class LlamaThread:
    """The one thread that runs llama.cpp for every model a neuron has loaded.

    Each thread that calls llama.cpp gets its own OpenMP team, and an idle team still costs
    the busy one: with a second model's decode thread alive, a stream of the first ran about
    10% slower on 2 cores (and worse beside other processes). So the models' workers share
    this thread: each pass gives every worker with work one step (a decode step, or one
    embedding call), in turn; with one model busy that is its own decode loop, unshared.
    """

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self._workers: list[_Worker[Any]] = []
        self._current: _Worker[Any] | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="llama", daemon=True)
        self._thread.start()

    def add(self, worker: _Worker[Any]) -> None:
        with self.cond:
            self._workers.append(worker)

    def remove(self, worker: _Worker[Any]) -> None:
        """Stop running ``worker``; returns once its step in progress (if any) is over."""
        with self.cond:
            if worker in self._workers:
                self._workers.remove(worker)
            while self._current is worker and threading.current_thread() is not self._thread:
                self.cond.wait()

    def close(self) -> None:
        with self.cond:
            self._closing = True
            self.cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self._closing and not any(w.has_work() for w in self._workers):
                    self.cond.wait()
                if self._closing:
                    return
                ready = [w for w in self._workers if w.has_work()]
            for worker in ready:
                with self.cond:
                    if worker not in self._workers:
                        continue  # removed meanwhile
                    self._current = worker
                try:
                    worker.work()
                except Exception:  # a worker's failure must not end the thread
                    log.exception("llama work failed")
                finally:
                    with self.cond:
                        self._current = None
                        self.cond.notify_all()


class _Worker(Generic[J]):
    """One model's share of the :class:`LlamaThread`: its waiting jobs and its step."""

    def __init__(self, thread: LlamaThread) -> None:
        self._llama = thread
        self._cond = thread.cond
        self._waiting: deque[J] = deque()
        self._closed = False
        thread.add(self)

    def _submit(self, job: J) -> None:
        with self._cond:
            if self._closed:
                raise EngineError("the model is being unloaded")
            self._waiting.append(job)
            self._cond.notify_all()

    def _detach(self) -> None:
        with self._cond:
            self._closed = True
        self._llama.remove(self)

    def has_work(self) -> bool:
        """Called with the thread's condition held."""
        return bool(self._waiting)

    def work(self) -> None:
        raise NotImplementedError


class DecodeLoop(_Worker[SlotRequest]):
    """The decode loop of one generation model (see the module docstring)."""

    def __init__(
        self, thread: LlamaThread, model: GenerationModel, prefill_stretch: float = PREFILL_STRETCH
    ) -> None:
        super().__init__(thread)
        self.model = model
        self.slots = [_Slot(seq) for seq in range(model.slots)]
        self._admitted = 0
        self._costs = _StepCosts(prefill_stretch)
        # Counters read by /api/neuron/status (written by the loop thread only).
        self.tokens_generated = 0
        self.steps = 0
        self.batch_tokens = 0  # summed over steps
        self.last_batch = 0
        self.prompt_tokens_reused = 0
        self.prompt_tokens_evaluated = 0

    @property
    def busy_slots(self) -> int:
        return sum(1 for s in self.slots if s.request is not None)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def submit(self, request: SlotRequest) -> None:
        self._submit(request)

    def close(self) -> None:
        """Leave the thread; requests still running or waiting end with an error."""
        self._detach()
        error = EngineError("the model was unloaded")
        for slot in self.slots:
            if slot.request is not None:
                self._abort(slot, error)
        while self._waiting:
            request = self._waiting.popleft()
            request.sampler.close()
            _deliver(request, error)

    # -- the loop ----------------------------------------------------------------------------

    def has_work(self) -> bool:
        return bool(self._waiting) or any(s.request is not None for s in self.slots)

    def work(self) -> None:
        """One step: admit waiting requests to free slots, then decode and sample."""
        with self._cond:
            self._admit()
        try:
            self._step()
        except Exception as exc:  # a failed decode ends the requests in it, not the loop
            log.exception("decode step failed")
            for slot in self.slots:
                if slot.request is not None:
                    self._abort(slot, exc)
                    slot.cached = []
                    self.model.keep_prefix(slot.seq, 0)

    def _admit(self) -> None:
        while self._waiting:
            free = [s for s in self.slots if s.request is None]
            if not free:
                return
            request = self._waiting.popleft()
            shared = {s.seq: common_prefix(s.cached, request.tokens) for s in free}
            slot = max(free, key=lambda s: (shared[s.seq], -s.last_used))
            self._start(slot, request, shared[slot.seq])

    def _start(self, slot: _Slot, request: SlotRequest, shared: int) -> None:
        """Give ``slot`` to ``request``, whose prompt shares ``shared`` cached tokens."""
        # The last prompt token is always evaluated again: its logits give the first token.
        reuse = min(shared, len(request.tokens) - 1)
        kept = self.model.keep_prefix(slot.seq, reuse)
        self._admitted += 1
        slot.cached = slot.cached[:kept]
        slot.request = request
        slot.order = self._admitted
        slot.todo = request.tokens[kept:]
        slot.reused = kept
        slot.next_token = None
        slot.generated = []
        slot.pending = ""
        slot.pending_logprobs = []
        slot.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        slot.started_ns = slot.first_token_ns = time.perf_counter_ns()
        self.prompt_tokens_reused += kept
        self.prompt_tokens_evaluated += len(slot.todo)

    def _step(self) -> None:
        for slot in self.slots:
            if slot.request is not None and slot.request.cancel.is_set():
                self._finish(slot, "cancelled")
        tokens: list[int] = []
        positions: list[int] = []
        seqs: list[int] = []
        logits: list[bool] = []
        involved: list[_Slot] = []
        for slot in self.slots:
            if slot.request is not None and slot.next_token is not None:
                slot.in_batch = [slot.next_token]
                slot.logits_index = len(tokens)
                tokens.append(slot.next_token)
                positions.append(len(slot.cached))
                seqs.append(slot.seq)
                logits.append(True)
                involved.append(slot)
        generating = len(tokens)
        budget = self.model.n_batch - generating
        if generating:
            budget = min(budget, self._costs.prefill_chunk(self.model.n_batch))
        prefilling = sorted(
            (s for s in self.slots if s.request is not None and s.todo), key=lambda s: s.order
        )
        for slot in prefilling:
            if budget <= 0:
                break
            take = slot.todo[:budget]
            budget -= len(take)
            completes = len(take) == len(slot.todo)
            base = len(slot.cached)
            tokens.extend(take)
            positions.extend(range(base, base + len(take)))
            seqs.extend([slot.seq] * len(take))
            logits.extend([False] * len(take))
            if completes:
                logits[-1] = True
                slot.logits_index = len(tokens) - 1
            slot.in_batch = take
            involved.append(slot)
        if not tokens:
            return
        started = time.perf_counter()
        self.model.decode(tokens, positions, seqs, logits)
        self._costs.observe(generating, len(tokens) - generating, time.perf_counter() - started)
        self.steps += 1
        self.last_batch = len(tokens)
        self.batch_tokens += len(tokens)
        for slot in involved:
            slot.cached.extend(slot.in_batch)
            if slot.next_token is None:
                slot.todo = slot.todo[len(slot.in_batch) :]
            slot.next_token = None
            if slot.logits_index >= 0:
                self._sample(slot)

    def _sample(self, slot: _Slot) -> None:
        request = slot.request
        assert request is not None
        index, slot.logits_index = slot.logits_index, -1
        token = request.sampler.sample(self.model, index)
        if not slot.generated:
            slot.first_token_ns = time.perf_counter_ns()
        vocab = self.model.vocab
        if vocab.is_end_of_generation(token):
            self._finish(slot, "stop")
            return
        slot.generated.append(token)
        self.tokens_generated += 1
        if request.top_logprobs is not None:
            slot.pending_logprobs.append(
                _logprob_entry(self.model, index, token, request.top_logprobs)
            )
        slot.pending += slot.decoder.decode(vocab.piece(token))
        hit = _find_stop(slot.pending, request.stops)
        if hit is not None:
            slot.pending = slot.pending[:hit]
            self._finish(slot, "stop")
            return
        if len(slot.generated) >= request.limit:
            self._finish(slot, "length")
            return
        if slot.pending and not _partial_stop(slot.pending, request.stops):
            self._emit(slot, TokenEvent(slot.pending, slot.pending_logprobs or None))
            slot.pending, slot.pending_logprobs = "", []
        slot.next_token = token

    def _emit(self, slot: _Slot, item: TokenEvent) -> None:
        assert slot.request is not None
        if not _deliver(slot.request, item):
            slot.request.cancel.set()  # nobody is listening any more

    def _finish(self, slot: _Slot, reason: str) -> None:
        request = slot.request
        assert request is not None
        slot.pending += slot.decoder.decode(b"", final=True)
        if slot.pending or slot.pending_logprobs:
            self._emit(slot, TokenEvent(slot.pending, slot.pending_logprobs or None))
        end = time.perf_counter_ns()
        result = GenerationResult(
            done_reason=reason,
            prompt_eval_count=len(request.tokens) - slot.reused,
            prompt_eval_duration=slot.first_token_ns - slot.started_ns,
            eval_count=len(slot.generated),
            eval_duration=max(1, end - slot.first_token_ns),
            context=request.tokens + slot.generated,
        )
        self._release(slot)
        _deliver(request, result)

    def _abort(self, slot: _Slot, error: BaseException) -> None:
        request = slot.request
        assert request is not None
        self._release(slot)
        _deliver(request, error)

    def _release(self, slot: _Slot) -> None:
        assert slot.request is not None
        slot.request.sampler.close()
        slot.request = None
        slot.todo = []
        slot.next_token = None
        slot.logits_index = -1
        slot.last_used = time.monotonic()


@dataclass
class _EmbedJob:
    texts: list[str]
    future: Future[list[list[float]]] = field(default_factory=Future)


class EmbedBatcher(_Worker[_EmbedJob]):
    """The embedding worker of one model: jobs waiting when a call starts share it."""

    def __init__(self, thread: LlamaThread, model: EmbeddingModel) -> None:
        super().__init__(thread)
        self.model = model
        self.batches = 0
        self.requests = 0

    def submit(self, texts: list[str]) -> Future[list[list[float]]]:
        job = _EmbedJob(texts)
        self._submit(job)
        return job.future

    def close(self) -> None:
        self._detach()
        while self._waiting:
            self._waiting.popleft().future.set_exception(EngineError("the model was unloaded"))

    def work(self) -> None:
        with self._cond:
            jobs = list(self._waiting)
            self._waiting.clear()
        texts = [text for job in jobs for text in job.texts]
        try:
            vectors = self.model.embed(texts)
        except Exception as exc:  # handed to every caller in the batch
            failure = exc if isinstance(exc, EngineError) else EngineError(str(exc))
            for job in jobs:
                job.future.set_exception(failure)
            return
        self.batches += 1
        self.requests += len(jobs)
        start = 0
        for job in jobs:
            job.future.set_result(vectors[start : start + len(job.texts)])
            start += len(job.texts)


def _deliver(request: SlotRequest, item: TokenEvent | GenerationResult | BaseException) -> bool:
    try:
        request.sink(item)
    except RuntimeError:  # the caller's event loop is gone
        return False
    return True


def _find_stop(text: str, stops: list[str]) -> int | None:
    positions = [text.find(s) for s in stops if s and s in text]
    return min(positions) if positions else None


def _partial_stop(text: str, stops: list[str]) -> bool:
    """True when the text ends with the beginning of a stop sequence (hold it back)."""
    return any(text.endswith(s[:i]) for s in stops for i in range(1, len(s)))


def _logprob_entry(model: GenerationModel, index: int, token: int, top: int) -> dict[str, Any]:
    logprobs = model.logprobs(index)
    vocab = model.vocab
    piece = vocab.piece(token)
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
                "token": vocab.token_text(int(t)),
                "logprob": float(logprobs[t]),
                "bytes": list(vocab.piece(int(t))),
            }
            for t in best
        ]
    return entry
