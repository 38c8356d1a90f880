"""LLM nodes teach each other: the pure parts (training data from the teacher's answers,
agreement scoring) and greedy answers from a real neuron. The whole exchange between two
real embedded neurons (a few-shot pirate teacher on one, SmolLM2-135M fine-tuned on its
answers on the other) runs as a teaching job in ``test_teaching.py``, with this file's
LoRA settings (:data:`LEARN`)."""

from __future__ import annotations

import asyncio
import json

import pytest

from neurons.client import NodeClient
from neurons.errors import ModelNotFoundError
from neurons.finetune.data import validate_text
from neurons.learning.llm_teach import (
    HELD_OUT_PROMPTS,
    TEACHER_EXAMPLES,
    agreement,
    answers,
    chat_jsonl,
    same_opening,
    teacher_body,
    training_prompts,
)
from neurons.neuron.process import NeuronProcess

SMOL = "smollm2:135m"

# -- pure parts -------------------------------------------------------------------------------


def test_chat_jsonl_is_valid_conversation_data_without_empty_answers() -> None:
    text = chat_jsonl([("Say hi.", "  Arr, matey! Hi. \n"), ("Empty?", "  "), ("Ok?", "Aye.")])
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines == [
        {
            "messages": [
                {"role": "user", "content": "Say hi."},
                {"role": "assistant", "content": "Arr, matey! Hi."},
            ]
        },
        {
            "messages": [
                {"role": "user", "content": "Ok?"},
                {"role": "assistant", "content": "Aye."},
            ]
        },
    ]
    report = validate_text(text, "conversation")
    assert len(report.examples) == 2 and not report.problems
    assert chat_jsonl([]) == ""


def test_agreement_is_mean_token_f1_and_opening_rate() -> None:
    references = ["Arr, matey! Paris be the capital.", "Arr, matey! Four legs, says I."]
    same = agreement(list(references), references)
    assert same.f1 == 1.0 and same.opening == 1.0
    other = agreement(["The capital of France is Paris.", "A dog has four legs."], references)
    assert 0.0 < other.f1 < 0.5 and other.opening == 0.0
    assert other.answers == ("The capital of France is Paris.", "A dog has four legs.")
    half = agreement(["arr MATEY - Rome!", "nothing alike"], references)
    assert half.opening == 0.5
    assert agreement([], []).f1 == 0.0
    with pytest.raises(ValueError, match="1 answers for 2"):
        agreement(["x"], references)


def test_same_opening_compares_normalized_first_words() -> None:
    assert same_opening("Arr matey, the sea!", "Arr, matey! Berlin.")
    assert not same_opening("Arr! Berlin.", "Arr, matey! Berlin.")
    assert not same_opening("", "")  # nothing to agree on
    assert same_opening("Arr, matey", "Arr, ye", words=1)


def test_teacher_body_and_prompt_sets() -> None:
    body = teacher_body("pirate", SMOL)
    assert body["model"] == "pirate" and body["from"] == SMOL and body["system"]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant"] * len(TEACHER_EXAMPLES)
    prompts = training_prompts()
    assert len(prompts) == 48 and prompts[0] == "What is the capital of France?"
    assert not set(prompts) & set(HELD_OUT_PROMPTS)
    assert len(set(HELD_OUT_PROMPTS)) == 10


def test_answers_are_greedy_and_repeatable_on_a_real_neuron(neuron: NeuronProcess) -> None:
    """``answers`` asks through NodeClient.chat: the same greedy answer twice, and a model the
    node lacks is Ollama's 404 as ModelNotFoundError."""

    async def run() -> tuple[list[str], list[str]]:
        async with NodeClient(neuron.url) as node:
            first = await answers(node, SMOL, ["What is snow?"], num_predict=8)
            second = await answers(node, SMOL, ["What is snow?"], num_predict=8)
            with pytest.raises(ModelNotFoundError):
                await answers(node, "no-such-model:1b", ["Hi"], num_predict=2)
            return first, second

    first, second = asyncio.run(run())
    assert len(first) == 1 and first[0]
    assert first == second


# -- two real neurons (slow) ------------------------------------------------------------------

TEACHER = "smollm2-pirate:latest"
TUNED = "smollm2-student:latest"
# The fine-tuning e2e test's LoRA settings, one epoch fewer: the teacher's style is regular.
LEARN = {
    "preset": "efficient",
    "learning_rate": 1e-3,
    "epochs": 5,
    "batch_size": 4,
    "warmup_steps": 4,
    "lora_r": 16,
    "lora_alpha": 32,
    "max_seq_length": 128,
    "checkpoint_steps": 20,
    "seed": 1,
}


async def names(url: str) -> set[str]:
    async with NodeClient(url) as node:
        return {m["name"] for m in await node.tags()}
