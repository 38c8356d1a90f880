"""Seed 002's model-library API on a control plane in front of a real embedded neuron.

Hardware is pinned by stats files (host: 16 GB, 8 cores; the node: 4 GB, 4 cores), so the
recommendations and compatibility answers are deterministic. No GPU exists here; the GPU case
uses a GPU stats file, and says so.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from neurons.api.app import NodeSpec, create_control_plane
from neurons.config import Settings
from neurons.neuron.modelstore import ModelStore
from neurons.neuron.process import NeuronProcess
from tests.conftest import start_neuron
from tests.e2e.test_pull import Registry

BASE = "/api/ai/ollama/models"
GB = 1_000_000_000


def _stats(path: Path, ram_gb: float, cores: int) -> Path:
    path.write_text(
        json.dumps(
            {
                "cpu": {"physical_cores": cores, "logical_cpus": cores * 2, "flags": ["avx2"]},
                "memory": {
                    "total_bytes": int(ram_gb * GB),
                    "available_bytes": int(ram_gb * GB * 0.75),
                    "bandwidth_bytes_per_s": 40 * GB,
                },
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def lib_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NeuronProcess]:
    root = tmp_path_factory.mktemp("libnode")
    stats = _stats(root / "node-stats.json", 4, 4)
    process = start_neuron(root / "home", env={"NEURONS_HOST_STATS": str(stats)})
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def api(lib_node: NeuronProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("plane")
    settings = Settings(
        home=root / "home",
        ollama_base_url="",
        host_stats=_stats(root / "host-stats.json", 16, 8),
    )
    app = create_control_plane(settings, [NodeSpec("lib-node", lib_node.url, "embedded")])
    with TestClient(app) as client:
        yield client


def _ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    assert data["success"] is True
    return data


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    data: dict[str, Any] = response.json()
    assert data["success"] is False and data["error_code"] == code
    assert data["error"] and data["timestamp"].endswith("+00:00")
    return data


def test_library_merges_catalog_and_node(api: TestClient) -> None:
    data = _ok(api.get(f"{BASE}/library"))
    categories = data["categories"]
    assert set(categories) == {"general", "code", "vision", "math", "embedding", "reasoning"}
    assert data["count"] >= 60
    general = {m["name"]: m for m in categories["general"]}
    smol = general["smollm2:135m"]
    assert smol["installed"] is True and smol["nodes"] == ["lib-node"]
    assert smol["capabilities"] == ["completion", "tools"]
    assert smol["performance_source"] in ("estimate:size-v1", "measured on lib-node")
    assert general["llama3.1:8b"]["installed"] is False
    assert general["llama3.1:8b"]["memory_requirements_gb"] == pytest.approx(4.9, abs=0.2)
    only_code = _ok(api.get(f"{BASE}/library", params={"category": "code"}))["categories"]
    assert list(only_code) == ["code"]
    _error(api.get(f"{BASE}/library", params={"category": "poetry"}), 400, "invalid_request")


def test_details_shows_real_size_and_context_from_the_node(api: TestClient) -> None:
    model = _ok(api.get(f"{BASE}/details/gemma3:270m"))["model"]
    (copy,) = model["installed_on"]
    assert copy["node"] == "lib-node" and copy["context_length"] == 32768
    assert copy["capabilities"] == model["capabilities"] == ["completion"]
    assert copy["size_bytes"] > 200_000_000 and model["sources"]


def test_search_relevance_filters_and_pages(api: TestClient) -> None:
    data = _ok(api.get(f"{BASE}/search", params={"query": "coder"}))
    names = [r["name"] for r in data["results"]]
    assert "qwen2.5-coder:7b" in names
    scores = [r["relevance_score"] for r in data["results"]]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0
    small_code = _ok(api.get(f"{BASE}/search", params={"category": "code", "size": "small"}))
    assert small_code["count"] > 0
    assert all(1e9 <= r["parameters"] < 4e9 for r in small_code["results"])
    assert small_code["filters"] == {"category": "code", "size": "small"}
    capped = _ok(api.get(f"{BASE}/search", params={"max_parameters": "2B", "page_size": 200}))
    assert capped["results"] and all(r["parameters"] <= 2e9 for r in capped["results"])
    strong = _ok(api.get(f"{BASE}/search", params={"min_performance": 0.8}))
    assert all(r["performance_score"] >= 0.8 for r in strong["results"])
    first = _ok(api.get(f"{BASE}/search", params={"page_size": 10}))
    second = _ok(api.get(f"{BASE}/search", params={"page_size": 10, "page": 2}))
    assert first["count"] == second["count"] >= 60
    assert not {r["name"] for r in first["results"]} & {r["name"] for r in second["results"]}
    _error(api.get(f"{BASE}/search", params={"size": "gigantic"}), 400, "invalid_request")
    _error(api.get(f"{BASE}/search", params={"min_performance": 2}), 422, "validation_error")
    _error(api.get(f"{BASE}/search", params={"max_parameters": "lots"}), 400, "invalid_request")


def test_recommendations_are_ranked_explained_and_deterministic(api: TestClient) -> None:
    params = {"task_type": "code_generation"}
    data = _ok(api.get(f"{BASE}/recommendations", params=params))
    assert data["system_info"]["available_memory_gb"] == 12.0
    assert data["system_info"]["gpu_available"] is False
    recs = data["recommendations"]
    assert len(recs) == 5
    confidences = [r["confidence_score"] for r in recs]
    assert confidences == sorted(confidences, reverse=True)
    for rec in recs:
        assert rec["reasoning"] and rec["trade_offs"] and len(rec["alternatives"]) == 3
        assert 0 < rec["expected_performance"] <= 1
    assert any("code" in r["reasoning"] for r in recs)
    assert _ok(api.get(f"{BASE}/recommendations", params=params)) == data
    tiny = _ok(api.get(f"{BASE}/recommendations", params={**params, "preferred_size": "tiny"}))
    assert tiny["recommendations"][0]["model_name"] != recs[0]["model_name"]
    embed = _ok(api.get(f"{BASE}/recommendations", params={"task_type": "embedding"}))
    assert all("embed" in r["reasoning"] for r in embed["recommendations"])
    _error(
        api.get(f"{BASE}/recommendations", params={"task_type": "poetry"}), 400, "invalid_request"
    )
    _error(api.get(f"{BASE}/recommendations"), 422, "validation_error")


def test_recommendations_for_a_node_and_the_network(api: TestClient) -> None:
    # The node reports its own (pinned) 4 GB: big models drop out there.
    host = _ok(api.get(f"{BASE}/recommendations", params={"task_type": "chat", "limit": 50}))
    node = _ok(
        api.get(
            f"{BASE}/recommendations",
            params={"task_type": "chat", "node": "lib-node", "limit": 50},
        )
    )
    assert node["system_info"]["available_memory_gb"] == 3.0
    assert node["system_info"]["targets"] == ["lib-node"]
    assert len(node["recommendations"]) < len(host["recommendations"])
    network = _ok(
        api.get(f"{BASE}/recommendations", params={"task_type": "chat", "scope": "network"})
    )
    assert {r["target"] for r in network["recommendations"]} == {"lib-node"}
    _error(
        api.get(f"{BASE}/recommendations", params={"task_type": "chat", "node": "nope"}),
        404,
        "node_not_found",
    )


def test_compatibility(api: TestClient) -> None:
    data = _ok(api.get(f"{BASE}/compatibility/llama3.1:8b"))
    compat = data["compatibility"]
    assert compat["hardware_compatibility"] == {
        "memory": "compatible",
        "gpu": "not_available",
        "cpu": "compatible",
    }
    assert 0 < compat["compatibility_score"] <= 1
    assert compat["tokens_per_second_source"] == "estimate:roofline-v1"
    assert compat["memory_estimate"]["num_ctx"] == 4096
    assert compat["memory_estimate"]["kv_cache_bytes"] == 512 * 2**20
    huge = _ok(api.get(f"{BASE}/compatibility/llama3.1:70b"))["compatibility"]
    assert huge["hardware_compatibility"]["memory"] == "incompatible"
    assert huge["compatibility_score"] <= 0.2 and huge["warnings"]
    longer = _ok(api.get(f"{BASE}/compatibility/llama3.1:8b", params={"num_ctx": 32768}))
    assert longer["compatibility"]["memory_estimate"]["num_ctx"] == 32768
    on_node = _ok(api.get(f"{BASE}/compatibility/llama3.1:8b", params={"node": "lib-node"}))
    assert on_node["target"] == "lib-node"
    assert on_node["compatibility"]["hardware_compatibility"]["memory"] in (
        "limited",
        "incompatible",
    )
    _error(api.get(f"{BASE}/compatibility/nope:1b"), 404, "model_not_found")
    _error(
        api.get(f"{BASE}/compatibility/llama3.1:8b", params={"num_ctx": 0}), 422, "validation_error"
    )


def test_compare(api: TestClient) -> None:
    data = _ok(api.get(f"{BASE}/compare", params={"models": "llama3.1:8b,qwen2.5:7b,gemma3:270m"}))
    table = data["comparison_table"]
    assert data["models"] == ["llama3.1:8b", "qwen2.5:7b", "gemma3:270m"]
    for row in ("performance", "memory_usage", "context", "speed"):
        assert set(table[row]) == set(data["models"])
    assert table["context"]["llama3.1:8b"] == 131072
    assert any("least memory" in line and "gemma3:270m" in line for line in data["recommendations"])
    _error(api.get(f"{BASE}/compare", params={"models": "llama3.1:8b"}), 400, "invalid_request")
    _error(
        api.get(f"{BASE}/compare", params={"models": "llama3.1:8b,zzz:1b"}), 404, "model_not_found"
    )


def test_unknown_route_and_docs(api: TestClient) -> None:
    _error(api.get("/api/ai/ollama/nothing"), 404, "not_found")
    assert api.get("/docs").status_code == 200
    paths = api.get("/openapi.json").json()["paths"]
    for path in ("library", "search", "recommendations", "compatibility/{model_name}", "compare"):
        assert f"{BASE}/{path}" in paths


def test_model_operations_on_the_node(api: TestClient, lib_node: NeuronProcess) -> None:
    copied = _ok(
        api.post(f"{BASE}/copy", json={"source": "smollm2:135m", "destination": "lib:copy"})
    )
    assert copied["nodes"] == ["lib-node"]
    installed = {m["name"]: m for m in _ok(api.get(f"{BASE}/installed"))["models"]}
    assert installed["lib:copy"]["in_catalog"] is False
    assert installed["lib:copy"]["nodes"] == ["lib-node"]

    modelfile = "FROM smollm2:135m\nSYSTEM Answer briefly.\nPARAMETER temperature 0.1\n"
    made = _ok(api.post(f"{BASE}/create", json={"name": "lib:made", "modelfile": modelfile}))
    assert made["results"] == {"lib-node": "success"}
    # A path in a Modelfile sent over the API is never read: it is just an unknown model name.
    secret = lib_node.home / "secret.gguf"
    secret.write_bytes(b"GGUF not really")
    refused = api.post(f"{BASE}/create", json={"name": "lib:path", "modelfile": f"FROM {secret}\n"})
    assert refused.status_code in (400, 404) and refused.json()["success"] is False
    bad = api.post(
        f"{BASE}/create", json={"name": "lib:bad", "modelfile": "FROM x\nPARAMETER foo 1\n"}
    )
    assert "(line 2): unknown parameter 'foo'" in _error(bad, 400, "invalid_modelfile")["error"]

    deleted = _ok(api.request("DELETE", f"{BASE}/lib:copy"))
    assert deleted["deleted_from"] == ["lib-node"]
    _error(api.request("DELETE", f"{BASE}/lib:copy"), 404, "model_not_found")
    _ok(api.request("DELETE", f"{BASE}/lib:made", params={"node": "lib-node"}))


def test_pull_through_the_library(api: TestClient, lib_node: NeuronProcess) -> None:
    registry = Registry(ModelStore(lib_node.home / "models"))
    registry.thread.start()
    try:
        name = f"{registry.host}/library/smollm2:135m"
        pulled = _ok(api.post(f"{BASE}/pull", json={"model": name, "insecure": True}))
        assert pulled["results"] == {"lib-node": "success"}
        assert name in {m["name"] for m in _ok(api.get(f"{BASE}/installed"))["models"]}
        missing = api.post(
            f"{BASE}/pull", json={"model": f"{registry.host}/library/none:x", "insecure": True}
        )
        assert missing.status_code >= 400 and missing.json()["success"] is False
        _ok(api.request("DELETE", f"{BASE}/{name}"))
    finally:
        registry.server.shutdown()
        registry.server.server_close()


def test_evaluation_makes_the_score_measured(api: TestClient) -> None:
    result = _ok(api.post(f"{BASE}/evaluate/smollm2:135m", json={"limit": 4}))
    assert result["node"] == "lib-node" and result["items"] == 4
    assert 0.0 <= result["score"] <= 1.0 and result["tokens_per_second"] > 0
    assert len(result["details"]["answers"]) == 4
    smol = _ok(api.get(f"{BASE}/details/smollm2:135m"))["model"]
    assert smol["performance_source"] == "measured on lib-node"
    assert smol["performance_score"] == round(result["score"], 3)
    compat = _ok(api.get(f"{BASE}/compatibility/smollm2:135m"))["compatibility"]
    assert compat["tokens_per_second_source"] == "measured on lib-node"
    assert compat["estimated_tokens_per_second"] == result["tokens_per_second"]
    _error(api.post(f"{BASE}/evaluate/llama3.1:8b", json={}), 404, "not_found")
