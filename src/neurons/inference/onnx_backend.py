"""The ONNX Runtime backend: the model's transformer exported once to ONNX and run by
onnxruntime; the rest of its pipeline (pooling, normalize, any dense layer) stays in torch.

Why: on this 2-core CPU, all-MiniLM-L6-v2 over 768 texts in sorted batches of 16, two passes
at once on one thread each, onnxruntime gave 336 texts/s where torch's own ``encode`` gave 250
(``InferenceConfig.backend`` has the figures). infinity's "optimum" engine and
text-embeddings-inference's ort backend serve CPUs the same way. The graph is the same
computation in float32, so the vectors are torch's to rounding (cosine >= 0.99999 on the
test corpus).

The export takes seconds, so it is kept, keyed by the weights' digest and the torch that
exported it: ``$XDG_CACHE_HOME/neurons/onnx/`` (``~/.cache/neurons/onnx`` unset). It is written
to a temporary file and renamed, so processes exporting at once each leave a whole file.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["ORT_INPUTS", "OnnxTransformer", "export_cache_dir", "load_onnx", "onnx_missing"]

logger = logging.getLogger(__name__)

# The tensors a BERT-like encoder takes, in the exported graph's order; a tokenizer that
# yields no token_type_ids (RoBERTa, MPNet) gives a graph without that input.
ORT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def onnx_missing() -> str | None:
    """None when onnxruntime and onnx (torch's exporter writes through it) import, else the
    name of the first that does not."""
    for module in ("onnxruntime", "onnx"):
        if importlib.util.find_spec(module) is None:
            return module
    return None


def export_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "neurons" / "onnx"


class OnnxTransformer:
    """The exported transformer: tokenizer features in, ``last_hidden_state`` out.

    ``last_hidden_state`` may be called from several threads at once: an ORT session's
    ``run`` is thread-safe, and with ``threads`` = 1 each call computes on its caller's thread
    (the batcher's workers give the parallelism, as they do for torch)."""

    def __init__(self, session: Any, inputs: tuple[str, ...], path: Path) -> None:
        self.session = session
        self.inputs = inputs
        self.path = path

    def last_hidden_state(self, features: Mapping[str, Any]) -> Any:
        import torch

        feed = {name: features[name].to(torch.int64).numpy() for name in self.inputs}
        (hidden,) = self.session.run(None, feed)
        return torch.from_numpy(hidden)


def load_onnx(
    model: Any, sample: Mapping[str, Any], digest: str, kind: str, threads: int
) -> OnnxTransformer:
    """``model`` (a transformers model on the CPU) as an ONNX Runtime session, exported first
    unless the cache holds it. ``sample``: tokenizer features of at least two texts of
    different lengths, so the trace sees padding and keeps the attention mask's path (a
    trace over unpadded inputs may drop the mask, and padded batches would then be wrong)."""
    import onnxruntime as ort
    import torch

    inputs = tuple(name for name in ORT_INPUTS if name in sample)
    name = f"{digest.removeprefix('sha256:')[:32]}-{kind}-{'-'.join(inputs)}"
    path = export_cache_dir() / f"{name}-torch{torch.__version__}.onnx"
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: its warnings are about graph details

    def opened() -> OnnxTransformer:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return OnnxTransformer(session, inputs, path)

    if path.is_file():
        try:
            return opened()
        except Exception as error:  # a damaged file (a full disk, an edit): export it again
            logger.warning("exporting the embedding model again: %s is unreadable: %s", path, error)
    _export(model, sample, inputs, path)
    return opened()


def _last_hidden_state(model: Any, inputs: tuple[str, ...]) -> Any:
    """``model(**features).last_hidden_state`` with positional inputs, as the exporter traces
    (a function, so torch is imported only when a model is exported)."""
    import torch

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            output = self.model(**dict(zip(inputs, tensors, strict=True)))
            return output.last_hidden_state  # type: ignore[no-any-return]

    return LastHiddenState().eval()


def _export(model: Any, sample: Mapping[str, Any], inputs: tuple[str, ...], path: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    axes = {"batch": 0, "tokens": 1}
    dynamic = {name: {v: k for k, v in axes.items()} for name in (*inputs, "last_hidden_state")}
    try:
        # The TorchScript exporter: seconds and no onnxscript (the dynamo one takes a minute
        # here). Its tracer warns about every shape it turns into a constant; none matter for
        # a graph whose batch and token axes are dynamic, and pytest makes warnings errors.
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _last_hidden_state(model, inputs),
                tuple(sample[name] for name in inputs),
                tmp,
                input_names=list(inputs),
                output_names=["last_hidden_state"],
                dynamic_axes=dynamic,
                opset_version=17,
                dynamo=False,
            )
        os.replace(tmp, path)
        logger.info("exported the embedding model to ONNX at %s", path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
