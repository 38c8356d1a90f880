"""Checks on the packaged model catalog data (``neurons/library/catalog.json``).

These tests look only at the data file, not at the code that reads it: the facts in it feed
the memory estimator, so they must be well-formed, complete and physically plausible.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from functools import lru_cache
from importlib import resources
from typing import Any

import pytest

CATEGORIES = ("general", "code", "vision", "math", "embedding", "reasoning")
CAPABILITIES = frozenset({"completion", "tools", "vision", "embedding", "thinking", "insert"})
NAME_TAG = re.compile(r"^[a-z0-9][a-z0-9._-]*:[a-z0-9][a-z0-9._-]*$")
RELEASED = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")

# Bytes per parameter of Ollama's default download. Real data spans about 0.56 (Q4_0 of a
# mixture-of-experts model whose embeddings are a tiny share) to 2.11 (F16 embedding models,
# whose file adds tokenizer data and F32 norms to 2 bytes a weight). Q4 quantisations cannot
# go much below 0.5 and F16 cannot go much above 2, so 0.3 and 2.2 leave headroom for
# projectors (vision models) and metadata without letting a unit slip (MB vs GB, or a
# parameter count off by 1000) through.
MIN_BYTES_PER_PARAMETER = 0.3
MAX_BYTES_PER_PARAMETER = 2.2


@lru_cache(maxsize=1)
def _catalog() -> dict[str, Any]:
    text = (resources.files("neurons.library") / "catalog.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def _models() -> list[dict[str, Any]]:
    models: list[dict[str, Any]] = _catalog()["models"]
    return models


def _by_name(name: str) -> dict[str, Any]:
    for model in _models():
        if model["name"] == name:
            return model
    raise AssertionError(f"{name} is not in the catalog")


def _ids() -> list[str]:
    return [str(model["name"]) for model in _models()]


def test_file_has_a_version_and_enough_models() -> None:
    assert _catalog()["version"] == 1
    assert len(_models()) >= 60


def test_names_are_unique_name_tag_pairs() -> None:
    names = _ids()
    duplicates = [name for name, count in Counter(names).items() if count > 1]
    assert not duplicates
    for name in names:
        assert NAME_TAG.match(name), name


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_category_has_at_least_six_models(category: str) -> None:
    members = [m["name"] for m in _models() if category in m["categories"]]
    assert len(members) >= 6, (category, members)


def test_only_known_categories_and_capabilities() -> None:
    for model in _models():
        assert model["categories"], model["name"]
        assert set(model["categories"]) <= set(CATEGORIES), model["name"]
        assert model["capabilities"], model["name"]
        assert set(model["capabilities"]) <= CAPABILITIES, model["name"]


@pytest.mark.parametrize("name", _ids())
def test_required_fields_are_well_formed(name: str) -> None:
    model = _by_name(name)
    assert isinstance(model["family"], str) and model["family"]
    assert isinstance(model["description"], str) and model["description"]
    for field in ("parameters", "file_size_bytes", "context_length"):
        assert isinstance(model[field], int) and model[field] > 0, field
    assert isinstance(model["parameter_size"], str) and model["parameter_size"]
    assert isinstance(model["quantization"], str) and model["quantization"]
    if model.get("released") is not None:
        assert RELEASED.match(model["released"]), model["released"]


@pytest.mark.parametrize("name", _ids())
def test_every_model_cites_a_source(name: str) -> None:
    sources = _by_name(name)["sources"]
    assert len(sources) >= 1
    for url in sources:
        assert url.startswith("https://"), url


@pytest.mark.parametrize("name", _ids())
def test_unverified_fields_are_left_null(name: str) -> None:
    model = _by_name(name)
    for path in model.get("unverified", []):
        value: Any = model
        for part in path.split("."):
            assert isinstance(value, dict) and part in value, path
            value = value[part]
        assert value is None, f"{name}: {path} is marked unverified but set to {value!r}"


@pytest.mark.parametrize("name", _ids())
def test_architecture_facts_are_usable(name: str) -> None:
    arch = _by_name(name)["architecture"]
    if arch is None:
        return
    assert isinstance(arch["name"], str) and arch["name"]
    for field in ("embedding_length", "block_count", "head_count_kv"):
        assert isinstance(arch[field], int) and arch[field] > 0, field
    if arch.get("head_count"):
        assert arch["head_count"] % arch["head_count_kv"] == 0
    assert (arch.get("sliding_window") or 0) >= 0
    assert (arch.get("swa_pattern") or 0) >= 0
    if arch.get("swa_pattern"):
        assert arch.get("sliding_window"), "a sliding-window pattern without a window"


@pytest.mark.parametrize("name", _ids())
def test_file_size_is_plausible_for_the_parameter_count(name: str) -> None:
    model = _by_name(name)
    ratio = model["file_size_bytes"] / model["parameters"]
    assert MIN_BYTES_PER_PARAMETER <= ratio <= MAX_BYTES_PER_PARAMETER, (name, ratio)


def test_embedding_models_have_the_embedding_capability() -> None:
    for model in _models():
        if "embedding" in model["categories"]:
            assert "embedding" in model["capabilities"], model["name"]
        if "embedding" in model["capabilities"]:
            assert "embedding" in model["categories"], model["name"]


def test_smollm2_135m_matches_its_gguf() -> None:
    model = _by_name("smollm2:135m")
    assert model["context_length"] == 8192
    assert model["architecture"] == {
        **model["architecture"],
        "name": "llama",
        "block_count": 30,
        "embedding_length": 576,
        "head_count": 9,
        "head_count_kv": 3,
        "key_length": 64,
        "value_length": 64,
        "feed_forward_length": 1536,
        "vocab_size": 49152,
    }
    assert not model["architecture"]["sliding_window"]


def test_gemma3_270m_matches_its_gguf() -> None:
    model = _by_name("gemma3:270m")
    assert model["context_length"] == 32768
    assert model["architecture"] == {
        **model["architecture"],
        "name": "gemma3",
        "block_count": 18,
        "embedding_length": 640,
        "head_count": 4,
        "head_count_kv": 1,
        "key_length": 256,
        "value_length": 256,
        "feed_forward_length": 2048,
        "vocab_size": 262144,
        "sliding_window": 512,
        "swa_pattern": 6,
    }
