"""Write a PEFT LoRA adapter as a GGUF LoRA adapter: what llama.cpp's ``lora_path`` and an
Ollama Modelfile's ``ADAPTER`` load on top of the served base GGUF.

This does what llama.cpp's ``convert_lora_to_gguf.py`` does for the architectures in
:data:`SUPPORTED_ARCHITECTURES` (the script is not on PyPI and drags in its converter
package), with the official ``gguf`` package only:

* **Names.** ``base_model.model.<module>.lora_A.weight`` becomes
  ``<gguf name of <module>.weight>.lora_a`` (``blk.3.attn_q.weight.lora_a``), the GGUF name
  coming from ``gguf.get_tensor_name_map`` as in the converter.
* **Orientation.** A is written as PEFT holds it, (r, in), and B as (out, r); in ggml order
  that is ``ne = [in, r]`` and ``[r, out]``, which llama.cpp checks against the base tensor
  (``ne = [in, out]``) when it loads the adapter.
* **Rotary layout (llama).** convert_hf_to_gguf permutes the rows of q_proj and k_proj
  (``LlamaModel.permute``) and transformers undoes it when it reads the GGUF, so the model
  PEFT trained has HF row order while llama.cpp multiplies by the permuted matrix. The delta
  B·A must be permuted the same way; a row permutation P gives P·(B·A) = (P·B)·A, so only B
  is permuted, exactly as the converter's LoraTorchTensor does. gemma3 has no such step.
* **Metadata.** ``general.architecture`` (llama.cpp refuses an adapter whose arch differs
  from the model's), ``general.type = adapter``, ``adapter.type = lora`` and
  ``adapter.lora.alpha``. llama.cpp scales each pair by alpha / rank, the rank read from the
  pair's shape, like PEFT without rsLoRA; alpha 0 would mean scale 1, so it must be positive.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import gguf
import numpy as np
import torch
from peft import LoraConfig, PeftModel, get_peft_model_state_dict

from neurons.errors import InvalidRequestError
from neurons.finetune.base import BaseInfo, read_base_info
from neurons.ollama.names import file_digest

__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "ExportInfo",
    "export_peft_model",
    "lora_pairs",
    "write_lora_gguf",
]

# GGUF architectures whose HF -> GGUF mapping of attention/MLP weights is known here: a name
# mapping, plus the rotary row permutation of q/k for llama. Checked against llama.cpp
# itself by tests/finetune/test_export.py (llama) and the converter's source (gemma3).
# qwen2/qwen3/gemma2 would be name-only too, but nothing here has exercised them.
SUPPORTED_ARCHITECTURES = ("gemma3", "llama")
_ROPE_PERMUTED = frozenset({"llama"})

TensorType = Literal["f32", "f16"]
_FILE_TYPES = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16}
_NUMPY_TYPES = {"f32": np.float32, "f16": np.float16}

# PEFT's saved form (get_peft_model_state_dict): base_model.model.<module>.lora_A.weight
_LORA_KEY = re.compile(r"(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<ab>[AB])\.weight")


@dataclass(frozen=True)
class ExportInfo:
    """What was written."""

    path: Path
    architecture: str
    pairs: int  # LoRA-adapted base tensors (the file holds two tensors per pair)
    ranks: tuple[int, ...]  # distinct ranks, sorted (one unless PEFT's rank_pattern was used)
    alpha: float
    tensor_type: TensorType
    size: int
    digest: str  # sha256:<hex>, as the neuron's blob store names it


def lora_pairs(adapter: Mapping[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Group a PEFT LoRA state dict into ``{hf module name: (A, B)}``.

    Anything but plain LoRA A/B matrices (embedding LoRA, DoRA magnitudes, trained biases,
    ``modules_to_save`` copies) has no place in a llama.cpp LoRA adapter and is refused.
    """
    halves: dict[str, dict[str, torch.Tensor]] = {}
    unexpected: list[str] = []
    for key, tensor in adapter.items():
        match = _LORA_KEY.fullmatch(key)
        if match is None or tensor.dim() != 2:
            unexpected.append(key)
            continue
        halves.setdefault(match["module"], {})[match["ab"]] = tensor
    if unexpected:
        shown = ", ".join(unexpected[:5]) + (" ..." if len(unexpected) > 5 else "")
        raise InvalidRequestError(
            f"the adapter holds {len(unexpected)} tensors that are not LoRA A/B matrices of "
            f"linear layers ({shown}); only those can be exported to GGUF"
        )
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for module, ab in halves.items():
        if set(ab) != {"A", "B"}:
            raise InvalidRequestError(f"LoRA of {module} lacks its {'B' if 'A' in ab else 'A'}")
        a, b = ab["A"], ab["B"]
        if a.shape[0] != b.shape[1]:
            raise InvalidRequestError(
                f"LoRA of {module}: A is {tuple(a.shape)} and B {tuple(b.shape)}, ranks differ"
            )
        pairs[module] = (a, b)
    if not pairs:
        raise InvalidRequestError("the adapter holds no LoRA tensors")
    return pairs


def write_lora_gguf(
    adapter: Mapping[str, torch.Tensor],
    out: Path,
    *,
    base_gguf: Path,
    alpha: float,
    tensor_type: TensorType = "f32",
) -> ExportInfo:
    """Write ``adapter`` (``peft.get_peft_model_state_dict(model)``) as a GGUF LoRA adapter
    for the base model ``base_gguf`` (the GGUF the model was trained from).

    ``alpha`` is what llama.cpp scales by, as alpha / rank: PEFT's ``lora_alpha``, or
    ``lora_alpha * sqrt(r)`` for rsLoRA (:func:`export_peft_model` works that out). The file
    is written beside ``out`` and renamed, so ``out`` is never half written.
    """
    if not (alpha > 0 and math.isfinite(alpha)):
        raise InvalidRequestError(f"LoRA alpha must be a positive number, not {alpha}")
    base = read_base_info(base_gguf)
    if base.architecture not in SUPPORTED_ARCHITECTURES:
        raise InvalidRequestError(
            f"cannot export a LoRA adapter for a {base.architecture!r} model; supported: "
            f"{', '.join(SUPPORTED_ARCHITECTURES)}"
        )
    tensors = _gguf_tensors(lora_pairs(adapter), base)
    np_type = _NUMPY_TYPES[tensor_type]

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer = gguf.GGUFWriter(tmp, base.architecture)  # also writes general.architecture
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
        writer.add_file_type(_FILE_TYPES[tensor_type])
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        for name, tensor in tensors:
            data = tensor.detach().to(device="cpu", dtype=torch.float32).numpy()
            writer.add_tensor(name, np.ascontiguousarray(data.astype(np_type)))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)

    ranks = tuple(sorted({int(t.shape[0]) for n, t in tensors if n.endswith(".lora_a")}))
    return ExportInfo(
        path=out,
        architecture=base.architecture,
        pairs=len(tensors) // 2,
        ranks=ranks,
        alpha=float(alpha),
        tensor_type=tensor_type,
        size=out.stat().st_size,
        digest=file_digest(out),
    )


def export_peft_model(
    model: PeftModel,
    out: Path,
    *,
    base_gguf: Path,
    adapter_name: str = "default",
    tensor_type: TensorType = "f32",
) -> ExportInfo:
    """:func:`write_lora_gguf` for one adapter of a PEFT model, alpha taken from its config.

    Refuses what a llama.cpp adapter cannot express: DoRA, per-module alphas, and rsLoRA with
    several ranks (llama.cpp has one alpha per file and always divides by the rank).
    """
    config = model.peft_config.get(adapter_name)
    if not isinstance(config, LoraConfig):
        raise InvalidRequestError(f"adapter {adapter_name!r} is not a LoRA adapter")
    if config.use_dora:
        raise InvalidRequestError("DoRA adapters cannot be exported to GGUF")
    if config.fan_in_fan_out:
        raise InvalidRequestError("fan_in_fan_out LoRA (GPT-2 style Conv1D) is not supported")
    if config.alpha_pattern and set(config.alpha_pattern.values()) != {config.lora_alpha}:
        raise InvalidRequestError("a GGUF adapter has one alpha; alpha_pattern is not supported")
    alpha = float(config.lora_alpha)
    if config.use_rslora:
        # PEFT scales by alpha / sqrt(r), llama.cpp by alpha / r.
        if config.rank_pattern and set(config.rank_pattern.values()) != {config.r}:
            raise InvalidRequestError("rsLoRA with a rank_pattern cannot be exported to GGUF")
        alpha *= math.sqrt(config.r)
    state = get_peft_model_state_dict(model, adapter_name=adapter_name)
    return write_lora_gguf(state, out, base_gguf=base_gguf, alpha=alpha, tensor_type=tensor_type)


def _gguf_tensors(
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor]], base: BaseInfo
) -> list[tuple[str, torch.Tensor]]:
    """``[(gguf name, tensor)]`` for every pair, mapped, checked against the base and, for
    llama, with B's q/k rows in llama.cpp's rotary order."""
    arch = next(a for a, name in gguf.MODEL_ARCH_NAMES.items() if name == base.architecture)
    name_map = gguf.get_tensor_name_map(arch, base.block_count)
    attn_q = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ATTN_Q].split(".")[-1]  # "attn_q"
    attn_k = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ATTN_K].split(".")[-1]
    result: list[tuple[str, torch.Tensor]] = []
    for module, (a, b) in pairs.items():
        name = name_map.get_name(module + ".weight", try_suffixes=(".weight", ".bias"))
        if name is None or name not in base.tensor_shapes:
            raise InvalidRequestError(
                f"LoRA on {module} has no counterpart in the base model's GGUF "
                f"({base.path.name}); only layers the GGUF stores can be adapted"
            )
        shape = base.tensor_shapes[name]  # ggml order: (in, out)
        if len(shape) != 2 or (a.shape[1], b.shape[0]) != shape:
            raise InvalidRequestError(
                f"LoRA on {module} is for a {b.shape[0]}x{a.shape[1]} weight but {name} in "
                f"{base.path.name} is {'x'.join(map(str, reversed(shape)))}: wrong base model?"
            )
        if base.architecture in _ROPE_PERMUTED:
            kind = name.split(".")[-2]
            if kind == attn_q:
                b = _rope_permute(b, base.head_count)
            elif kind == attn_k:
                b = _rope_permute(b, base.head_count_kv)
        result += [(name + ".lora_a", a), (name + ".lora_b", b)]
    return result


def _rope_permute(weights: torch.Tensor, n_head: int) -> torch.Tensor:
    """convert_hf_to_gguf's ``LlamaModel.permute`` of the rows: within each head, HF's
    rotate-half order becomes the interleaved pairs llama.cpp's rope expects (new row 2j is
    old row j, new row 2j+1 is old row j + head_dim/2)."""
    rows = weights.shape[0]
    if n_head <= 0 or rows % (2 * n_head):
        raise InvalidRequestError(f"cannot split {rows} rows into {n_head} rotary heads")
    return (
        weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )
