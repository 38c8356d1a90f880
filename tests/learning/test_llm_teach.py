"""LLM nodes teach each other: the pure parts (training data from the teacher's answers,
agreement scoring) and, marked slow, the whole exchange between two real embedded neurons:
a few-shot pirate teacher on one, SmolLM2-135M fine-tuned on its answers on the other."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from neurons.client import NodeClient
from neurons.config import Settings
from neurons.errors import ModelNotFoundError
from neurons.finetune.data import validate_text
from neurons.finetune.service import FineTuningService
from neurons.learning.llm_teach import (
    HELD_OUT_PROMPTS,
    TEACHER_EXAMPLES,
    TeachResult,
    agreement,
    answers,
    chat_jsonl,
    same_opening,
    teach_llm,
    teacher_body,
    training_prompts,
)
from neurons.network.manager import NetworkManager
from neurons.neuron.process import NeuronProcess
from neurons.store import open_store
from tests.conftest import start_neuron

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


def test_held_out_prompts_must_not_be_trained_on(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, ollama_base_url="")
    store = open_store(settings.resolved_database_url)

    async def main() -> None:
        network = NetworkManager(store, settings)
        service = FineTuningService(store, settings, network)
        try:
            with pytest.raises(ValueError, match="also training prompts"):
                await teach_llm(
                    service,
                    teacher="t",
                    teacher_node="a",
                    student=SMOL,
                    student_node="b",
                    tuned="s",
                    train=["What is snow?", "Hi?"],
                )
        finally:
            await service.aclose()
            await network.aclose()

    try:
        asyncio.run(main())
    finally:
        store.close()


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


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_a_teacher_node_teaches_a_student_node(neuron: NeuronProcess, tmp_path: Path) -> None:
    """The student (plain SmolLM2 on neuron B) learns the teacher's style (a pirate built
    from SmolLM2 with a system prompt and few-shot turns on neuron A) from its answers to 48
    prompts: on 10 prompts neither saw, its answers agree with the teacher's far more after
    fine-tuning than before; the tuned model is on B only."""
    student_neuron = start_neuron(tmp_path / "student-home")
    settings = Settings(
        home=tmp_path / "control",
        health_interval_s=0.5,
        ollama_base_url="",
        fine_tuning_lease_s=2.0,
    )
    store = open_store(settings.resolved_database_url)
    store.nodes.upsert("teacher", neuron.url, "embedded")
    store.nodes.upsert("student", student_neuron.url, "embedded")

    async def main() -> tuple[TeachResult, set[str], set[str]]:
        network = NetworkManager(store, settings)
        service = FineTuningService(store, settings, network)
        try:
            await network.monitor.check_all()
            async with NodeClient(neuron.url) as node:
                async for _ in node.create(teacher_body(TEACHER, SMOL)):
                    pass
            result = await teach_llm(
                service,
                teacher=TEACHER,
                teacher_node="teacher",
                student=SMOL,
                student_node="student",
                tuned=TUNED,
                hyperparameters=LEARN,
                timeout=1200,
            )
            return result, await names(neuron.url), await names(student_neuron.url)
        finally:
            await service.aclose()
            await network.aclose()

    started = time.monotonic()
    try:
        result, on_teacher, on_student = asyncio.run(main())
    finally:
        store.close()
        student_neuron.stop()
    print(json.dumps({**result.to_dict(), "wall_s": round(time.monotonic() - started)}, indent=1))

    assert result.train_count == 48 and result.held_out_count == 10
    assert result.job_metrics["deployed_to"] == ["student"]
    assert TUNED in on_student and TUNED not in on_teacher
    assert TEACHER in on_teacher and TEACHER not in on_student
    # The teacher's style is what is taught: it shows on the held-out prompts.
    assert sum(same_opening(a, "Arr, matey!") for a in result.teacher_answers) >= 9
    assert result.before.opening <= 0.1 and result.after.opening >= 0.8, result
    assert result.after.f1 >= result.before.f1 + 0.25, result
