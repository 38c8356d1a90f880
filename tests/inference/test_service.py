"""InferenceService over the bundled all-MiniLM-L6-v2 (offline), one load shared."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest

from neurons.errors import InferenceError, InvalidRequestError, ModelLoadError
from neurons.inference.config import InferenceConfig
from neurons.inference.model import Encoder, load_encoder
from neurons.inference.service import InferenceService

T = TypeVar("T")

CORPUS = [
    "The cat sat on the mat.",
    "How do I reset my password?",
    "Paris is the capital of France.",
    "Quantum computers use qubits instead of bits.",
    "I love eating pizza on Friday nights.",
    "The stock market fell sharply today.",
    "She plays the violin in an orchestra.",
    "Photosynthesis converts sunlight into chemical energy.",
    "What time does the train leave?",
    "The weather forecast predicts heavy rain tomorrow.",
    "Machine learning models need lots of data.",
    "He ran a marathon in under three hours.",
    "The museum opens at nine in the morning.",
    "Water boils at one hundred degrees Celsius.",
    "Can you recommend a good book about history?",
    "The children built a sandcastle on the beach.",
    "Our company released a new smartphone this year.",
    "Mount Everest is the tallest mountain on Earth.",
    "Please turn off the lights when you leave.",
    "The recipe calls for two cups of flour.",
    "Electric cars are becoming more popular.",
    "The doctor prescribed antibiotics for the infection.",
    "My favourite colour is blue.",
    "The football match ended in a draw.",
    "Solar panels generate electricity from sunlight.",
    "He forgot his umbrella at the office.",
    "The library has thousands of old manuscripts.",
    "Learning a new language takes patience.",
    "The volcano erupted after centuries of silence.",
    "Hello, world!",
]


def served(
    encoder: Encoder, body: Callable[[InferenceService], Awaitable[T]], **settings: object
) -> T:
    """Run ``body`` against a started service around the shared model, then stop it."""

    async def main() -> T:
        service = InferenceService(InferenceConfig.from_dict(settings), encoder=encoder)
        await service.start()
        try:
            return await body(service)
        finally:
            await service.stop()

    return asyncio.run(main())


def cosines(a: object, b: object) -> np.ndarray:
    left, right = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    left /= np.linalg.norm(left, axis=1, keepdims=True)
    right /= np.linalg.norm(right, axis=1, keepdims=True)
    return np.asarray((left * right).sum(axis=1))


def test_describes_the_model(minilm: Encoder) -> None:
    async def body(service: InferenceService) -> None:
        assert service.dimensions == 384
        assert service.digest.startswith("sha256:") and len(service.digest) == 71
        assert service.device == "cpu"
        assert (service.name, service.model_type, service.max_length) == (
            "all-minilm",
            "sentence-transformers",
            256,
        )

    served(minilm, body)


def test_concurrent_callers_are_batched_and_match_unbatched_encode(minilm: Encoder) -> None:
    reference = minilm.encode(CORPUS[:1])  # warm
    reference = np.stack([minilm.encode([text])[0] for text in CORPUS])

    async def body(service: InferenceService) -> None:
        chunks = [CORPUS[i : i + 3] for i in range(0, len(CORPUS), 3)]
        answers = await asyncio.gather(*(service.embed(chunk) for chunk in chunks))
        vectors = [vector for answer in answers for vector in answer.embeddings]
        similarity = cosines(vectors, reference)
        assert similarity.min() > 0.9999, similarity.min()
        assert service.stats()["batching"]["largest_batch"] > 1
        assert service.metrics.inference_count == len(chunks)
        assert service.metrics.error_count == 0

    served(minilm, body, cache_size=0, batch_wait_ms=20.0)


def test_a_repeated_text_is_served_from_the_cache(minilm: Encoder) -> None:
    async def body(service: InferenceService) -> None:
        first = await service.embed(["Hello, world!", "Goodbye"])
        second = await service.embed(["Hello, world!"])
        assert first.cached == [False, False] and second.cached == [True]
        assert second.embeddings[0] == first.embeddings[0]
        assert second.prompt_tokens == first.prompt_tokens - 3  # "Goodbye" is 3 tokens
        cache = service.stats()["cache"]
        assert (cache["hits"], cache["misses"], cache["size"]) == (1, 2, 2)
        # truncate is part of the key
        assert (await service.embed(["Hello, world!"], truncate=False)).cached == [False]

    served(minilm, body)


def test_truncation_is_reported_and_refusable(minilm: Encoder) -> None:
    long = "word " * 300

    async def body(service: InferenceService) -> None:
        answer = await service.embed(["short", long])
        assert answer.truncated == [False, True]
        assert answer.prompt_tokens == 3 + 256
        with pytest.raises(InvalidRequestError, match="input length exceeds the context length"):
            await service.embed(["short", long], truncate=False)

    served(minilm, body)


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        ([], "No input text provided"),
        (["ok", "  "], "No input text provided"),
        (["ok", 3], "text 1: expected a string"),
        (["x"] * 2049, "too many texts"),
    ],
)
def test_bad_input_is_refused(minilm: Encoder, texts: list[object], message: str) -> None:
    async def body(service: InferenceService) -> None:
        with pytest.raises(InvalidRequestError, match=message):
            await service.embed(texts)  # type: ignore[arg-type]
        assert service.metrics.inference_count == 0

    served(minilm, body)


def test_embed_before_start_or_after_stop_fails(minilm: Encoder) -> None:
    async def main() -> None:
        service = InferenceService(InferenceConfig(), encoder=minilm)
        with pytest.raises(InferenceError, match="not started"):
            await service.embed(["x"])
        await service.start()
        await service.stop()
        with pytest.raises(InferenceError, match="not started"):
            await service.embed(["x"])

    asyncio.run(main())


def test_a_hub_id_fails_clearly_without_downloading() -> None:
    service = InferenceService(InferenceConfig(model_path="bert-base-uncased"))
    with pytest.raises(ModelLoadError) as caught:
        asyncio.run(service.start())
    message = str(caught.value)
    assert "not a local directory" in message and "downloads nothing" in message
    assert "save_pretrained" in message


def test_a_transformers_directory_with_mean_pooling(minilm: Encoder, tmp_path: Path) -> None:
    # The bundled model's own transformer and tokenizer, saved as a plain transformers dir.
    model = getattr(minilm, "model")  # noqa: B009 (SentenceTransformerEncoder's attribute)
    model[0].auto_model.save_pretrained(tmp_path)
    model.tokenizer.save_pretrained(tmp_path)
    config = InferenceConfig(model_path=str(tmp_path), model_type="transformer")
    encoder = load_encoder(config)

    async def main() -> None:
        service = InferenceService(config, encoder=encoder)
        await service.start()
        answer = await service.embed(CORPUS[:5])
        await service.stop()
        assert service.dimensions == 384
        # Masked mean pooling + normalize is exactly what the sentence-transformers pipeline does.
        assert cosines(answer.embeddings, minilm.encode(CORPUS[:5])).min() > 0.9999

    asyncio.run(main())


def test_int8_stays_close_to_fp32(minilm: Encoder) -> None:
    int8 = load_encoder(InferenceConfig(quantization="int8"))
    assert int8.digest == minilm.digest  # same weights, same version
    similarity = cosines(int8.encode(CORPUS), minilm.encode(CORPUS))
    report = f"int8 vs fp32 cosine: mean {similarity.mean():.4f}, min {similarity.min():.4f}"
    assert similarity.mean() >= 0.99, report
    assert similarity.min() >= 0.98, report
