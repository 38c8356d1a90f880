"""The only module that touches llama-cpp-python. Everything else sees :class:`LlamaModel`.

Why a wrapper: llama-cpp-python's private attributes (vocab, raw logits) are needed for
end-of-generation detection and logprobs, and llama.cpp's AMX matmul kernels crash on hosts
that advertise AMX without granting the tile state (seen on our sandboxed Sapphire Rapids
CI). We switch off llama.cpp's "extra buffer types" (AMX and weight repacking) there, unless
``NEURONS_LLAMA_EXTRA_BUFFERS=1``. The benchmark's raw llama-cpp-python side uses the same
switch, so comparisons stay like for like.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np

from neurons.errors import EngineError

__all__ = ["LlamaModel", "configure_llama_cpp", "extra_buffers_enabled"]

_configured = threading.Lock()
_done = False


def _cpu_has_amx() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return "amx_tile" in line.split()
    except OSError:
        pass
    return False


def extra_buffers_enabled() -> bool:
    setting = os.environ.get("NEURONS_LLAMA_EXTRA_BUFFERS", "auto").lower()
    if setting in ("1", "true", "on"):
        return True
    if setting in ("0", "false", "off"):
        return False
    return not _cpu_has_amx()


def configure_llama_cpp() -> Any:
    """Import llama_cpp once, applying the extra-buffer switch; returns the module."""
    global _done
    import llama_cpp
    import llama_cpp.llama_cpp as bindings  # what llama_cpp.Llama calls

    with _configured:
        if not _done and not extra_buffers_enabled():
            original = bindings.llama_model_default_params

            def default_params() -> Any:
                params = original()
                params.use_extra_bufts = False
                return params

            bindings.llama_model_default_params = default_params
            llama_cpp.llama_model_default_params = default_params
        _done = True
    return llama_cpp


class LlamaModel:
    """One loaded llama.cpp context. Not thread-safe: callers serialise access."""

    def __init__(
        self,
        path: Path,
        *,
        n_ctx: int,
        n_batch: int,
        n_threads: int,
        use_mmap: bool = True,
        embedding: bool = False,
        lora_path: Path | None = None,
    ) -> None:
        llama_cpp = configure_llama_cpp()
        self._lib = llama_cpp
        kwargs: dict[str, Any] = {
            "n_ctx": n_ctx,
            "n_batch": n_batch,
            "n_threads": n_threads,
            "n_threads_batch": n_threads,
            "use_mmap": use_mmap,
            "verbose": False,
        }
        if embedding:
            kwargs.update(embedding=True, n_ubatch=n_batch, pooling_type=1)  # MEAN pooling
        if lora_path is not None:
            kwargs["lora_path"] = str(lora_path)
        try:
            self.llama = llama_cpp.Llama(str(path), **kwargs)
        except (ValueError, RuntimeError, OSError) as exc:
            raise EngineError(f"llama runner process has terminated: {exc}") from exc
        self.n_ctx = n_ctx
        self.n_vocab = int(self.llama.n_vocab())
        self._eog_cache: dict[int, bool] = {}

    # -- tokens ------------------------------------------------------------------------------

    def tokenize(self, text: str, add_bos: bool = True) -> list[int]:
        return list(self.llama.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True))

    def piece(self, token: int) -> bytes:
        return bytes(self.llama.detokenize([token]))

    def token_text(self, token: int) -> str:
        return self.piece(token).decode("utf-8", errors="replace")

    @property
    def bos_text(self) -> str:
        bos = int(self.llama.token_bos())
        return (
            ""
            if bos < 0
            else bytes(self.llama.detokenize([bos], special=True)).decode("utf-8", errors="replace")
        )

    @property
    def eos_text(self) -> str:
        eos = int(self.llama.token_eos())
        return (
            ""
            if eos < 0
            else bytes(self.llama.detokenize([eos], special=True)).decode("utf-8", errors="replace")
        )

    def is_end_of_generation(self, token: int) -> bool:
        cached = self._eog_cache.get(token)
        if cached is None:
            cached = bool(self._lib.llama_vocab_is_eog(self.llama._model.vocab, token))
            self._eog_cache[token] = cached
        return cached

    # -- generation --------------------------------------------------------------------------

    def make_grammar(self, fmt: Any) -> Any:
        import json

        from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

        try:
            if fmt == "json":
                return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
            return LlamaGrammar.from_json_schema(json.dumps(fmt), verbose=False)
        except (ValueError, RuntimeError, KeyError, TypeError) as exc:
            raise EngineError(f"invalid format: {exc}") from exc

    def generate(
        self,
        tokens: list[int],
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
        grammar: Any = None,
    ) -> Generator[int, Any, None]:
        self.llama.set_seed(seed if seed >= 0 else int.from_bytes(os.urandom(4), "little"))
        self.llama.last_n_tokens_size = self.n_ctx if repeat_last_n < 0 else repeat_last_n
        stream: Generator[int, Any, None] = self.llama.generate(
            tokens,
            top_k=top_k,
            top_p=top_p,
            min_p=min_p,
            typical_p=typical_p,
            temp=temperature,
            repeat_penalty=repeat_penalty,
            presence_penalty=presence_penalty,
            frequency_penalty=frequency_penalty,
            grammar=grammar,
        )
        return stream

    def last_logprobs(self) -> np.ndarray[Any, np.dtype[np.float32]]:
        """Log-softmax of the logits that produced the most recent token."""
        ptr = self._lib.llama_get_logits_ith(self.llama._ctx.ctx, -1)
        logits = np.ctypeslib.as_array(
            ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(self.n_vocab,)
        ).astype(np.float64)
        shifted = logits - logits.max()
        result: np.ndarray[Any, np.dtype[np.float32]] = (
            shifted - np.log(np.exp(shifted).sum())
        ).astype(np.float32)
        return result

    # -- embeddings --------------------------------------------------------------------------

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        vectors, count = self.llama.embed(texts, normalize=False, truncate=True, return_count=True)
        return [list(map(float, v)) for v in vectors], int(count)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.llama.close()
