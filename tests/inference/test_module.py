"""Seed 001's own tests, adapted to the bundled local model, and the module functions."""

from __future__ import annotations

import asyncio
from typing import Any

from neurons.inference import (
    EmbeddingModel,
    initialize_model,
    model_instance,
    run_model_inference,
)


def test_model_initialization_and_inference() -> None:
    async def main() -> None:
        model = EmbeddingModel()
        assert await model.initialize({"model_type": "sentence-transformers"}) is True
        result = await model.inference("Hello, world!")
        await model.close()
        assert "embeddings" in result
        assert isinstance(result["embeddings"], list)
        [vector] = result["embeddings"]
        assert len(vector) == 384 and all(isinstance(value, float) for value in vector)
        assert result["input_text"] == "Hello, world!"
        assert result["model_version"].startswith("sha256:")
        assert (result["truncated"], result["cached"]) == (False, False)

    asyncio.run(main())


def test_a_hub_id_does_not_initialize() -> None:
    async def main() -> None:
        model = EmbeddingModel()
        assert await model.initialize({"model_path": "bert-base-uncased"}) is False
        assert await model.inference("x") == {
            "error": "Model not initialized",
            "error_code": "inference_error",
        }
        assert await model.initialize({"max_lenght": 3}) is False

    asyncio.run(main())


def test_module_functions() -> None:
    async def main() -> dict[str, Any]:
        assert await initialize_model({"device": "cpu"}) is True
        try:
            assert await run_model_inference({"text": ""}) == {"error": "No input text provided"}
            assert await run_model_inference({}) == {"error": "No input text provided"}
            assert await run_model_inference({"texts": []}) == {"error": "No input text provided"}
            assert await run_model_inference({"texts": ["a", ""]}) == {
                "error": "No input text provided"
            }
            refused = await run_model_inference({"texts": ["a " * 300], "truncate": False})
            assert refused["error_code"] == "invalid_request"
            one = await run_model_inference({"text": "Hello, world!"})
            assert one["cached"] is False and len(one["embeddings"]) == 1
            many = await run_model_inference({"texts": ["Hello, world!", "a " * 300]})
            assert many["input_texts"] == ["Hello, world!", "a " * 300]
            assert many["cached"] == [True, False] and many["truncated"] == [False, True]
            assert many["embeddings"][0] == one["embeddings"][0]
            assert many["dimensions"] == 384 and many["model_type"] == "sentence-transformers"
            return many
        finally:
            await model_instance.close()

    asyncio.run(main())
