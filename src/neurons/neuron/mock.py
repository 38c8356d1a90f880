"""Mock mode: a neuron with a simulated token source (``neurons serve-node --mock``).

For demos, UI work and client tests on machines without a model or llama.cpp. Only the token
source is simulated: :class:`MockEngine` overrides the engine's three seams that open
llama.cpp (a generation model, an embedding model, a ``format``'s grammar) with stand-ins
from here, and everything else is the real neuron: the Ollama routes and their JSON, the
model store, templates and tool-call parsing, the request queue, the decode loop with its
batching, stop sequences, ``num_predict`` and counters, keep-alive and ``/api/ps``. So the
wire format is exactly the real one; the words are not (see :mod:`neurons.neuron.mock_text`).

The models are real manifests in a models directory of their own (``HOME/mock-models``
unless ``--models`` says otherwise, so a mock run never writes into the real store). Their
model layer is a GGUF *header* written here: metadata only, no tensors and no weights, so
``/api/show`` and ``/api/tags`` read it as they read any model. ``mock:latest`` and the
settings' default model generate (capabilities completion, tools, insert);
``mock-embed:latest`` is an embedding model. ``/api/pull`` answers a clear 400: there is no
registry in mock mode. ``/api/create``, copy and delete work as usual (a created model is
simulated too).
"""

from __future__ import annotations

import json
import logging
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter

from neurons.errors import InvalidRequestError
from neurons.hardware.gguf import ModelProfile
from neurons.neuron.create import CreateSpec, create_model
from neurons.neuron.engine import Engine
from neurons.neuron.llama import EmbeddingModel, GenerationModel, SlotSampler, Vocabulary
from neurons.neuron.mock_text import BOS, EOS, N_VOCAB, MockVocab, embedding_vector, plan_reply
from neurons.neuron.modelstore import ModelStore
from neurons.neuron.options import LoadOptions
from neurons.ollama.ggufmeta import GGUFInfo
from neurons.ollama.names import ModelName

__all__ = [
    "BANNER",
    "MOCK_EMBED_MODEL",
    "MOCK_MODEL",
    "MOCK_TEMPLATE",
    "MockEngine",
    "MockSpec",
    "install_mock_models",
    "mock_gguf",
    "mock_router",
]

log = logging.getLogger(__name__)

BANNER = "MOCK MODE: simulated neuron, no model, deterministic tokens"
MOCK_MODEL = "mock:latest"
MOCK_EMBED_MODEL = "mock-embed:latest"
STEP_SECONDS = 0.01  # one decode step: about 100 tokens/s a stream, so streaming is visible
EMBEDDING_LENGTH = 384
CONTEXT_LENGTH = 8192

# ChatML-like, with .Tools (capability tools), .Suffix (insert) and Ollama's tool-call
# branch, whose ``<tool_call>`` tells the reply parser what a call looks like.
MOCK_TEMPLATE = """{{- if .Suffix }}<|fim_prefix|>{{ .Prompt }}<|fim_suffix|>{{ .Suffix }}\
<|fim_middle|>
{{- else }}
{{- if .Tools }}<|system|>
{{ if .System }}{{ .System }}

{{ end }}<tools>{{ .Tools }}</tools>
Call a tool as <tool_call>{"name": "...", "arguments": {...}}</tool_call>
{{ else if .System }}<|system|>
{{ .System }}
{{ end }}
{{- range .Messages }}
{{- if eq .Role "user" }}<|user|>
{{ .Content }}
{{ else if eq .Role "assistant" }}<|assistant|>
{{ if .Content }}{{ .Content }}{{ else if .ToolCalls }}<tool_call>
{{- range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}
{{- end }}</tool_call>{{ end }}
{{ else if eq .Role "tool" }}<|tool|>
{{ .Content }}
{{ end }}
{{- end }}<|assistant|>
{{ end }}"""


@dataclass(frozen=True)
class MockSpec:
    """What ``serve-node --mock`` asks for: the generation models' names (``mock:latest``
    and ``mock-embed:latest`` always come too) and the time one decode step takes."""

    models: tuple[str, ...] = ()
    step_seconds: float = STEP_SECONDS

    @property
    def names(self) -> list[str]:
        names: list[str] = []
        for name in (MOCK_MODEL, *self.models, MOCK_EMBED_MODEL):
            if all(ModelName.parse(name).key() != ModelName.parse(n).key() for n in names):
                names.append(name)
        return names

    def engine(self, store: ModelStore, **options: Any) -> Engine:
        return MockEngine(store, step_seconds=self.step_seconds, **options)


# -- the models --------------------------------------------------------------------------

_U32, _STRING = 4, 8


def mock_gguf(embedding: bool = False) -> bytes:
    """A GGUF v3 header with no tensors: what ``/api/show`` reports, and nothing to load."""
    arch = "mock"
    values: list[tuple[str, int | str]] = [
        ("general.architecture", arch),
        ("general.name", "neurons mock " + ("embedding" if embedding else "generation")),
        ("general.description", "Simulated by neurons mock mode: no weights, made-up tokens."),
        ("general.file_type", 1),  # F16: a plausible quantization_level
        (f"{arch}.context_length", CONTEXT_LENGTH),
        (f"{arch}.embedding_length", EMBEDDING_LENGTH),
        (f"{arch}.block_count", 0),
    ]
    if embedding:
        values.append((f"{arch}.pooling_type", 1))  # what makes Ollama call it "embedding"

    def text(value: str) -> bytes:
        data = value.encode("utf-8")
        return struct.pack("<Q", len(data)) + data

    out = [b"GGUF", struct.pack("<IQQ", 3, 0, len(values))]
    for key, value in values:
        if isinstance(value, str):
            out += [text(key), struct.pack("<I", _STRING), text(value)]
        else:
            out += [text(key), struct.pack("<II", _U32, value)]
    return b"".join(out)


def install_mock_models(store: ModelStore, names: Iterable[str]) -> list[str]:
    """Create the mock models that are missing (through ``create_model``, as the offline
    defaults are); returns the names created."""
    store.ensure()
    created = []
    for name in names:
        if store.find(name) is not None:
            continue
        embedding = ModelName.parse(name).key() == ModelName.parse(MOCK_EMBED_MODEL).key()
        layer = store.add_blob_bytes(mock_gguf(embedding))
        body: dict[str, Any] = {"model": name, "files": {"mock.gguf": layer.digest}}
        if not embedding:
            body["template"] = MOCK_TEMPLATE
        for _ in create_model(store, CreateSpec.from_request(body)):
            pass
        created.append(name)
    if created:
        log.info("created mock models %s", ", ".join(created))
    return created


# -- llama.cpp stand-ins ------------------------------------------------------------------
# Subclasses, so the engine and the decode loop take them where they take the real ones;
# each overrides every member those use, and never calls into llama.cpp.


class _MockVocabulary(Vocabulary):
    def __init__(self, vocab: MockVocab) -> None:  # no super(): there is no llama.cpp model
        self.mock = vocab
        self.n_vocab = N_VOCAB

    def tokenize(self, text: str, add_bos: bool = True) -> list[int]:
        return self.mock.tokenize(text)

    def piece(self, token: int) -> bytes:
        return self.mock.piece(token)

    def token_text(self, token: int) -> str:
        return self.mock.piece(token).decode("utf-8", errors="replace")

    @property
    def adds_bos(self) -> bool:
        return False

    @property
    def bos_text(self) -> str:
        return ""

    @property
    def eos_text(self) -> str:
        return ""

    def is_end_of_generation(self, token: int) -> bool:
        return token in (EOS, BOS)


class _MockSampler(SlotSampler):
    """Plans the whole reply from the prompt (``accept_prompt``) and the seed, then hands
    out its tokens; ``grammar`` is the ``format`` as JSON (``MockEngine._format_grammar``)."""

    def __init__(self, vocab: _MockVocabulary, seed: int, grammar: str | None) -> None:
        self._vocab = vocab
        self._seed = seed
        self._schema = None if grammar is None else json.loads(grammar)
        self._plan: list[int] = []
        self._next = 0

    def accept_prompt(self, tokens: list[int]) -> None:
        prompt = self._vocab.mock.detokenize(tokens)
        schema = self._schema
        if schema == "json":
            schema = {}
        reply = plan_reply(prompt, self._seed, schema)
        self._plan = [*self._vocab.mock.tokenize(reply), EOS]

    def sample(self, owner: GenerationModel, index: int) -> int:
        token = self._plan[self._next] if self._next < len(self._plan) else EOS
        self._next += 1
        if isinstance(owner, _MockGenerationModel):
            owner.sampled[index] = token
        return token

    def close(self) -> None:
        self._plan = []


class _MockGenerationModel(GenerationModel):
    def __init__(
        self, vocab: _MockVocabulary, *, n_ctx: int, slots: int, n_batch: int, step: float
    ) -> None:  # no super(): nothing to load
        self.vocab = vocab
        self.n_ctx = n_ctx
        self.slots = slots
        self.n_batch = n_batch
        self.can_trim = True
        self.n_swa = 0
        self.step = step
        self.sampled: dict[int, int] = {}  # batch index → token, for logprobs
        self._alternatives = vocab.mock.word_ids()[:3]

    def sampler(self, **options: Any) -> SlotSampler:
        assert isinstance(self.vocab, _MockVocabulary)
        return _MockSampler(self.vocab, int(options.get("seed", -1)), options.get("grammar"))

    def decode(
        self, tokens: list[int], positions: list[int], seqs: list[int], logits: list[bool]
    ) -> None:
        self.sampled.clear()
        time.sleep(self.step)

    def logprobs(self, index: int) -> np.ndarray[Any, np.dtype[np.float32]]:
        """Made up, but well formed: the chosen token most likely, three words behind it."""
        result = np.full(N_VOCAB, -30.0, dtype=np.float32)
        for token, logprob in zip(self._alternatives, (-2.5, -3.0, -3.5), strict=True):
            result[token] = logprob
        result[self.sampled.get(index, EOS)] = -0.15
        return result

    def keep_prefix(self, seq: int, length: int) -> int:
        return length  # a simulated cache can always be cut back

    def close(self) -> None:
        self.sampled.clear()


class _MockEmbeddingModel(EmbeddingModel):
    def __init__(self, vocab: _MockVocabulary, *, n_ctx: int, dimensions: int) -> None:
        self.vocab = vocab
        self.n_ctx = n_ctx
        self.slots = 1
        self.dimensions = dimensions

    def embed(self, texts: list[str]) -> list[list[float]]:
        return [embedding_vector(text, self.dimensions) for text in texts]

    def close(self) -> None:
        pass


class MockEngine(Engine):
    """The real :class:`Engine` with the simulated token source."""

    def __init__(self, store: ModelStore, *, step_seconds: float = STEP_SECONDS, **options: Any):
        super().__init__(store, **options)
        self.step_seconds = step_seconds
        self._vocab = _MockVocabulary(MockVocab())  # one tokenizer for every mock model

    def _open_generation(
        self, path: Path, info: GGUFInfo, load: LoadOptions, slots: int, adapter: Path | None
    ) -> GenerationModel:
        return _MockGenerationModel(
            self._vocab,
            n_ctx=load.num_ctx,
            slots=slots,
            n_batch=load.num_batch,
            step=self.step_seconds,
        )

    def _open_embedding(
        self, path: Path, info: GGUFInfo, load: LoadOptions, adapter: Path | None
    ) -> EmbeddingModel:
        dimensions = info.embedding_length or EMBEDDING_LENGTH
        return _MockEmbeddingModel(self._vocab, n_ctx=load.num_ctx, dimensions=dimensions)

    def _format_grammar(self, fmt: Any) -> str:
        return json.dumps(fmt)  # the mock sampler reads the schema itself

    def _slots_that_fit(
        self, info: GGUFInfo, profile: ModelProfile | None, load: LoadOptions
    ) -> int:
        return self.num_parallel  # a simulated model takes no memory


# -- routes that differ ------------------------------------------------------------------

mock_router = APIRouter()


@mock_router.post("/api/pull")
async def pull() -> None:
    """Included before the real routes, so it answers instead of them."""
    raise InvalidRequestError(
        "pull is not available in mock mode: this neuron simulates its models "
        "(see /api/tags) and has no registry"
    )
