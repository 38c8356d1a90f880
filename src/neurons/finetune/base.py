"""Load a GGUF the neurons serve into transformers for training, converted once and cached.

The base of a fine-tuning job is the very file a neuron serves, so an adapter trained on it
fits the served model exactly. transformers can read a GGUF (``from_pretrained(dir,
gguf_file=name)``) but dequantizes every tensor and builds the tokenizer's vocabulary from the
metadata each time: 15-45 s. :func:`load_base` does that once per file and keeps a plain
safetensors copy under ``cache_dir/<sha256>/``, which later loads in well under a second
for SmolLM2.

Two quirks of a GGUF-loaded model are handled here so that callers never meet them:

* ``save_pretrained`` refuses a model that carries the GGUF quantizer ("quantized with gguf
  and is not serializable") although its weights are dense; HF ``Trainer`` refuses it for
  training too. Dropping ``hf_quantizer`` / ``is_quantized`` / ``quantization_config`` fixes
  both, and the cached copy never has them.
* The chat template lives in ``tokenizer.chat_template`` of the GGUF; if transformers ever
  leaves it out of the tokenizer, it is copied over from the header so that training prompts
  are rendered exactly as the neuron renders them.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from neurons.errors import EngineError, InvalidDigestError, InvalidRequestError
from neurons.ollama.ggufmeta import read_gguf_info
from neurons.ollama.names import file_digest

__all__ = [
    "BaseInfo",
    "base_cache_path",
    "gguf_architecture",
    "load_base",
    "read_base_info",
]

log = logging.getLogger(__name__)

# Written last into a cache entry: an entry without it (or with other contents than it lists)
# is not trusted. Bump FORMAT when what goes into an entry changes.
MARKER = "neurons-base.json"
FORMAT = 1
# A conversion takes under a minute; temp dirs older than this are a crashed run's leftovers.
_STALE_TMP_S = 3600
_HEX64 = re.compile(r"[0-9a-f]{64}")
# transformers' list also holds the non-architecture sections "general" and "tokenizer"
_READABLE_ARCHS = frozenset(GGUF_SUPPORTED_ARCHITECTURES) - {"general", "tokenizer"}


@dataclass(frozen=True)
class BaseInfo:
    """What fine-tuning and adapter export need from a base GGUF's header."""

    path: Path
    architecture: str
    block_count: int
    head_count: int
    head_count_kv: int
    chat_template: str | None
    # GGUF tensor name -> shape in ggml order (ne0 = input features of a matrix, ne1 = output)
    tensor_shapes: dict[str, tuple[int, ...]]


def read_base_info(path: Path) -> BaseInfo:
    """Read the header only (milliseconds; the weights are not touched)."""
    info = read_gguf_info(path)
    head_count = int(info.arch_value("attention.head_count", 0) or 0)
    return BaseInfo(
        path=path,
        architecture=info.architecture,
        block_count=info.block_count,
        head_count=head_count,
        # llama.cpp's default as well: no key means no grouped-query attention
        head_count_kv=int(info.arch_value("attention.head_count_kv", head_count) or head_count),
        chat_template=info.chat_template,
        tensor_shapes={t.name: t.shape for t in info.tensors},
    )


def gguf_architecture(path: Path) -> str:
    """``general.architecture`` of a GGUF, e.g. ``llama`` or ``gemma3``."""
    return read_base_info(path).architecture


def _normalize_digest(digest: str) -> str:
    hex_digest = digest.removeprefix("sha256:").removeprefix("sha256-").lower()
    if not _HEX64.fullmatch(hex_digest):
        raise InvalidDigestError(f"invalid digest {digest!r}: expected sha256:<64 hex digits>")
    return hex_digest


def base_cache_path(cache_dir: Path, digest: str) -> Path:
    """Where :func:`load_base` keeps the converted copy of the GGUF with that digest."""
    return cache_dir / _normalize_digest(digest)


def load_base(
    gguf_path: Path,
    cache_dir: Path,
    *,
    digest: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Model and tokenizer of a served GGUF, ready for PEFT and HF ``Trainer``.

    ``digest`` is the GGUF's sha256 (``sha256:<hex>`` or bare hex); pass it when known, as
    for a neuron blob, which is named by it, since hashing costs a read of the whole file. It
    is trusted, not checked. The first call for a digest converts (dense float32, whatever
    ``dtype`` says, so the cache does not depend on who came first) and caches; every call
    returns the model cast to ``dtype``.
    """
    if not gguf_path.is_file():
        raise InvalidRequestError(f"base model file {gguf_path} does not exist")
    info = read_base_info(gguf_path)
    if info.architecture not in _READABLE_ARCHS:
        raise InvalidRequestError(
            f"cannot fine-tune a {info.architecture!r} model: transformers reads GGUF files "
            f"of the architectures {', '.join(sorted(_READABLE_ARCHS))}"
        )
    hex_digest = _normalize_digest(digest or file_digest(gguf_path))
    entry = cache_dir / hex_digest

    loaded = _load_cached(entry, dtype)
    if loaded is None:
        if entry.exists():
            log.warning("discarding incomplete or unreadable base cache %s", entry)
            shutil.rmtree(entry, ignore_errors=True)
        if cache_dir.is_dir():
            _remove_stale_tmp(cache_dir)
        _convert(gguf_path, cache_dir, hex_digest, info.chat_template)
        loaded = _load_cached(entry, dtype)
        if loaded is None:
            raise EngineError(f"the converted base model in {entry} does not load")
    return loaded


def _entry_is_complete(entry: Path) -> bool:
    try:
        marker = json.loads((entry / MARKER).read_text(encoding="utf-8"))
        files: dict[str, int] = marker["files"]
        return marker["format"] == FORMAT and all(
            (entry / name).stat().st_size == size for name, size in files.items()
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _load_cached(
    entry: Path, dtype: torch.dtype
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase] | None:
    if not _entry_is_complete(entry):
        return None
    try:
        tokenizer = AutoTokenizer.from_pretrained(entry)
        model = AutoModelForCausalLM.from_pretrained(entry, dtype=dtype)
    except Exception as exc:  # whatever is wrong with derived data, rebuilding fixes it
        log.warning("base cache %s does not load (%s: %s)", entry, type(exc).__name__, exc)
        return None
    return model, tokenizer


def _convert(gguf_path: Path, cache_dir: Path, hex_digest: str, chat_template: str | None) -> None:
    """GGUF -> safetensors + tokenizer files in ``cache_dir/<hex_digest>``, atomically: it is
    written to a temp dir beside it and renamed, so a crash never leaves a half entry."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=f".{hex_digest}.", suffix=".tmp", dir=cache_dir))
    try:
        try:
            tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
            model = AutoModelForCausalLM.from_pretrained(
                gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
            )
        except Exception as exc:
            raise EngineError(f"transformers could not load {gguf_path.name}: {exc}") from exc
        _drop_gguf_quantizer(model)
        if tokenizer.chat_template is None and chat_template is not None:
            tokenizer.chat_template = chat_template
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        files = {p.name: p.stat().st_size for p in tmp.iterdir() if p.is_file()}
        marker: dict[str, Any] = {
            "format": FORMAT,
            "source": gguf_path.name,
            "sha256": hex_digest,
            "files": files,
        }
        (tmp / MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")
        try:
            tmp.rename(cache_dir / hex_digest)
        except OSError:
            # Another process converted the same file meanwhile; its entry is as good.
            if not _entry_is_complete(cache_dir / hex_digest):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("converted %s for training in %.1f s", gguf_path.name, time.monotonic() - started)


def _drop_gguf_quantizer(model: PreTrainedModel) -> None:
    # The weights are already dense; the quantizer only makes save_pretrained and Trainer
    # refuse the model, and the saved config must not claim a quantization the copy lacks.
    # (mypy sees these through nn.Module.__getattr__ as Tensor | Module.)
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model, "is_quantized"):
        model.is_quantized = False  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def _remove_stale_tmp(cache_dir: Path) -> None:
    cutoff = time.time() - _STALE_TMP_S
    for path in cache_dir.glob(".*.tmp"):
        try:
            if path.is_dir() and path.stat().st_mtime < cutoff:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue
