"""The memory service with the real all-MiniLM-L6-v2: paraphrases are found (recall@1 over
the pairs in paraphrases.py), scores are cosines best first, entries of another model are
re-embedded before a search, sizes from callers are refused, and namespaces follow keys."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from neurons.auth.scopes import Scope
from neurons.auth.service import Principal
from neurons.errors import InvalidRequestError, MemoryNotFoundError, PermissionDeniedError
from neurons.memory import (
    DEFAULT_NAMESPACE,
    Embeddings,
    Generated,
    Generator,
    MemoryService,
    resolve_namespace,
)
from neurons.memory.service import MAX_K, MAX_METADATA_BYTES, MAX_TEXT_CHARS
from neurons.store import Store
from tests.memory.conftest import CountingEmbeddings
from tests.memory.paraphrases import PAIRS


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def service(store: Store, minilm: Embeddings) -> MemoryService:
    return MemoryService(store, minilm)


def test_paraphrases_are_found_first(service: MemoryService) -> None:
    assert len(PAIRS) >= 20
    ids = {}
    for stored, _ in PAIRS:
        entry, truncated = run(service.add("ns", stored, {"source": "pairs"}))
        ids[stored] = entry.id
        assert not truncated
    found = 0
    misses = []
    for stored, query in PAIRS:
        hits = run(service.search("ns", query, 1))
        if hits and hits[0].entry.id == ids[stored]:
            found += 1
        else:
            misses.append((query, hits[0].entry.text if hits else None))
    recall = found / len(PAIRS)
    print(f"recall@1 = {recall:.3f} over {len(PAIRS)} pairs; misses: {misses}")
    assert recall >= 0.9, misses


def test_search_scores_are_cosines_best_first(service: MemoryService) -> None:
    for text in ("The cat sleeps on the sofa.", "Stock prices fell sharply.", "A kitten naps."):
        run(service.add("ns", text))
    hits = run(service.search("ns", "a cat is sleeping", 3))
    assert len(hits) == 3
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(-1.0 <= s <= 1.0 + 1e-6 for s in scores)
    assert hits[-1].entry.text == "Stock prices fell sharply."
    assert hits[0].to_dict()["score"] == round(hits[0].score, 6)
    # Exactly the stored text scores (about) 1.
    (same,) = run(service.search("ns", "Stock prices fell sharply.", 1))
    assert same.score == pytest.approx(1.0, abs=1e-4)
    # k larger than the namespace: all of it; another namespace: nothing.
    assert len(run(service.search("ns", "anything", MAX_K))) == 3
    assert run(service.search("empty", "anything", 5)) == []


def test_entries_of_another_model_are_reembedded(store: Store, minilm: Embeddings) -> None:
    counting = CountingEmbeddings(minilm)
    service = MemoryService(store, counting)
    counting.digest = "sha256:" + "0" * 64  # an older version of the model
    old = [run(service.add("ns", t))[0] for t in ("red apples", "blue ocean", "green grass")]
    counting.digest = None  # the model of today
    counting.texts = 0
    (hit,) = run(service.search("ns", "the sea is blue", 1))
    assert hit.entry.id == old[1].id
    assert counting.texts == 1 + 3  # the query, then each stale entry once
    assert service.repository.stale("ns", hit.entry.digest, 10) == []
    counting.texts = 0
    run(service.search("ns", "fruit", 1))
    assert counting.texts == 1  # nothing left to re-embed


def test_delete(service: MemoryService) -> None:
    entry, _ = run(service.add("ns", "to be removed"))
    run(service.delete("ns", entry.id))
    assert run(service.search("ns", "to be removed", 5)) == []
    with pytest.raises(MemoryNotFoundError):
        run(service.delete("ns", entry.id))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.add("ns", "   "), "text is empty"),
        (lambda s: s.add("ns", "x" * (MAX_TEXT_CHARS + 1)), "at most"),
        (lambda s: s.add("ns", "x", {"v": "y" * MAX_METADATA_BYTES}), "bytes of JSON"),
        (lambda s: s.add("ns", "x", ["not", "a", "mapping"]), "JSON object"),
        (lambda s: s.add("../x", "x"), "namespace"),
        (lambda s: s.add("ns", "a\ud800b"), "not valid Unicode"),
        (lambda s: s.add("ns", "x", {"k": "\udfff"}), "not valid Unicode"),
        (lambda s: s.search("ns", "q", 0), "k must be"),
        (lambda s: s.search("ns", "q", MAX_K + 1), "k must be"),
        (lambda s: s.search("ns", "", 1), "query is empty"),
        (lambda s: s.synthesize("ns", "q", "", 1), "needs a model"),
    ],
)
def test_sizes_from_callers_are_checked(service: MemoryService, call: Any, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        run(call(service))


class RecordingGenerator(Generator):
    """Answers with a fixed text citing note 1, and keeps the prompt it was given."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    async def generate(self, model: str, prompt: str, options: Mapping[str, Any]) -> Generated:
        self.prompts.append(prompt)
        return Generated("Alice takes it black [1].", model, "n1")


def test_synthesize_numbers_the_hits_in_the_prompt(store: Store, minilm: Embeddings) -> None:
    generator = RecordingGenerator()
    service = MemoryService(store, minilm, generator)
    for stored, _ in PAIRS[:5]:
        run(service.add("ns", stored))
    result = run(service.synthesize("ns", "How does Alice drink coffee?", "some-model", 3))
    data = result.to_dict()
    assert data["summary"] == "Alice takes it black [1]." and data["cited"] == [1]
    assert [h["citation"] for h in data["hits"]] == [1, 2, 3]
    assert "coffee" in data["hits"][0]["text"]
    (prompt,) = generator.prompts
    assert prompt == data["prompt"]
    for number, hit in enumerate(data["hits"], start=1):
        assert f"[{number}] {hit['text']}" in prompt
    # Nothing found: no model is asked.
    empty = run(service.synthesize("nothing-here", "anything", "some-model", 3))
    assert empty.hits == [] and empty.prompt is None and len(generator.prompts) == 1


def test_namespaces_follow_the_callers_key() -> None:
    key = Principal(name="alice", scope=Scope.INFERENCE, key_id="k1")
    admin = Principal(name="root", scope=Scope.ADMIN, key_id="k2")
    master = Principal(name="master", scope=Scope.ADMIN)
    assert resolve_namespace(None, None) == DEFAULT_NAMESPACE
    assert resolve_namespace(master, None) == DEFAULT_NAMESPACE
    assert resolve_namespace(master, "alice") == "alice"
    assert resolve_namespace(key, None) == "alice"
    assert resolve_namespace(key, "alice") == "alice"
    with pytest.raises(PermissionDeniedError, match="only an admin key"):
        resolve_namespace(key, "bob")
    assert resolve_namespace(admin, None) == "root"
    assert resolve_namespace(admin, "alice") == "alice"
    with pytest.raises(InvalidRequestError, match="namespace"):
        resolve_namespace(master, "no spaces")
