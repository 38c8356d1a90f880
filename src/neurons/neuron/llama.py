"""The only module that touches llama-cpp-python. Everything else sees :class:`GenerationModel`,
:class:`EmbeddingModel` and :class:`SlotSampler`.

Generation drives llama.cpp through its low-level bindings: one context holds ``slots``
sequences (``n_seq_max``), each with its own KV stream of ``n_ctx`` cells (``kv_unified``
off, so a sequence's context is exactly its request's ``num_ctx``, as in Ollama), and one
``llama_decode`` evaluates tokens of several sequences at once. The high-level ``Llama``
class serves one sequence at a time (llama-cpp-python issues #771, #1329), so it is used only
for embeddings, where its ``embed`` already packs many texts into one decode.

llama.cpp's AMX matmul kernels crash on hosts that advertise AMX without granting the tile
state (seen on our sandboxed Sapphire Rapids CI). We switch off llama.cpp's "extra buffer
types" (AMX and weight repacking) there, unless the setting ``llama_extra_buffers``
(``NEURONS_LLAMA_EXTRA_BUFFERS``) says ``on``. The switch is process-wide and the first call
of :func:`configure_llama_cpp` sets it. The benchmarks' raw llama-cpp-python sides use the
same switch, so comparisons stay like for like.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from neurons.errors import EngineError

__all__ = [
    "EmbeddingModel",
    "GenerationModel",
    "SlotSampler",
    "Vocabulary",
    "configure_llama_cpp",
    "extra_buffers_enabled",
    "grammar_for_format",
]

log = logging.getLogger(__name__)

_configured = threading.Lock()
_done = False
_PIECE_BYTES = 256  # longer than any token's text (SmolLM2's longest is 162 bytes)


def _cpu_has_amx() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return "amx_tile" in line.split()
    except OSError:
        pass
    return False


def extra_buffers_enabled(setting: str = "auto") -> bool:
    """``on``, ``off``, or ``auto``: on unless the CPU advertises AMX."""
    if setting in ("on", "off"):
        return setting == "on"
    return not _cpu_has_amx()


def configure_llama_cpp(extra_buffers: str = "auto") -> Any:
    """Import llama_cpp once, applying the extra-buffer switch (Settings.llama_extra_buffers)
    and quieting llama.cpp's log; returns the module."""
    global _done
    import llama_cpp
    import llama_cpp.llama_cpp as bindings  # what llama_cpp.Llama calls
    from llama_cpp._logger import set_verbose

    with _configured:
        if not _done:
            set_verbose(False)
            if not extra_buffers_enabled(extra_buffers):
                original = bindings.llama_model_default_params

                def default_params() -> Any:
                    params = original()
                    params.use_extra_bufts = False
                    return params

                bindings.llama_model_default_params = default_params
                llama_cpp.llama_model_default_params = default_params
        _done = True
    return llama_cpp


def grammar_for_format(fmt: Any) -> str:
    """GBNF for Ollama's ``format``: ``"json"`` or a JSON schema."""
    from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

    if fmt == "json":
        return str(JSON_GBNF)
    try:
        grammar = str(json_schema_to_gbnf(json.dumps(fmt)))
    except (ValueError, RuntimeError, KeyError, TypeError) as exc:
        raise EngineError(f"invalid format: {exc}") from exc
    # llama-cpp-python's converter lets a string hold raw control characters (a newline), which
    # JSON forbids: a model once answered {"name": ", <newline>"} that no parser reads. Its own
    # JSON_GBNF and llama.cpp's converter exclude them; so does this.
    return grammar.replace(_LOOSE_CHAR, _JSON_CHAR)


_LOOSE_CHAR = r'char ::= [^"\\] |'
_JSON_CHAR = r'char ::= [^"\\\x7F\x00-\x1F] |'


class Vocabulary:
    """Tokens and their text for a loaded llama.cpp model (thread-safe: read-only)."""

    def __init__(self, lib: Any, model: Any) -> None:
        self._lib = lib
        self._model = model  # llama_cpp._internals.LlamaModel
        self._vocab = model.vocab
        self.n_vocab = int(model.n_vocab())
        self._pieces: dict[int, bytes] = {}
        self._eog: dict[int, bool] = {}
        self._piece_buffer = ctypes.create_string_buffer(_PIECE_BYTES)
        self._piece_lock = threading.Lock()

    def tokenize(self, text: str, add_bos: bool = True) -> list[int]:
        return list(self._model.tokenize(text.encode("utf-8"), add_bos, True))

    def piece(self, token: int) -> bytes:
        cached = self._pieces.get(token)
        if cached is None:
            with self._piece_lock:
                n = self._lib.llama_token_to_piece(
                    self._vocab, token, self._piece_buffer, _PIECE_BYTES, 0, False
                )
                cached = bytes(self._piece_buffer.raw[: max(0, n)])
            self._pieces[token] = cached
        return cached

    def token_text(self, token: int) -> str:
        return self.piece(token).decode("utf-8", errors="replace")

    def _special_text(self, token: int) -> str:
        if token < 0:
            return ""
        return bytes(self._model.detokenize([token], special=True)).decode(
            "utf-8", errors="replace"
        )

    @property
    def adds_bos(self) -> bool:
        """Whether tokenizing a prompt puts BOS in front (SmolLM2's vocabulary does not)."""
        return bool(self._lib.llama_vocab_get_add_bos(self._vocab))

    @property
    def bos_text(self) -> str:
        return self._special_text(int(self._model.token_bos()))

    @property
    def eos_text(self) -> str:
        return self._special_text(int(self._model.token_eos()))

    def is_end_of_generation(self, token: int) -> bool:
        cached = self._eog.get(token)
        if cached is None:
            cached = bool(self._lib.llama_vocab_is_eog(self._vocab, token))
            self._eog[token] = cached
        return cached


class SlotSampler:
    """One request's sampler chain, as ``Llama.generate`` builds it: repetition penalties,
    the grammar, then greedy (temperature 0) or top-k, typical, top-p, min-p, temperature and
    a seeded draw. Owned by one sequence; freed with :meth:`close`."""

    def __init__(
        self,
        owner: GenerationModel,
        *,
        seed: int,
        top_k: int,
        top_p: float,
        min_p: float,
        typical_p: float,
        temperature: float,
        repeat_penalty: float,
        repeat_last_n: int,
        presence_penalty: float,
        frequency_penalty: float,
        grammar: str | None = None,
    ) -> None:
        lib = owner.lib
        self._lib = lib
        self.chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        self.penalty_last_n = owner.n_ctx if repeat_last_n < 0 else repeat_last_n
        self._penalties = lib.llama_sampler_init_penalties(
            owner.vocab.n_vocab,
            self.penalty_last_n,
            repeat_penalty,
            frequency_penalty,
            presence_penalty,
        )
        lib.llama_sampler_chain_add(self.chain, self._penalties)
        if grammar is not None:
            sampler = lib.llama_sampler_init_grammar(
                owner.vocab._vocab, grammar.encode("utf-8"), b"root"
            )
            if not sampler:
                self.close()
                raise EngineError("invalid format: the grammar could not be compiled")
            lib.llama_sampler_chain_add(self.chain, sampler)
        if temperature <= 0:
            lib.llama_sampler_chain_add(self.chain, lib.llama_sampler_init_greedy())
        else:
            for sampler in (
                lib.llama_sampler_init_top_k(top_k),
                lib.llama_sampler_init_typical(typical_p, 1),
                lib.llama_sampler_init_top_p(top_p, 1),
                lib.llama_sampler_init_min_p(min_p, 1),
                lib.llama_sampler_init_temp(temperature),
                lib.llama_sampler_init_dist(
                    seed if seed >= 0 else int.from_bytes(os.urandom(4), "little")
                ),
            ):
                lib.llama_sampler_chain_add(self.chain, sampler)

    def accept_prompt(self, tokens: list[int]) -> None:
        """Feed the prompt's last tokens to the repetition penalties only (the grammar
        constrains the answer, not the prompt), as llama-server does."""
        if self.penalty_last_n == 0:
            return
        for token in tokens[-self.penalty_last_n :]:
            self._lib.llama_sampler_accept(self._penalties, token)

    def sample(self, owner: GenerationModel, index: int) -> int:
        """Sample (and accept) a token from the logits at ``index`` of the last decode."""
        return int(self._lib.llama_sampler_sample(self.chain, owner.ctx, index))

    def close(self) -> None:
        if self.chain is not None:
            self._lib.llama_sampler_free(self.chain)
            self.chain = None


class GenerationModel:
    """One model and one llama.cpp context holding ``slots`` sequences of ``n_ctx`` tokens.

    Not thread-safe: one decode thread owns it (see :mod:`neurons.neuron.slots`); the
    vocabulary may be used from any thread.
    """

    def __init__(
        self,
        path: Path,
        *,
        n_ctx: int,
        slots: int,
        n_batch: int,
        n_threads: int,
        use_mmap: bool = True,
        lora_path: Path | None = None,
        extra_buffers: str = "auto",
    ) -> None:
        lib = configure_llama_cpp(extra_buffers)
        from llama_cpp import _internals

        self.lib = lib
        params = lib.llama_model_default_params()
        params.use_mmap = use_mmap
        try:
            self._model: Any = _internals.LlamaModel(
                path_model=str(path), params=params, verbose=False
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise EngineError(f"llama runner process has terminated: {exc}") from exc
        model = self._model.model
        # Recurrent and hybrid models keep a state per sequence that cannot be cut back to a
        # prefix; Ollama serves them one request at a time, and so do we.
        recurrent = lib.llama_model_is_recurrent(model) or lib.llama_model_is_hybrid(model)
        self.can_trim = not recurrent
        if not self.can_trim and slots > 1:
            log.info("%s cannot trim a sequence's cache: serving it with one slot", path.name)
            slots = 1
        self.slots = slots
        self.n_ctx = n_ctx
        self.n_batch = n_batch
        self.n_swa = int(lib.llama_model_n_swa(model))
        cparams = lib.llama_context_default_params()
        cparams.n_ctx = n_ctx * slots
        cparams.n_batch = n_batch
        cparams.n_ubatch = n_batch
        cparams.n_seq_max = slots
        cparams.n_threads = n_threads
        cparams.n_threads_batch = n_threads
        cparams.kv_unified = False
        cparams.no_perf = True
        self._adapter: Any = None
        try:
            self._context = _internals.LlamaContext(
                model=self._model, params=cparams, verbose=False
            )
            if lora_path is not None:
                self._set_adapter(lora_path)
        except (ValueError, RuntimeError) as exc:
            self.close()
            raise EngineError(f"llama runner process has terminated: {exc}") from exc
        self.ctx = self._context.ctx
        self._memory = self._context.memory
        self._batch = lib.llama_batch_init(n_batch, 0, 1)
        self.vocab = Vocabulary(lib, self._model)

    def _set_adapter(self, path: Path) -> None:
        lib = self.lib
        self._adapter = lib.llama_adapter_lora_init(self._model.model, str(path).encode("utf-8"))
        if not self._adapter:
            raise RuntimeError(f"failed to load LoRA adapter {path.name}")
        adapters = (lib.llama_adapter_lora_p_ctypes * 1)(self._adapter)
        scales = (ctypes.c_float * 1)(1.0)
        if lib.llama_set_adapters_lora(self._context.ctx, adapters, 1, scales):
            raise RuntimeError(f"failed to apply LoRA adapter {path.name}")

    def sampler(self, **options: Any) -> SlotSampler:
        return SlotSampler(self, **options)

    # -- the decode step ---------------------------------------------------------------------

    def decode(
        self, tokens: list[int], positions: list[int], seqs: list[int], logits: list[bool]
    ) -> None:
        """Evaluate one batch (at most ``n_batch`` entries) across sequences."""
        batch = self._batch
        n = len(tokens)
        for i in range(n):
            batch.token[i] = tokens[i]
            batch.pos[i] = positions[i]
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seqs[i]
            batch.logits[i] = logits[i]
        batch.n_tokens = n
        code = self.lib.llama_decode(self.ctx, batch)
        if code != 0:
            raise EngineError(f"llama_decode failed with status {code}")

    def logprobs(self, index: int) -> np.ndarray[Any, np.dtype[np.float32]]:
        """Log-softmax of the logits at ``index`` of the last decode."""
        ptr = self.lib.llama_get_logits_ith(self.ctx, index)
        logits = np.ctypeslib.as_array(
            ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(self.vocab.n_vocab,)
        ).astype(np.float64)
        shifted = logits - logits.max()
        result: np.ndarray[Any, np.dtype[np.float32]] = (
            shifted - np.log(np.exp(shifted).sum())
        ).astype(np.float32)
        return result

    # -- sequences ---------------------------------------------------------------------------

    def keep_prefix(self, seq: int, length: int) -> int:
        """Cut sequence ``seq`` back to its first ``length`` cached tokens; returns how many
        are still usable (0 when the cache cannot be cut there, e.g. a sliding window that
        has already dropped what the prefix needs, as llama-server checks)."""
        memory = self._memory
        lib = self.lib
        if length > 0:
            pos_min = int(lib.llama_memory_seq_pos_min(memory, seq))  # -1: nothing cached
            oldest_needed = max(0, length - self.n_swa) if self.n_swa else 0
            if pos_min < 0 or pos_min > oldest_needed:
                length = 0
        if length > 0 and lib.llama_memory_seq_rm(memory, seq, length, -1):
            return length
        lib.llama_memory_seq_rm(memory, seq, -1, -1)
        return 0

    def close(self) -> None:
        batch, self._batch = getattr(self, "_batch", None), None
        if batch is not None:
            self.lib.llama_batch_free(batch)
        context = getattr(self, "_context", None)
        if context is not None:
            with contextlib.suppress(Exception):
                context.close()
        if self._adapter:
            self.lib.llama_adapter_lora_free(self._adapter)
            self._adapter = None
        with contextlib.suppress(Exception):
            self._model.close()


class EmbeddingModel:
    """A model loaded for embeddings (mean pooling). Not thread-safe: one batching thread
    owns it (see :mod:`neurons.neuron.slots`)."""

    def __init__(
        self,
        path: Path,
        *,
        n_ctx: int,
        n_threads: int,
        use_mmap: bool = True,
        lora_path: Path | None = None,
        extra_buffers: str = "auto",
    ) -> None:
        llama_cpp = configure_llama_cpp(extra_buffers)
        kwargs: dict[str, Any] = {
            "n_ctx": n_ctx,
            "n_batch": n_ctx,
            "n_ubatch": n_ctx,
            "n_threads": n_threads,
            "n_threads_batch": n_threads,
            "use_mmap": use_mmap,
            "verbose": False,
            "embedding": True,
            "pooling_type": 1,  # MEAN
        }
        if lora_path is not None:
            kwargs["lora_path"] = str(lora_path)
        try:
            self.llama = llama_cpp.Llama(str(path), **kwargs)
        except (ValueError, RuntimeError, OSError) as exc:
            raise EngineError(f"llama runner process has terminated: {exc}") from exc
        self.n_ctx = n_ctx
        self.slots = 1
        self.vocab = Vocabulary(llama_cpp, self.llama._model)

    def embed(self, texts: list[str]) -> list[list[float]]:
        """One vector per text; texts longer than the context are cut to it."""
        vectors = self.llama.embed(texts, normalize=False, truncate=True)
        return [list(map(float, v)) for v in vectors]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.llama.close()
