"""GGUF LoRA export: the file's layout (a tiny random llama, read back with GGUFReader) and,
the real proof, llama.cpp running the served SmolLM2 GGUF with the exported adapter computes
what PEFT computes in transformers."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedModel

from neurons.errors import InvalidRequestError
from neurons.finetune import export
from neurons.finetune.base import load_base
from neurons.finetune.export import export_peft_model, lora_pairs, write_lora_gguf
from neurons.neuron.defaults import _gemma3_path, _smollm2_path
from neurons.neuron.llama import configure_llama_cpp

# PEFT 0.21 still calls a transformers 5 method that warns of its rename.
pytestmark = pytest.mark.filterwarnings(
    "ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"
)

ALL_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# HF module -> the GGUF tensor llama.cpp names it, written out rather than derived from gguf's
# map so a wrong mapping cannot agree with itself.
GGUF_NAMES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


# -- helpers ---------------------------------------------------------------------------------


def write_fake_base(path: Path, model: PreTrainedModel, arch: str = "llama") -> Path:
    """A GGUF header that says what a real base for ``model`` would (arch, blocks, heads,
    one zero tensor per adaptable weight); the exporter reads nothing else."""
    config = model.config
    writer = gguf.GGUFWriter(path, arch)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    for layer in range(config.num_hidden_layers):
        for hf_name, gguf_name in GGUF_NAMES.items():
            module = model.get_submodule(f"model.layers.{layer}.{hf_name}")
            weight = np.zeros(tuple(module.weight.shape), dtype=np.float32)
            writer.add_tensor(f"blk.{layer}.{gguf_name}.weight", weight)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query: k is permuted by kv heads, q by heads
        head_dim=8,
    )
    return LlamaForCausalLM(config)


def with_lora(model: PreTrainedModel, targets: list[str], b_std: float, **kwargs: Any) -> PeftModel:
    """PEFT LoRA r=8 alpha=16 with B drawn at random: PEFT starts B at zero, which would make
    the adapter a no-op and every export look right."""
    config = LoraConfig(r=8, lora_alpha=16, target_modules=targets, lora_dropout=0.0, **kwargs)
    torch.manual_seed(0)  # PEFT draws A from the global generator
    peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * b_std)
    peft_model.eval()
    return peft_model


def explicit_rope_permute(b: torch.Tensor, n_head: int) -> torch.Tensor:
    """Row by row: within each head of size d, row 2j comes from row j and row 2j+1 from
    row j + d/2 (HF's rotate-half order to llama.cpp's interleaved pairs)."""
    d = b.shape[0] // n_head
    order = [
        h * d + j + half * d // 2 for h in range(n_head) for j in range(d // 2) for half in (0, 1)
    ]
    return b[order]


def field(reader: gguf.GGUFReader, key: str) -> Any:
    return reader.fields[key].contents()


# -- the file's layout -------------------------------------------------------------------------


def test_tiny_llama_layout(tmp_path: Path) -> None:
    model = tiny_llama()
    base = write_fake_base(tmp_path / "base.gguf", model)
    peft_model = with_lora(model, ALL_TARGETS, b_std=0.5)
    state = get_peft_model_state_dict(peft_model)

    info = export_peft_model(peft_model, tmp_path / "adapter.gguf", base_gguf=base)

    assert (info.architecture, info.pairs, info.ranks, info.alpha) == ("llama", 14, (8,), 16.0)
    assert info.size == info.path.stat().st_size and info.digest.startswith("sha256:")
    # written beside and renamed: no temp file left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter.gguf", "base.gguf"]
    reader = gguf.GGUFReader(info.path)
    assert field(reader, "general.architecture") == "llama"
    assert field(reader, "general.type") == "adapter"
    assert field(reader, "adapter.type") == "lora"
    assert field(reader, "adapter.lora.alpha") == pytest.approx(16.0)

    tensors = {t.name: t for t in reader.tensors}
    expected = {
        f"blk.{layer}.{gguf_name}.weight.lora_{ab}"
        for layer in range(2)
        for gguf_name in GGUF_NAMES.values()
        for ab in "ab"
    }
    assert set(tensors) == expected
    config = model.config
    for layer in range(2):
        for hf_name, gguf_name in GGUF_NAMES.items():
            prefix = f"base_model.model.model.layers.{layer}.{hf_name}"
            a, b = state[f"{prefix}.lora_A.weight"], state[f"{prefix}.lora_B.weight"]
            if gguf_name == "attn_q":
                b = explicit_rope_permute(b, config.num_attention_heads)
            elif gguf_name == "attn_k":
                b = explicit_rope_permute(b, config.num_key_value_heads)
            t_a = tensors[f"blk.{layer}.{gguf_name}.weight.lora_a"]
            t_b = tensors[f"blk.{layer}.{gguf_name}.weight.lora_b"]
            # ggml order: lora_a is [in, r], lora_b is [r, out]
            assert list(t_a.shape) == [a.shape[1], 8] and list(t_b.shape) == [8, b.shape[0]]
            assert t_a.tensor_type == gguf.GGMLQuantizationType.F32
            np.testing.assert_array_equal(t_a.data, a.numpy())
            np.testing.assert_array_equal(t_b.data, b.numpy())


def test_permutation_is_the_identity_only_where_it_should_be() -> None:
    b = torch.arange(16.0).reshape(16, 1)
    assert not torch.equal(export._rope_permute(b, 2), b)
    assert torch.equal(export._rope_permute(b, 2), explicit_rope_permute(b, 2))
    assert torch.equal(export._rope_permute(b, 8), b)  # head_dim 2: one pair, nothing moves


def test_f16_and_rslora(tmp_path: Path) -> None:
    model = tiny_llama()
    base = write_fake_base(tmp_path / "base.gguf", model)
    peft_model = with_lora(model, ["v_proj"], b_std=0.5, use_rslora=True)

    info = export_peft_model(peft_model, tmp_path / "a.gguf", base_gguf=base, tensor_type="f16")

    # PEFT scales rsLoRA by alpha/sqrt(r); llama.cpp divides by r
    assert info.alpha == pytest.approx(16 * math.sqrt(8))
    reader = gguf.GGUFReader(info.path)
    assert field(reader, "adapter.lora.alpha") == pytest.approx(16 * math.sqrt(8), rel=1e-6)
    assert {t.tensor_type for t in reader.tensors} == {gguf.GGMLQuantizationType.F16}
    assert len(reader.tensors) == 4


def test_gemma3_is_not_permuted(tmp_path: Path) -> None:
    model = tiny_llama()  # only the header's arch differs; gemma3 maps q/k by name alone
    base = write_fake_base(tmp_path / "base.gguf", model, arch="gemma3")
    peft_model = with_lora(model, ["q_proj"], b_std=0.5)
    state = get_peft_model_state_dict(peft_model)

    info = export_peft_model(peft_model, tmp_path / "a.gguf", base_gguf=base)

    assert info.architecture == "gemma3"
    tensors = {t.name: t for t in gguf.GGUFReader(info.path).tensors}
    b = state["base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight"]
    np.testing.assert_array_equal(tensors["blk.1.attn_q.weight.lora_b"].data, b.numpy())


def _drop_a_b(state: dict[str, torch.Tensor]) -> None:
    del state[next(k for k in state if "lora_B" in k)]


def _add_embedding_lora(state: dict[str, torch.Tensor]) -> None:
    state["base_model.model.model.embed_tokens.lora_embedding_A"] = torch.zeros(8, 64)


def _add_lm_head_lora(state: dict[str, torch.Tensor]) -> None:
    # the tiny base, like SmolLM2's GGUF (tied embeddings), has no output.weight
    state["base_model.model.lm_head.lora_A.weight"] = torch.zeros(8, 32)
    state["base_model.model.lm_head.lora_B.weight"] = torch.zeros(64, 8)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_drop_a_b, "lacks its B"),
        (_add_embedding_lora, "not LoRA A/B"),
        (_add_lm_head_lora, "no counterpart"),
        (dict.clear, "no LoRA tensors"),
    ],
)
def test_refuses_what_llama_cpp_cannot_load(
    tmp_path: Path, change: Callable[[dict[str, torch.Tensor]], object], message: str
) -> None:
    model = tiny_llama()
    base = write_fake_base(tmp_path / "base.gguf", model)
    state = dict(get_peft_model_state_dict(with_lora(model, ["q_proj", "up_proj"], b_std=0.1)))
    change(state)
    with pytest.raises(InvalidRequestError, match=message):
        write_lora_gguf(state, tmp_path / "a.gguf", base_gguf=base, alpha=16)
    assert not (tmp_path / "a.gguf").exists()


def test_refuses_wrong_base_arch_and_alpha(tmp_path: Path) -> None:
    model = tiny_llama()
    state = get_peft_model_state_dict(with_lora(model, ["q_proj"], b_std=0.1))
    other = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=64,
            hidden_size=64,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
    )
    wrong_size = write_fake_base(tmp_path / "other.gguf", other)
    qwen = write_fake_base(tmp_path / "qwen.gguf", model, arch="qwen2")
    base = write_fake_base(tmp_path / "base.gguf", model)
    out = tmp_path / "a.gguf"

    with pytest.raises(InvalidRequestError, match="wrong base model"):
        write_lora_gguf(state, out, base_gguf=wrong_size, alpha=16)
    with pytest.raises(InvalidRequestError, match="'qwen2'"):
        write_lora_gguf(state, out, base_gguf=qwen, alpha=16)
    for alpha in (0.0, -1.0, math.nan):
        with pytest.raises(InvalidRequestError, match="alpha"):
            write_lora_gguf(state, out, base_gguf=base, alpha=alpha)
    assert lora_pairs(state).keys() == {f"model.layers.{i}.self_attn.q_proj" for i in range(2)}


def test_refuses_dora(tmp_path: Path) -> None:
    model = tiny_llama()
    base = write_fake_base(tmp_path / "base.gguf", model)
    with pytest.raises(InvalidRequestError, match="DoRA"):
        peft_model = with_lora(model, ["q_proj"], b_std=0.1, use_dora=True)
        export_peft_model(peft_model, tmp_path / "a.gguf", base_gguf=base)


# -- llama.cpp runs the adapter as PEFT does ----------------------------------------------------


def log_softmax(logits: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def mean_kl(p: np.ndarray[Any, Any], q: np.ndarray[Any, Any]) -> float:
    """KL(p || q) of next-token distributions (log-probs), averaged over prompt positions."""
    return float((np.exp(p) * (p - q)).sum(-1).mean())


def transformers_logprobs(model: Any, ids: list[int]) -> np.ndarray[Any, Any]:
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    return log_softmax(logits.double().numpy())


def llama_cpp_logprobs(
    base: Path, ids: list[int], lora: Path | None = None
) -> np.ndarray[Any, Any]:
    # configure_llama_cpp: the neuron's switch-off of llama.cpp's AMX kernels, which crash here
    llama_cpp = configure_llama_cpp()
    llm = llama_cpp.Llama(
        model_path=str(base),
        lora_path=str(lora) if lora else None,
        logits_all=True,
        n_ctx=256,
        verbose=False,
        seed=0,
        n_threads=2,
    )
    try:
        llm.eval(ids)
        return log_softmax(np.array(llm.scores[: len(ids)], dtype=np.float64))
    finally:
        llm.close()


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[int]]:
    """The served SmolLM2 GGUF, a base cache holding its conversion, and a chat prompt."""
    gguf_path = _smollm2_path(Path())
    cache = tmp_path_factory.mktemp("base-cache")
    _, tokenizer = load_base(gguf_path, cache)
    messages = [{"role": "user", "content": "Name three colours of the rainbow."}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True)["input_ids"]
    return gguf_path, cache, list(ids)


def test_llama_cpp_runs_the_adapter_as_peft_does(
    smollm2: tuple[Path, Path, list[int]], tmp_path: Path
) -> None:
    gguf_path, cache, ids = smollm2
    model, _ = load_base(gguf_path, cache)
    peft_model = with_lora(model, ALL_TARGETS, b_std=0.1)
    peft = transformers_logprobs(peft_model, ids)
    adapter = export_peft_model(peft_model, tmp_path / "adapter.gguf", base_gguf=gguf_path)

    with_adapter = llama_cpp_logprobs(gguf_path, ids, adapter.path)
    without = llama_cpp_logprobs(gguf_path, ids)

    kl_with, kl_without = mean_kl(with_adapter, peft), mean_kl(without, peft)
    print(f"KL(llama.cpp+adapter || PEFT) = {kl_with:.4f}, without adapter {kl_without:.4f}")
    assert kl_without > 0.1  # the adapter matters
    assert kl_with < kl_without / 5
    assert with_adapter[-1].argmax() == peft[-1].argmax()


@pytest.mark.parametrize("target", ["q_proj", "k_proj"])
def test_rotary_permutation_of_q_and_k(
    smollm2: tuple[Path, Path, list[int]],
    tmp_path: Path,
    target: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """LoRA on q or k alone: without the row permutation llama.cpp computes something else
    (for k, with 3 kv heads of SmolLM2's 9, also a permutation by the wrong head count)."""
    gguf_path, cache, ids = smollm2
    model, _ = load_base(gguf_path, cache)
    peft_model = with_lora(model, [target], b_std=0.5)
    peft = transformers_logprobs(peft_model, ids)
    right = export_peft_model(peft_model, tmp_path / "right.gguf", base_gguf=gguf_path)
    monkeypatch.setattr(export, "_rope_permute", lambda b, n_head: b)
    unpermuted = export_peft_model(peft_model, tmp_path / "wrong.gguf", base_gguf=gguf_path)

    kl_right = mean_kl(llama_cpp_logprobs(gguf_path, ids, right.path), peft)
    kl_wrong = mean_kl(llama_cpp_logprobs(gguf_path, ids, unpermuted.path), peft)
    kl_without = mean_kl(llama_cpp_logprobs(gguf_path, ids), peft)
    print(f"{target}: KL right {kl_right:.4f}, unpermuted {kl_wrong:.4f}, none {kl_without:.4f}")
    assert kl_right < kl_wrong / 5
    assert kl_right < kl_without / 5


@pytest.mark.slow
def test_gemma3_adapter_in_llama_cpp(tmp_path: Path) -> None:
    """Gemma 3 270M: a minute to convert (262k-entry vocabulary), hence slow."""
    gguf_path = _gemma3_path(tmp_path)
    model, tokenizer = load_base(gguf_path, tmp_path / "cache")
    ids = list(tokenizer("The capital of France is")["input_ids"])
    peft_model = with_lora(model, ALL_TARGETS, b_std=0.03)
    peft = transformers_logprobs(peft_model, ids)
    adapter = export_peft_model(peft_model, tmp_path / "adapter.gguf", base_gguf=gguf_path)

    kl_with = mean_kl(llama_cpp_logprobs(gguf_path, ids, adapter.path), peft)
    kl_without = mean_kl(llama_cpp_logprobs(gguf_path, ids), peft)
    print(f"gemma3: KL(llama.cpp+adapter || PEFT) = {kl_with:.4f}, without {kl_without:.4f}")
    assert kl_without > 0.1
    assert kl_with < kl_without / 5
