"""Measuring a model on a node: the "measured" side of the library's performance figures.

Two small built-in sets, written for this project:

* ``general-v1``: 16 short factual and arithmetic questions with reference answers. Each is
  asked through ``/api/generate`` at temperature 0 (seed 0, at most 48 tokens); an answer
  counts when one accepted reference appears in it as a whole word, case-insensitively. The
  score is the fraction answered; tokens/s is total ``eval_count`` over total
  ``eval_duration`` from the node's own metrics.
* ``embedding-v1``: 6 (anchor, paraphrase, unrelated) triplets through ``/api/embed``; the
  score is the fraction where the paraphrase is closer (cosine) to the anchor.

The sets are deliberately tiny: they rank models on one machine in a minute, they are not a
leaderboard. Larger evaluation sets belong to the optimizer.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from neurons.client import NodeClient

__all__ = ["EMBEDDING_SET", "GENERAL_SET", "EvaluationResult", "evaluate_model"]

GENERAL_SET: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("What is the capital of France?", ("paris",)),
    ("What is 7 plus 5?", ("12", "twelve")),
    ("How many days are in a week?", ("7", "seven")),
    ("What color is the sky on a clear day?", ("blue",)),
    ("What is the largest planet in our solar system?", ("jupiter",)),
    ("Which animal is known as the king of the jungle?", ("lion",)),
    ("What is the chemical formula of water?", ("h2o",)),
    ("Who wrote Romeo and Juliet?", ("shakespeare",)),
    ("What is 9 times 3?", ("27", "twenty-seven", "twenty seven")),
    ("What is the opposite of hot?", ("cold",)),
    ("How many legs does a spider have?", ("8", "eight")),
    ("At how many degrees Celsius does water freeze?", ("0", "zero")),
    ("Which language is mainly spoken in Brazil?", ("portuguese",)),
    ("What is the square root of 81?", ("9", "nine")),
    ("In Python, which keyword starts a function definition?", ("def",)),
    ("Which gas do plants take in from the air for photosynthesis?", ("carbon dioxide", "co2")),
)

EMBEDDING_SET: tuple[tuple[str, str, str], ...] = (
    ("A cat sits on the mat.", "A kitten is resting on a rug.", "The stock market fell today."),
    (
        "How do I bake bread?",
        "What is a simple recipe for a loaf of bread?",
        "Which planet is closest to the sun?",
    ),
    (
        "The car would not start this morning.",
        "My vehicle's engine failed to turn over today.",
        "She painted the fence white.",
    ),
    (
        "It is raining heavily outside.",
        "There is a strong downpour right now.",
        "The concert was sold out.",
    ),
    (
        "He scored the winning goal.",
        "The striker's shot decided the match.",
        "The recipe needs two eggs.",
    ),
    (
        "The meeting is moved to Friday.",
        "We rescheduled the meeting for Friday.",
        "Penguins live in the southern hemisphere.",
    ),
)


@dataclass
class EvaluationResult:
    model: str
    node: str
    evaluation_set: str
    items: int
    score: float
    tokens_per_second: float | None
    details: dict[str, Any] = field(default_factory=dict)


def _answered(answer: str, accepted: tuple[str, ...]) -> bool:
    text = answer.lower()
    return any(re.search(rf"(?<![\w]){re.escape(ref)}(?![\w])", text) for ref in accepted)


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


async def _general(node: NodeClient, model: str, limit: int | None) -> EvaluationResult:
    items = GENERAL_SET[:limit] if limit else GENERAL_SET
    correct, tokens, nanoseconds = 0, 0, 0
    answers = []
    for question, accepted in items:
        reply = await node.generate(
            model,
            f"Answer in a few words. {question}",
            options={"temperature": 0, "seed": 0, "num_predict": 48},
        )
        answer = str(reply.get("response", ""))
        ok = _answered(answer, accepted)
        correct += ok
        tokens += int(reply.get("eval_count") or 0)
        nanoseconds += int(reply.get("eval_duration") or 0)
        answers.append({"question": question, "answer": answer.strip()[:200], "correct": ok})
    return EvaluationResult(
        model=model,
        node=node.name,
        evaluation_set="general-v1",
        items=len(items),
        score=correct / len(items),
        tokens_per_second=round(tokens / (nanoseconds / 1e9), 2) if nanoseconds else None,
        details={"answers": answers},
    )


async def _embedding(node: NodeClient, model: str, limit: int | None) -> EvaluationResult:
    items = EMBEDDING_SET[:limit] if limit else EMBEDDING_SET
    correct = 0
    for anchor, positive, negative in items:
        a, p, n = await node.embed(model, [anchor, positive, negative])
        correct += _cosine(a, p) > _cosine(a, n)
    return EvaluationResult(
        model=model,
        node=node.name,
        evaluation_set="embedding-v1",
        items=len(items),
        score=correct / len(items),
        tokens_per_second=None,
    )


async def evaluate_model(
    node: NodeClient, model: str, *, embedding: bool = False, limit: int | None = None
) -> EvaluationResult:
    """Run the built-in set that fits the model (``limit`` takes the first items only)."""
    if embedding:
        return await _embedding(node, model, limit)
    return await _general(node, model, limit)
