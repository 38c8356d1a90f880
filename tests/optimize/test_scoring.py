"""Scoring: SQuAD-style normalization and text metrics, similarity through a real MiniLM."""

from __future__ import annotations

import threading

import pytest

from neurons.optimize.evalsets import EvalCase
from neurons.optimize.scoring import (
    MiniLMEmbedder,
    SetScore,
    contains,
    cosine,
    exact_match,
    normalize,
    score,
    score_set,
    token_f1,
)

NORMALIZE_CASES = [
    ("", ""),
    ("   ", ""),
    ("Paris", "paris"),
    ("  The   Eiffel Tower ", "eiffel tower"),
    ("An apple, a pear.", "apple pear"),
    ("theater anthem", "theater anthem"),  # articles only as whole words
    ("def is_even(n):", "def is even n"),
    ("3.5", "3.5"),  # a decimal point between digits stays
    ("It costs 3.50.", "it costs 3.50"),
    ("v1. 2.", "v1 2"),
    ("10:30", "10 30"),
    ("$1,000!", "1 000"),
    ("«Bonjour», dit-il.", "bonjour dit il"),
    ("“Quoted” — text…", "quoted text"),
    ("ＰＡＲＩＳ", "paris"),  # full-width letters fold under NFKC
    ("Straße", "strasse"),
    ("Café", "café"),
    ("東京。", "東京"),
    ("0°C", "0 c"),  # Unicode symbols separate words like ASCII ones
    ("5 × 3 = 15 €", "5 3 15"),
]


@pytest.mark.parametrize(("text", "expected"), NORMALIZE_CASES)
def test_normalize(text: str, expected: str) -> None:
    assert normalize(text) == expected


EXACT_CASES = [
    ("Paris", "paris", 1.0),
    ("Paris.", "Paris", 1.0),
    ("The answer", "answer", 1.0),
    ("Paris, France", "Paris", 0.0),
    ("", "", 1.0),
    ("", "Paris", 0.0),
    ("CAFÉ", "café", 1.0),
]


@pytest.mark.parametrize(("answer", "reference", "expected"), EXACT_CASES)
def test_exact_match(answer: str, reference: str, expected: float) -> None:
    assert exact_match(answer, reference) == expected


CONTAINS_CASES = [
    ("The capital of France is Paris.", "Paris", 1.0),
    ("It is 42.", "4", 0.0),  # whole words only
    ("It is 42.", "42", 1.0),
    ("It equals 25.57.", "25", 0.0),
    ("It equals 25.", "25", 1.0),
    ("Use def is_even(n): return n % 2 == 0", "def is_even", 1.0),
    ("0.45 is smaller than 0.5", "0.5", 1.0),
    ("The larger is 0.45", "0.5", 0.0),
    ("2, 7, 9", "2, 7, 9", 1.0),
    ("9, 7, 2", "2, 7, 9", 0.0),
    ("Happy Birthday, Sam!", "happy birthday", 1.0),
    ("", "Paris", 0.0),
    ("", "the", 1.0),  # nothing left of the reference: equal only to an empty answer
    ("Paris", "the", 0.0),
    ("Il a dit «Bonjour».", "bonjour", 1.0),
    ("Water freezes at 0°C.", "0", 1.0),
]


@pytest.mark.parametrize(("answer", "reference", "expected"), CONTAINS_CASES)
def test_contains(answer: str, reference: str, expected: float) -> None:
    assert contains(answer, reference) == expected


F1_CASES = [
    ("red green blue", "red green blue", 1.0),
    ("Blue, green and red.", "red green blue", 2 * 0.75 * 1.0 / 1.75),
    ("carbon dioxide", "carbon dioxide", 1.0),
    ("carbon", "carbon dioxide", 2 * 1.0 * 0.5 / 1.5),
    ("oxygen", "carbon dioxide", 0.0),
    ("the the the", "a", 1.0),  # both empty once articles go
    ("", "carbon dioxide", 0.0),
    ("carbon carbon", "carbon", 2 * 0.5 * 1.0 / 1.5),  # repeated tokens count once each
]


@pytest.mark.parametrize(("answer", "reference", "expected"), F1_CASES)
def test_token_f1(answer: str, reference: str, expected: float) -> None:
    assert token_f1(answer, reference) == pytest.approx(expected)


def test_cosine() -> None:
    assert cosine([1.0, 0.0], [2.0, 0.0]) == pytest.approx(1.0)
    assert cosine([1.0, 0.0], [0.0, 3.0]) == pytest.approx(0.0)
    assert cosine([1.0, 1.0], [-1.0, -1.0]) == pytest.approx(-1.0)
    assert cosine([0.0, 0.0], [1.0, 0.0]) == 0.0
    with pytest.raises(ValueError, match="differ in length"):
        cosine([1.0], [1.0, 2.0])


class FakeEmbedder:
    """Maps each known text to a fixed vector and records every batch it is given."""

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = vectors
        self.batches: list[list[str]] = []

    def embed(self, texts: list[str]) -> list[list[float]]:
        self.batches.append(list(texts))
        return [self.vectors[text] for text in texts]


def _case(metric: str, reference: str, case_id: str = "c") -> EvalCase:
    return EvalCase(id=case_id, prompt="?", reference=reference, metric=metric)  # type: ignore[arg-type]


def test_score_dispatches_on_metric() -> None:
    assert score(_case("exact", "Paris"), "paris") == 1.0
    assert score(_case("contains", "Paris"), "It is Paris.") == 1.0
    assert score(_case("f1", "carbon dioxide"), "carbon") == pytest.approx(2 / 3)


def test_similarity_without_embedder_falls_back_to_f1() -> None:
    assert score(_case("similarity", "carbon dioxide"), "carbon") == pytest.approx(2 / 3)


def test_similarity_is_clamped_cosine() -> None:
    embedder = FakeEmbedder({"ref": [1.0, 0.0], "same": [2.0, 0.0], "opposite": [-1.0, 0.0]})
    assert score(_case("similarity", "ref"), "same", embedder) == pytest.approx(1.0)
    assert score(_case("similarity", "ref"), "opposite", embedder) == 0.0
    assert score(_case("similarity", "ref"), " ... ", embedder) == 0.0
    assert embedder.batches == [["ref", "same"], ["ref", "opposite"]]


def test_score_set_embeds_similarity_cases_in_one_batch() -> None:
    cases = [
        _case("contains", "Paris", "a"),
        _case("similarity", "r1", "b"),
        _case("similarity", "r2", "c"),
        _case("similarity", "r3", "d"),
    ]
    embedder = FakeEmbedder(
        {"r1": [1.0, 0.0], "r2": [0.0, 1.0], "r3": [1.0, 1.0], "x": [1.0, 0.0], "y": [1.0, 0.0]}
    )
    result = score_set(cases, ["Paris!", "x", "y", ""], embedder)
    assert embedder.batches == [["r1", "r2", "x", "y"]]  # the empty answer is not embedded
    assert result.per_case == pytest.approx((1.0, 1.0, 0.0, 0.0))
    assert result.mean == pytest.approx(0.5)
    assert isinstance(result, SetScore)


def test_score_set_without_similarity_cases_never_embeds() -> None:
    embedder = FakeEmbedder({})
    result = score_set([_case("exact", "yes")], ["Yes."], embedder)
    assert result == SetScore(mean=1.0, per_case=(1.0,))
    assert embedder.batches == []


def test_score_set_rejects_mismatched_or_empty_input() -> None:
    with pytest.raises(ValueError, match="1 cases but 2 answers"):
        score_set([_case("exact", "yes")], ["a", "b"])
    with pytest.raises(ValueError, match="no cases"):
        score_set([], [])


def test_score_set_rejects_embedder_returning_wrong_count() -> None:
    class Short:
        def embed(self, texts: list[str]) -> list[list[float]]:
            return [[1.0]]

    with pytest.raises(ValueError, match="1 vectors for 2 texts"):
        score_set([_case("similarity", "ref")], ["answer"], Short())


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    embedder = MiniLMEmbedder()
    embedder.embed(["warm up"])  # loads the model once for the module (about 6 s)
    return embedder


def test_minilm_ranks_paraphrase_above_unrelated(minilm: MiniLMEmbedder) -> None:
    food, bread, violin = minilm.embed(
        ["A man is eating food.", "A man is eating a piece of bread.", "A woman is playing violin."]
    )
    assert len(food) == 384
    assert cosine(food, bread) > cosine(food, violin) + 0.4


def test_minilm_similarity_score_ranks_paraphrase_first(minilm: MiniLMEmbedder) -> None:
    case = _case("similarity", "A compiler translates source code into machine code.")
    paraphrase = score(case, "It turns a program's source into machine instructions.", minilm)
    unrelated = score(case, "Bananas are yellow and grow in warm places.", minilm)
    assert 0.0 <= unrelated < paraphrase <= 1.0
    assert paraphrase - unrelated > 0.3


def test_minilm_is_shared_and_thread_safe(minilm: MiniLMEmbedder) -> None:
    texts = ["one sentence", "another sentence entirely"]
    expected = minilm.embed(texts)
    results: list[list[list[float]]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(MiniLMEmbedder().embed(texts))  # same process: no second load
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for result in results:
        assert [cosine(a, b) for a, b in zip(result, expected, strict=True)] == pytest.approx(
            [1.0, 1.0]
        )
