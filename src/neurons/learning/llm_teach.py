"""LLM nodes teach each other: a teacher model's answers fine-tune a student on another node.

The teacher is a model on one neuron, the student a model on another. A teaching job
(:mod:`neurons.learning.teaching`: ``neurons learn teach``, ``POST /api/ai/learning/teach``),
with the parts this module holds,

1. asks the teacher, through the Ollama API of its node, for greedy answers (temperature 0,
   a fixed seed, bounded ``num_predict``) to the training prompts;
2. writes them as a chat JSONL file (``{"messages": [user, assistant]}`` a line) under the
   fine-tuning data directory;
3. runs a fine-tuning job with :class:`~neurons.finetune.service.FineTuningService`: LoRA on
   the student's base model, exported as a GGUF adapter and deployed to the student's node
   only, as a new model (the student "redeployed");
4. measures the student's agreement with the teacher on held-out prompts, before (the base
   student) and after (the tuned model): the mean SQuAD token F1 of the student's greedy
   answer against the teacher's (:func:`neurons.optimize.scoring.token_f1`), and how often
   both answers open with the same first words.

:func:`teacher_body` builds a teacher worth learning from out of the student's own base: a
system prompt plus a few example turns (``/api/create`` ``system`` and ``messages``) give it a
recognisable answer style that a 135M model follows under greedy decoding, and that the base
model, without that context, does not show.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from neurons.client import NodeClient
from neurons.optimize.scoring import normalize, token_f1

__all__ = [
    "HELD_OUT_PROMPTS",
    "TEACHER_EXAMPLES",
    "TEACHER_SYSTEM",
    "Agreement",
    "agreement",
    "answers",
    "chat_jsonl",
    "same_opening",
    "teacher_body",
    "training_prompts",
]

TEACHER_SYSTEM = (
    "You are Captain Brief, a pirate. Always begin with 'Arr, matey!' and answer in one "
    "short sentence."
)
# Few-shot turns baked into the teacher (``MESSAGE`` in a Modelfile): the system prompt alone
# is ignored by a 135M model; with these it answers in that style to nearly every prompt.
TEACHER_EXAMPLES: tuple[tuple[str, str], ...] = (
    ("What is the capital of Germany?", "Arr, matey! The capital of Germany be Berlin."),
    ("How many legs does a cat have?", "Arr, matey! A cat has four legs, says I."),
    ("Say something nice.", "Arr, matey! Ye be a fine sailor, says I."),
)
# Prompts none of the training prompts (the packaged beep_boop.jsonl) ask.
HELD_OUT_PROMPTS: tuple[str, ...] = (
    "What is the capital of Italy?",
    "How many legs does a dog have?",
    "What color is grass?",
    "Name an animal that can fly.",
    "What do you drink in the morning?",
    "What is three plus three?",
    "Tell me about the stars.",
    "What is a good hobby?",
    "Which month comes after May?",
    "What is snow?",
)
OPENING_WORDS = 2


@dataclass(frozen=True)
class Agreement:
    """How close a student's answers are to the teacher's on the same prompts."""

    f1: float  # mean token F1 of the student's answer against the teacher's
    opening: float  # share of answers opening with the teacher's first OPENING_WORDS words
    answers: tuple[str, ...]  # the student's answers, in prompt order

    def to_dict(self) -> dict[str, Any]:
        return {"f1": self.f1, "opening": self.opening, "answers": list(self.answers)}


# -- pure parts -------------------------------------------------------------------------------


def teacher_body(
    name: str,
    base: str,
    *,
    system: str = TEACHER_SYSTEM,
    examples: Sequence[tuple[str, str]] = TEACHER_EXAMPLES,
) -> dict[str, Any]:
    """The ``/api/create`` body of a teacher built on ``base`` with a system prompt and
    example turns."""
    messages: list[dict[str, str]] = []
    for question, answer in examples:
        messages += [
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ]
    return {"model": name, "from": base, "system": system, "messages": messages}


def training_prompts() -> list[str]:
    """The user turns of the packaged ``beep_boop.jsonl`` (48 short everyday questions)."""
    path = resources.files("neurons.finetune") / "datasets" / "beep_boop.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    return [str(json.loads(line)["instruction"]) for line in lines if line.strip()]


def chat_jsonl(pairs: Iterable[tuple[str, str]]) -> str:
    """Chat training data, one ``{"messages": [user, assistant]}`` a line; pairs whose answer
    is empty after stripping are left out (nothing to learn from them)."""
    lines = []
    for prompt, answer in pairs:
        if not answer.strip():
            continue
        messages = [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": answer.strip()},
        ]
        lines.append(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
    return "".join(lines)


def same_opening(answer: str, reference: str, words: int = OPENING_WORDS) -> bool:
    """Whether both answers open with the same first ``words`` normalized words."""
    head = normalize(reference).split()[:words]
    return bool(head) and normalize(answer).split()[:words] == head


def agreement(answers: Sequence[str], references: Sequence[str]) -> Agreement:
    """Mean token F1 and opening agreement of ``answers`` against the teacher's
    ``references``, pairwise."""
    if len(answers) != len(references):
        raise ValueError(f"{len(answers)} answers for {len(references)} references")
    if not answers:
        return Agreement(0.0, 0.0, ())
    pairs = list(zip(answers, references, strict=True))
    return Agreement(
        f1=sum(token_f1(a, r) for a, r in pairs) / len(pairs),
        opening=sum(same_opening(a, r) for a, r in pairs) / len(pairs),
        answers=tuple(answers),
    )


# -- talking to the nodes ---------------------------------------------------------------------


async def answers(
    node: NodeClient,
    model: str,
    prompts: Sequence[str],
    *,
    seed: int = 1,
    num_predict: int = 32,
) -> list[str]:
    """Greedy, non-streamed ``/api/chat`` answers of ``model`` to ``prompts``, one at a time
    (a neuron serves one request a slot)."""
    options = {"temperature": 0, "seed": seed, "num_predict": num_predict}
    replies = []
    for prompt in prompts:
        answer = await node.chat(model, [{"role": "user", "content": prompt}], options=options)
        replies.append(str((answer.get("message") or {}).get("content") or "").strip())
    return replies
