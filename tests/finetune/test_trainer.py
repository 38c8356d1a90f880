"""The LoRA training core on a tiny random llama (32 wide, 2 layers) and a tokenizer trained
here: label masks, the split, learning, evaluation, checkpoints and an exact resume."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from neurons.errors import InvalidRequestError
from neurons.finetune.examples import Example, Message
from neurons.finetune.labels import IGNORE, encode_example, encode_examples
from neurons.finetune.presets import Hyperparameters
from neurons.finetune.trainer import CHECKPOINT, split_indices, train_lora

SPECIALS = ["<unk>", "<pad>", "<eos>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]
SPECIALS += ["<sot>", "<eot>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
# Gemma's shape: a role line, trimmed content, the marker, then a newline
GEMMA_LIKE = (
    "{% for m in messages %}<sot>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{{ m['content'] | trim }}<eot>\n{% endfor %}"
)
CORPUS = [
    "hello world, the cat sat on the mat.",
    "what is the capital of france? paris is the capital of france.",
    "user assistant system model answer question one two three four five",
    "the quick brown fox jumps over the lazy dog",
]


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE over a few sentences, with turn markers as special tokens."""
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=backend, eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_model(tokenizer: PreTrainedTokenizerFast, seed: int = 0) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        # wider than llama's 0.02: the output layer is frozen, and with small weights no LoRA
        # update could make a logit stand out, so nothing could be memorised
        initializer_range=0.2,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def chat(*turns: str, system: str | None = None, source: int = 1) -> Example:
    """``chat("q", "a", "q2", "a2")``: user and assistant alternating."""
    messages = [Message("system", system)] if system else []
    roles = ("user", "assistant")
    messages += [Message(roles[i % 2], text) for i, text in enumerate(turns)]  # type: ignore[arg-type]
    return Example(source=source, messages=tuple(messages))


def memorisable(n: int = 10) -> list[Example]:
    """One answer to many questions: learnable in a few dozen steps, and the held-out
    examples share it, so their loss falls too."""
    numbers = ["one", "two", "three", "four", "five", "hello", "world", "fox", "dog", "cat"]
    return [
        chat(f"question {numbers[i % len(numbers)]}", "the cat sat on the mat.", source=i + 1)
        for i in range(n)
    ]


def hp(**overrides: Any) -> Hyperparameters:
    base = Hyperparameters(
        learning_rate=3e-2,
        batch_size=2,
        epochs=3,
        warmup_steps=0,
        lora_r=4,
        lora_alpha=8.0,
        lora_dropout=0.0,
        target_modules=("q_proj", "v_proj", "o_proj", "up_proj"),
        eval_fraction=0.2,
        max_seq_length=64,
        checkpoint_steps=1000,
    )
    return replace(base, **overrides)


def trained_runs(tokenizer: PreTrainedTokenizerFast, example: Example) -> list[str]:
    """The trained stretches of ``example``, decoded."""
    encoded = encode_example(tokenizer, example, 256)
    assert encoded is not None
    runs: list[list[int]] = []
    previous = False
    for token, label in zip(encoded.input_ids, encoded.labels, strict=True):
        trained = label != IGNORE
        if trained:
            assert label == token
            if not previous:
                runs.append([])
            runs[-1].append(token)
        previous = trained
    return [str(tokenizer.decode(run)) for run in runs]


class Recorder:
    """``emit`` for tests; ``stop_after`` steps makes ``should_stop`` turn true."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.stop_after = stop_after

    def __call__(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    def should_stop(self) -> bool:
        return self.stop_after is not None and len(self.of("step")) >= self.stop_after


def run(
    tokenizer: PreTrainedTokenizerFast,
    examples: list[Example],
    params: Hyperparameters,
    workdir: Path,
    stop_after: int | None = None,
) -> tuple[Any, Recorder]:
    recorder = Recorder(stop_after)
    result = train_lora(
        tiny_model(tokenizer),
        tokenizer,
        examples,
        params,
        workdir,
        emit=recorder,
        should_stop=recorder.should_stop,
    )
    return result, recorder


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return tiny_tokenizer()


# -- labels ---------------------------------------------------------------------------------


def test_chat_trains_assistant_content_and_end_marker_only(
    tokenizer: PreTrainedTokenizerFast,
) -> None:
    example = chat("what is the capital?", "paris", "and two?", "two is four", system="one")
    assert trained_runs(tokenizer, example) == ["paris<|end|>", "two is four<|end|>"]


def test_answer_that_looks_like_a_role_tag_is_found_in_the_right_place(
    tokenizer: PreTrainedTokenizerFast,
) -> None:
    # "assistant" also occurs inside "<|assistant|>" just before it
    example = chat("user", "assistant", "system", "user")
    assert trained_runs(tokenizer, example) == ["assistant<|end|>", "user<|end|>"]


def test_trimmed_content_and_newline_after_the_marker(tokenizer: PreTrainedTokenizerFast) -> None:
    gemma = tiny_tokenizer()
    gemma.chat_template = GEMMA_LIKE
    example = chat("  the question  ", "  the answer \n")
    # The marker is trained, the newline the template writes after it is not
    assert trained_runs(gemma, example) == ["the answer<eot>"]


def test_text_trains_every_token_and_ends_with_eos(tokenizer: PreTrainedTokenizerFast) -> None:
    encoded = encode_example(tokenizer, Example(source=1, text="hello world"), 64)
    assert encoded is not None
    assert encoded.labels == encoded.input_ids
    assert encoded.input_ids[-1] == tokenizer.eos_token_id


def test_truncation_drops_examples_left_without_a_trained_token(
    tokenizer: PreTrainedTokenizerFast,
) -> None:
    long_question = chat("the quick brown fox jumps over the lazy dog " * 4, "paris")
    short = chat("hi", "paris")
    kept, dropped = encode_examples(tokenizer, [long_question, short], max_seq_length=16)
    assert dropped == 1
    assert len(kept) == 1 and len(kept[0].input_ids) <= 16


def test_no_chat_template_is_a_clear_error() -> None:
    bare = tiny_tokenizer()
    bare.chat_template = None
    with pytest.raises(InvalidRequestError, match="no chat template"):
        encode_example(bare, chat("q", "a"), 64)


# -- split ----------------------------------------------------------------------------------


def test_split_is_seeded_and_holds_out_at_least_one() -> None:
    train, held = split_indices(20, 0.1, seed=7)
    assert (train, held) == split_indices(20, 0.1, seed=7)
    assert len(held) == 2 and sorted(train + held) == list(range(20))
    assert split_indices(20, 0.1, seed=8) != (train, held)
    assert len(split_indices(2, 0.1, seed=1)[1]) == 1
    assert split_indices(1, 0.2, seed=1) == ([0], [])
    assert split_indices(10, 0.0, seed=1) == (list(range(10)), [])


# -- training -------------------------------------------------------------------------------


def test_loss_falls_and_evaluation_is_recorded(
    tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    result, rec = run(tokenizer, memorisable(10), hp(epochs=6), tmp_path)
    assert not result.stopped
    assert (result.n_train, result.n_eval, result.dropped) == (8, 2, 0)
    assert result.steps == result.total_steps == 6 * 4
    steps = rec.of("step")
    assert [s["step"] for s in steps] == list(range(1, 25))
    assert all(s["total_steps"] == 24 and s["epochs"] == 6 and s["tokens"] > 0 for s in steps)
    assert [e["epoch"] for e in rec.of("epoch")] == [1, 2, 3, 4, 5, 6]
    assert result.train_loss == rec.of("epoch")[-1]["loss"] < steps[0]["loss"] / 2
    before, after = rec.of("eval")
    assert before == {"type": "eval", "when": "before", "eval_loss": result.eval_loss_before}
    assert after["when"] == "after" and after["eval_loss"] == result.eval_loss_after
    assert result.eval_loss_after < result.eval_loss_before / 2
    phases = [e["phase"] for e in rec.of("phase")]
    assert phases == ["training", "evaluating"]
    assert result.train_tokens == sum(s["tokens"] for s in steps)
    assert result.tokens_per_second > 0
    assert result.metrics()["n_train"] == 8 and "model" not in result.metrics()
    assert next(result.model.parameters()).device.type == "cpu"


def test_max_steps_caps_training(tokenizer: PreTrainedTokenizerFast, tmp_path: Path) -> None:
    result, rec = run(tokenizer, memorisable(10), hp(epochs=5, max_steps=6), tmp_path)
    assert result.steps == 6
    # 4 steps an epoch: the second epoch is the last one touched, and ends at step 6
    assert {s["epochs"] for s in rec.of("step")} == {2}
    assert [e["epoch"] for e in rec.of("epoch")] == [1, 2]


def test_accumulated_micro_batches_weigh_tokens_like_one_batch(
    tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    examples = memorisable(8) + [chat("hi", "the quick brown fox jumps over the lazy dog")]
    losses = []
    for i, (batch, accum) in enumerate([(4, 1), (2, 2), (1, 4)]):
        params = hp(batch_size=batch, gradient_accumulation_steps=accum, max_steps=1)
        _, rec = run(tokenizer, examples, params, tmp_path / str(i))
        losses.append(rec.of("step")[0]["loss"])
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    assert losses[2] == pytest.approx(losses[0], rel=1e-5)


def test_stop_checkpoints_and_resume_ends_with_the_same_weights(
    tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    # dropout, accumulation, warmup and cosine: everything a resume must restore
    params = hp(
        lora_dropout=0.1,
        gradient_accumulation_steps=2,
        warmup_steps=2,
        lr_scheduler="cosine",
        checkpoint_steps=3,
        epochs=3,
    )
    examples = memorisable(12)
    whole, whole_rec = run(tokenizer, examples, params, tmp_path / "whole")

    part, part_rec = run(tokenizer, examples, params, tmp_path / "parts", stop_after=4)
    assert part.stopped and part.steps == 4 and part.eval_loss_after is None
    assert [c["step"] for c in part_rec.of("checkpoint")] == [3, 4]
    assert [e["phase"] for e in part_rec.of("phase")] == ["training"]
    assert (tmp_path / "parts" / CHECKPOINT).is_file()
    assert not (tmp_path / "parts" / f"{CHECKPOINT}.tmp").exists()

    rest, rest_rec = run(tokenizer, examples, params, tmp_path / "parts")
    assert rest_rec.of("resumed") == [{"type": "resumed", "step": 4}]
    assert rest_rec.of("step")[0]["step"] == 5
    assert not rest_rec.of("eval")[:-1]  # the "before" loss came from the checkpoint
    assert rest.eval_loss_before == whole.eval_loss_before
    assert rest.steps == whole.steps and rest.train_tokens == whole.train_tokens
    assert [s["loss"] for s in part_rec.of("step") + rest_rec.of("step")] == [
        s["loss"] for s in whole_rec.of("step")
    ]
    assert rest.eval_loss_after == whole.eval_loss_after
    expected = dict(whole.model.named_parameters())
    for name, param in rest.model.named_parameters():
        if param.requires_grad:
            assert torch.equal(param, expected[name]), name


def test_stop_before_the_first_step_saves_nothing(
    tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    result, rec = run(tokenizer, memorisable(6), hp(), tmp_path, stop_after=0)
    assert result.stopped and result.steps == 0
    assert not rec.of("step") and not (tmp_path / CHECKPOINT).exists()


def test_a_checkpoint_for_other_settings_is_refused(
    tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    run(tokenizer, memorisable(6), hp(), tmp_path, stop_after=1)
    with pytest.raises(InvalidRequestError, match="other hyperparameters"):
        run(tokenizer, memorisable(6), hp(learning_rate=2e-3), tmp_path)


def test_an_unreadable_checkpoint_means_starting_over(
    tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    (tmp_path / CHECKPOINT).write_bytes(b"torn")
    result, rec = run(tokenizer, memorisable(6), hp(max_steps=2), tmp_path)
    assert any("Unreadable checkpoint" in e["message"] for e in rec.of("log"))
    assert not rec.of("resumed")
    assert rec.of("step")[0]["step"] == 1 and result.steps == 2


def test_nothing_to_train_is_an_error(tokenizer: PreTrainedTokenizerFast, tmp_path: Path) -> None:
    too_long = chat("the quick brown fox jumps over the lazy dog " * 4, "paris")
    with pytest.raises(InvalidRequestError, match="none of the 1 examples"):
        run(tokenizer, [too_long], hp(max_seq_length=16), tmp_path)
