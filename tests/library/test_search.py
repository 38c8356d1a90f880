"""Library search over hand-made catalog models: relevance per the module docstring's weights,
ordering, filters, pagination, lookups and parameter-count parsing.

Relevance weights (``neurons.library.search``): exact name 1.0, name word 0.9, family 0.8,
capability or category 0.7, description 0.5; the mean over the query's words; an empty query
scores 1.0 and a score of 0 leaves the model out. Quality figures here are either measured
(a ``Measurement``) or the size formula ``0.30 + 0.19·log10(p / 1.35e8)`` + 0.02/year after
2023 (``neurons.library.performance``), worked out by hand in the comments.
"""

from __future__ import annotations

from typing import Any

import pytest

from neurons.errors import InvalidRequestError, ModelNotFoundError
from neurons.library.catalog import CATEGORIES, ArchitectureFacts, CatalogModel, size_class
from neurons.library.discovery import LocalCopy
from neurons.library.performance import Measurement
from neurons.library.search import Library, LibraryEntry, parse_parameter_count

ARCH = ArchitectureFacts(
    name="llama", block_count=16, embedding_length=2048, head_count=32, head_count_kv=8
)


def make_model(
    name: str,
    *,
    family: str = "llama",
    description: str = "A model.",
    parameters: int = 1_000_000_000,
    capabilities: tuple[Any, ...] = ("completion",),
    categories: tuple[Any, ...] = ("general",),
    released: str | None = None,
) -> CatalogModel:
    return CatalogModel(
        name=name,
        family=family,
        description=description,
        parameters=parameters,
        parameter_size=f"{parameters / 1e9:g}B",
        quantization="Q4_K_M",
        file_size_bytes=max(parameters // 2, 1),
        context_length=8192,
        capabilities=capabilities,
        categories=categories,
        released=released,
        architecture=ARCH,
    )


# Quality by the size formula (no measurement):
#   alpha      7e9, 2024:    0.30 + 0.19·log10(51.85) + 0.02 = 0.6458 -> 0.646
#   betacoder  3e9, 2024:    0.30 + 0.19·log10(22.22) + 0.02 = 0.5759 -> 0.576
#   gamma      4e9, 2025:    0.30 + 0.19·log10(29.63) + 0.04 = 0.6197 -> 0.620
#   delta      1.35e8, 2024: 0.30 + 0 + 0.02                  = 0.320
#   embedder   3.35e8, none: 0.30 + 0.19·log10(2.481)         = 0.3750 -> 0.375
CATALOG: tuple[CatalogModel, ...] = (
    make_model(
        "alpha:7b",
        description="A friendly chat assistant for conversations",
        parameters=7_000_000_000,
        capabilities=("completion", "tools"),
        released="2024-07",
    ),
    make_model(
        "betacoder:3b",
        family="qwen2",
        description="Writes and explains source code",
        parameters=3_000_000_000,
        capabilities=("completion", "insert"),
        categories=("code",),
        released="2024-11",
    ),
    make_model(
        "gamma:latest",
        family="gemma3",
        description="Multilingual model that reads images",
        parameters=4_000_000_000,
        capabilities=("completion", "vision"),
        categories=("general", "vision"),
        released="2025-03",
    ),
    make_model(
        "delta:135m",
        description="Tiny assistant",
        parameters=135_000_000,
        released="2024-11",
    ),
    make_model(
        "embedder:v1",
        family="bert",
        description="Sentence embeddings for retrieval",
        parameters=335_000_000,
        capabilities=("embedding",),
        categories=("embedding",),
    ),
)
QUALITY = {
    "alpha:7b": 0.646,
    "betacoder:3b": 0.576,
    "gamma:latest": 0.62,
    "delta:135m": 0.32,
    "embedder:v1": 0.375,
}


def copy_on(node: str, capabilities: tuple[str, ...] = ()) -> LocalCopy:
    return LocalCopy(
        node=node,
        size_bytes=1000,
        digest="sha256:" + "ab" * 32,
        context_length=8192,
        parameter_size="7B",
        quantization="Q4_K_M",
        capabilities=capabilities,
    )


def measurement(model: str, score: float | None, tps: float | None = None) -> Measurement:
    return Measurement(
        model=model,
        node="node-a",
        score=score,
        tokens_per_second=tps,
        items=16,
        measured_at="2025-01-01T00:00:00.000000+00:00",
    )


def library(**kwargs: Any) -> Library:
    return Library(CATALOG, **kwargs)


def scores(query: str, lib: Library | None = None) -> dict[str, float]:
    page = (lib or library()).search(query, page_size=200)
    return {entry.name: score for entry, score in page.results}


def names(lib: Library, query: str = "", **filters: Any) -> list[str]:
    return [entry.name for entry, _ in lib.search(query, page_size=200, **filters).results]


# -- relevance --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {name: 1.0 for name in QUALITY}),
        ("alpha", {"alpha:7b": 1.0}),
        ("Alpha:7B ", {"alpha:7b": 1.0}),
        ("gamma:latest", {"gamma:latest": 1.0}),
        ("7b", {"alpha:7b": 0.9}),
        ("latest", {"gamma:latest": 0.9}),
        ("llama", {"alpha:7b": 0.8, "delta:135m": 0.8}),
        ("tools", {"alpha:7b": 0.7}),
        ("code", {"betacoder:3b": 0.7}),  # category 0.7 beats the description's "code" 0.5
        ("vision", {"gamma:latest": 0.7}),
        ("conversations", {"alpha:7b": 0.5}),
        ("conv", {"alpha:7b": 0.5}),  # a prefix of three letters or more counts
        ("emb", {"embedder:v1": 0.9}),  # name prefix 0.9 beats capability 0.7
        ("assistant", {"alpha:7b": 0.5, "delta:135m": 0.5}),
        ("llama conversations", {"alpha:7b": 0.65, "delta:135m": 0.4}),
        ("gemma3 vision", {"gamma:latest": 0.75}),
        ("tiny llama", {"delta:135m": 0.65, "alpha:7b": 0.4}),
        ("alpha zzz qqq", {"alpha:7b": 0.3}),  # 0.9 / 3: not the exact-name shortcut
        ("zzz", {}),
        ("co", {}),  # two letters: whole words only, and no field has the word "co"
    ],
    ids=[
        "empty",
        "exact-base-name",
        "exact-name-case-and-space",
        "exact-name-with-tag",
        "name-word-tag",
        "name-word-latest",
        "family",
        "capability",
        "category-beats-description",
        "capability-and-category",
        "description",
        "prefix",
        "name-prefix",
        "description-two-models",
        "mean-family-description",
        "mean-family-capability",
        "mean-ranks-all-words-first",
        "mean-with-misses",
        "no-match",
        "short-word-no-prefix",
    ],
)
def test_relevance_scores(query: str, expected: dict[str, float]) -> None:
    assert scores(query) == expected


def test_order_is_relevance_then_performance_then_name() -> None:
    lib = library()
    # Equal relevance (family 0.8): the better estimate (alpha 0.646 > delta 0.32) first.
    assert names(lib, "llama") == ["alpha:7b", "delta:135m"]
    # Relevance first: delta matches both words (0.65), alpha one (0.4).
    assert names(lib, "tiny llama") == ["delta:135m", "alpha:7b"]
    # Empty query: everything at 1.0, by performance.
    assert names(lib) == sorted(QUALITY, key=lambda n: -QUALITY[n])
    # A measurement overrides the estimate in the ordering.
    measured = library(measurements={"delta:135m": measurement("delta:135m", 0.9)})
    assert names(measured, "llama") == ["delta:135m", "alpha:7b"]
    # Equal relevance and performance: by name, whatever the catalog order.
    twins = (
        make_model("zeta:1b", family="mistral"),
        make_model("eta:1b", family="mistral"),
    )
    assert names(Library(twins), "mistral") == ["eta:1b", "zeta:1b"]
    assert names(Library(twins[::-1]), "mistral") == ["eta:1b", "zeta:1b"]


def test_search_results_carry_quality_figures() -> None:
    lib = library(measurements={"delta:135m": measurement("delta:135m", 0.4567)})
    figures = {e.name: (e.quality.value, e.quality.source) for e in lib.entries()}
    assert figures["alpha:7b"] == (0.646, "estimate:size-v1")
    assert figures["delta:135m"] == (0.457, "measured on node-a")
    for name, value in QUALITY.items():
        if name != "delta:135m":
            assert figures[name] == (value, "estimate:size-v1")


# -- filters ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"category": "code"}, {"betacoder:3b"}),
        ({"category": "vision"}, {"gamma:latest"}),
        ({"category": "general"}, {"alpha:7b", "gamma:latest", "delta:135m"}),
        ({"category": "math"}, set()),
        ({"size": "tiny"}, {"delta:135m", "embedder:v1"}),
        ({"size": "small"}, {"betacoder:3b"}),
        ({"size": "medium"}, {"alpha:7b", "gamma:latest"}),
        ({"size": "large"}, set()),
        ({"max_parameters": 3e9}, {"betacoder:3b", "delta:135m", "embedder:v1"}),
        ({"max_parameters": 2_999_999_999}, {"delta:135m", "embedder:v1"}),
        ({"min_performance": 0.62}, {"alpha:7b", "gamma:latest"}),  # >= keeps gamma (0.620)
        ({"min_performance": 0.621}, {"alpha:7b"}),
        ({"category": "general", "size": "medium"}, {"alpha:7b", "gamma:latest"}),
    ],
    ids=[
        "category-code",
        "category-vision",
        "category-general",
        "category-empty",
        "size-tiny",
        "size-small",
        "size-medium",
        "size-large-empty",
        "max-parameters-inclusive",
        "max-parameters-below",
        "min-performance-inclusive",
        "min-performance-above",
        "combined",
    ],
)
def test_filters(filters: dict[str, Any], expected: set[str]) -> None:
    assert set(names(library(), **filters)) == expected


# tiny < 1B <= small < 4B <= medium < 14B <= large < 40B <= huge
BOUNDARIES: list[tuple[int, str]] = [
    (1, "tiny"),
    (999_999_999, "tiny"),
    (1_000_000_000, "small"),
    (3_999_999_999, "small"),
    (4_000_000_000, "medium"),
    (13_999_999_999, "medium"),
    (14_000_000_000, "large"),
    (39_999_999_999, "large"),
    (40_000_000_000, "huge"),
    (405_000_000_000, "huge"),
]


@pytest.mark.parametrize(
    ("parameters", "expected"), BOUNDARIES, ids=[f"{p}-{c}" for p, c in BOUNDARIES]
)
def test_size_class_boundaries(parameters: int, expected: str) -> None:
    assert size_class(parameters) == expected
    assert make_model("m:x", parameters=parameters).size_class == expected


@pytest.mark.parametrize("size", ["tiny", "small", "medium", "large", "huge"])
def test_size_filter_at_boundaries(size: str) -> None:
    lib = Library(tuple(make_model(f"m{p}:x", parameters=p) for p, _ in BOUNDARIES))
    expected = {f"m{p}:x" for p, c in BOUNDARIES if c == size}
    assert set(names(lib, size=size)) == expected


def test_min_performance_uses_measured_scores() -> None:
    lib = library(
        measurements={
            "delta:135m": measurement("delta:135m", 0.5),
            "alpha:7b": measurement("alpha:7b", 0.499),
        }
    )
    # delta: measured 0.5 (kept at >= 0.5), alpha: measured 0.499 (estimate 0.646 ignored).
    assert names(lib, min_performance=0.5) == ["gamma:latest", "betacoder:3b", "delta:135m"]
    assert names(lib, min_performance=0.501) == ["gamma:latest", "betacoder:3b"]


def test_installed_filter() -> None:
    lib = library(copies={"delta:135m": [copy_on("node-a")], "gamma:latest": [copy_on("b")]})
    assert names(lib, installed=True) == ["gamma:latest", "delta:135m"]
    assert names(lib, installed=False) == ["alpha:7b", "betacoder:3b", "embedder:v1"]
    assert len(names(lib, installed=None)) == len(CATALOG)
    assert names(lib, "assistant", installed=True) == ["delta:135m"]


# -- pagination and errors --------------------------------------------------------------------


def test_pagination() -> None:
    lib = library()
    everything = names(lib)
    pages = [lib.search(page=n, page_size=2) for n in (1, 2, 3, 4)]
    assert [[e.name for e, _ in p.results] for p in pages] == [
        everything[0:2],
        everything[2:4],
        everything[4:5],
        [],
    ]
    assert [(p.count, p.page, p.page_size) for p in pages] == [
        (5, 1, 2),
        (5, 2, 2),
        (5, 3, 2),
        (5, 4, 2),
    ]
    assert lib.search(page_size=200).count == 5
    assert lib.search("llama", page_size=1).count == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"category": "chatbots"},
        {"category": ""},
        {"size": "giant"},
        {"page": 0},
        {"page": -1},
        {"page_size": 0},
        {"page_size": 201},
    ],
    ids=["category", "category-empty", "size", "page-0", "page-negative", "size-0", "size-201"],
)
def test_invalid_search_requests(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError):
        library().search("x", **kwargs)


# -- lookups ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gamma", "gamma:latest"),
        ("gamma:latest", "gamma:latest"),
        ("library/gamma", "gamma:latest"),
        ("registry.ollama.ai/library/gamma", "gamma:latest"),
        ("alpha:7b", "alpha:7b"),
        ("registry.ollama.ai/library/alpha:7b", "alpha:7b"),
    ],
    ids=["bare", "tagged", "library-prefix", "registry-prefix", "other-tag", "registry-tag"],
)
def test_get_with_canonical_names(name: str, expected: str) -> None:
    assert library().get(name).name == expected


@pytest.mark.parametrize("name", ["alpha", "alpha:8b", "nothing", ""])
def test_get_unknown_model(name: str) -> None:
    with pytest.raises(ModelNotFoundError):
        library().get(name)


def test_by_category_groups_and_orders() -> None:
    lib = library(measurements={"delta:135m": measurement("delta:135m", 0.7)})
    grouped = lib.by_category()
    assert tuple(grouped) == CATEGORIES
    by_name = {c: [e.name for e in entries] for c, entries in grouped.items()}
    # Ordered by performance: delta measured 0.7 > alpha 0.646 > gamma 0.62.
    assert by_name == {
        "general": ["delta:135m", "alpha:7b", "gamma:latest"],
        "code": ["betacoder:3b"],
        "vision": ["gamma:latest"],
        "math": [],
        "embedding": ["embedder:v1"],
        "reasoning": [],
    }
    only = lib.by_category("vision")
    assert list(only) == ["vision"] and [e.name for e in only["vision"]] == ["gamma:latest"]
    with pytest.raises(InvalidRequestError):
        lib.by_category("chatbots")


def test_by_category_ties_break_by_name() -> None:
    lib = Library((make_model("b:1b"), make_model("a:1b"), make_model("c:1b")))
    assert [e.name for e in lib.by_category("general")["general"]] == ["a:1b", "b:1b", "c:1b"]


def test_local_only_models_join_the_library() -> None:
    custom = make_model("custom:latest", family="llama", description="Found on the network")
    shadow = make_model("alpha:7b", description="the node's own idea of alpha")
    lib = library(
        copies={"custom:latest": [copy_on("node-a")], "alpha:7b": [copy_on("node-b")]},
        local_models={"custom:latest": custom, "alpha:7b": shadow},
        measurements={"custom:latest": measurement("custom:latest", 0.25, 30.0)},
    )
    entry = lib.get("custom")
    assert entry.in_catalog is False
    assert entry.installed_on == [copy_on("node-a")]
    assert entry.quality.value == 0.25
    # The catalog's entry wins over a node's local description of the same name.
    alpha = lib.get("alpha:7b")
    assert alpha.in_catalog is True
    assert alpha.model.description == "A friendly chat assistant for conversations"
    assert alpha.installed_on == [copy_on("node-b")]
    assert len(lib.entries()) == len(CATALOG) + 1
    assert names(lib, "custom") == ["custom:latest"]
    summary = entry.summary()
    assert summary["in_catalog"] is False and summary["installed"] is True
    assert summary["nodes"] == ["node-a"]


def test_summary_and_details() -> None:
    lib = library(
        copies={"alpha:7b": [copy_on("node-a"), copy_on("node-b")]},
        measurements={"alpha:7b": measurement("alpha:7b", 0.75, 12.5)},
    )
    entry: LibraryEntry = lib.get("alpha:7b")
    summary = entry.summary()
    assert summary["size_class"] == "medium"
    assert summary["memory_requirements_gb"] == 3.5  # 3.5e9 bytes
    assert summary["performance_score"] == 0.75
    assert summary["performance_source"] == "measured on node-a"
    assert summary["installed"] is True and summary["nodes"] == ["node-a", "node-b"]
    assert summary["in_catalog"] is True
    details = entry.details()
    assert details["installed_on"] == [copy_on("node-a").to_dict(), copy_on("node-b").to_dict()]
    assert details["released"] == "2024-07"
    assert details["measured"] == {
        "node": "node-a",
        "score": 0.75,
        "tokens_per_second": 12.5,
        "items": 16,
        "measured_at": "2025-01-01T00:00:00.000000+00:00",
    }
    bare = lib.get("delta:135m")
    assert bare.summary()["installed"] is False and "measured" not in bare.details()


def test_capabilities_are_what_the_copies_report() -> None:
    # delta's catalog facts say completion only; its copies were made with other templates.
    lib = library(
        copies={
            "delta:135m": [
                copy_on("node-a", ("completion", "thinking")),
                copy_on("node-b", ("completion", "tools")),
                copy_on("node-c"),  # a node that reports none adds nothing
            ],
            "alpha:7b": [copy_on("node-a")],
        }
    )
    delta = lib.get("delta:135m")
    assert delta.capabilities == ("completion", "thinking", "tools")  # the union, node order
    assert delta.summary()["capabilities"] == ["completion", "thinking", "tools"]
    copies = delta.details()["installed_on"]
    assert [c["capabilities"] for c in copies] == [
        ["completion", "thinking"],
        ["completion", "tools"],
        [],
    ]
    assert "delta:135m" in scores("thinking", lib)  # search sees them too
    # No copy reports any (an Ollama without them), or none installed: the catalog's facts.
    assert lib.get("alpha:7b").capabilities == ("completion", "tools")
    assert lib.get("gamma:latest").capabilities == ("completion", "vision")


# -- parse_parameter_count --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7B", 7e9),
        ("7b", 7e9),
        ("1.5B", 1.5e9),
        ("135M", 135e6),
        ("22k", 22e3),
        ("2T", 2e12),
        ("7e9", 7e9),
        ("7000000000", 7e9),
        (" 8B ", 8e9),
        (None, None),
        ("", None),
        ("  ", None),
    ],
    ids=[
        "B",
        "b-lowercase",
        "decimal-B",
        "M",
        "k",
        "T",
        "exponent",
        "plain",
        "spaces",
        "none",
        "empty",
        "blank",
    ],
)
def test_parse_parameter_count(text: str | None, expected: float | None) -> None:
    assert parse_parameter_count(text) == expected


@pytest.mark.parametrize(
    "text",
    ["bad", "B", "7X", "-7B", "-1", "0", "0B", "inf", "nan"],
    ids=[
        "word",
        "suffix-only",
        "unknown-suffix",
        "negative-B",
        "negative",
        "zero",
        "zero-B",
        "inf",
        "nan",
    ],
)
def test_parse_parameter_count_rejects(text: str) -> None:
    with pytest.raises(InvalidRequestError):
        parse_parameter_count(text)
