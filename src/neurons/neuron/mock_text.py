"""Mock mode's token source: a reversible toy tokenizer and the replies it "generates".

Nothing here is a language model. A reply is a pure function of the rendered prompt text and
the request's seed (temperature and the other sampling options are ignored): the same prompt
and seed give the same words on every node and every run, which is what demos, UI work and
client tests need. Replies are sentences of words from :data:`WORDS`; a ``format`` gives JSON
that follows the schema; a prompt that offers tools (in the mock template's ``<tools>``
block) and ends on a user turn gets a call of one of them.

Token ids are stable too: a piece of text (a word with its leading space, or one
punctuation mark) has the id its hash names, so the ``context`` a generation returns does
not depend on what the process saw before. Two pieces that hash alike, or pieces past the
table's size, fall back to one token per UTF-8 byte, so tokenizing never loses text.

>>> vocab = MockVocab()
>>> ids = vocab.tokenize("Hello, mock world!")
>>> len(ids), vocab.detokenize(ids)
(5, 'Hello, mock world!')
>>> reply = plan_reply("<|user|>\\nhi\\n<|assistant|>\\n", seed=7)
>>> reply == plan_reply("<|user|>\\nhi\\n<|assistant|>\\n", seed=7)
True
>>> plan_reply("<|user|>\\nhi\\n<|assistant|>\\n", seed=8) != reply
True
>>> json.loads(plan_reply("x", 1, schema={"type": "object", "required": ["n"],
...     "properties": {"n": {"type": "integer"}}}))["n"] >= 0
True
>>> tools = '<tools>[{"type": "function", "function": {"name": "get_time", '
>>> tools += '"parameters": {"type": "object", "properties": {}}}}]</tools>'
>>> plan_reply(tools + "<|user|>\\nwhat time is it?\\n<|assistant|>\\n", 0)
'<tool_call>{"name": "get_time", "arguments": {}}</tool_call>'
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
from typing import Any

import numpy as np

__all__ = [
    "BOS",
    "EOS",
    "N_VOCAB",
    "WORDS",
    "MockVocab",
    "embedding_vector",
    "plan_reply",
]

BOS = 0
EOS = 1  # the end-of-generation token: a plan ends with it
_FIRST_BYTE = 2  # ids 2..257: one UTF-8 byte each (the fallback)
_FIRST_PIECE = _FIRST_BYTE + 256
_PIECE_SPACE = 1 << 16  # small: /api/generate's logprobs build an array of N_VOCAB floats
N_VOCAB = _FIRST_PIECE + _PIECE_SPACE

# Neutral words, recognisably not a model's prose.
WORDS = (
    "mock", "neuron", "signal", "token", "network", "synapse", "layer", "weight", "answer",
    "simulated", "deterministic", "pattern", "node", "gateway", "stream", "batch", "context",
    "prompt", "reply", "vector", "model", "sample", "seed", "cluster", "route", "queue",
    "message", "field", "value", "result", "demo", "test", "client", "server", "request",
    "response", "memory", "cache", "slot", "step", "output", "input", "window", "frame",
    "green", "blue", "quiet", "steady", "bright", "small", "large", "early", "late", "calm",
    "is", "are", "the", "a", "of", "to", "and", "with", "from", "in",
)  # fmt: skip

_PIECES = re.compile(r"\s*\w+|\s*[^\w\s]|\s+")


def _hash(data: str) -> int:
    return int.from_bytes(hashlib.blake2b(data.encode("utf-8"), digest_size=8).digest(), "big")


class MockVocab:
    """The toy tokenizer: thread-safe (pieces are registered under a lock, read without)."""

    def __init__(self) -> None:
        self._pieces: dict[int, bytes] = {}
        self._lock = threading.Lock()
        for word in WORDS:  # so logprobs' alternatives always have a text
            self.tokenize(" " + word)

    def tokenize(self, text: str) -> list[int]:
        ids: list[int] = []
        for match in _PIECES.finditer(text):
            ids.extend(self._piece_ids(match.group()))
        return ids

    def _piece_ids(self, piece: str) -> list[int]:
        data = piece.encode("utf-8")
        token = _FIRST_PIECE + _hash(piece) % _PIECE_SPACE
        known = self._pieces.get(token)
        if known is None:
            with self._lock:
                known = self._pieces.setdefault(token, data)
        if known == data:
            return [token]
        return [_FIRST_BYTE + byte for byte in data]  # a collision: spell it out

    def piece(self, token: int) -> bytes:
        if _FIRST_BYTE <= token < _FIRST_PIECE:
            return bytes([token - _FIRST_BYTE])
        return self._pieces.get(token, b"")

    def detokenize(self, tokens: list[int]) -> str:
        return b"".join(self.piece(t) for t in tokens).decode("utf-8", errors="replace")

    def word_ids(self) -> list[int]:
        return [self.tokenize(" " + word)[0] for word in WORDS]


# -- replies -------------------------------------------------------------------------------

_TOOLS = re.compile(r"<tools>(.*?)</tools>", re.DOTALL)


def plan_reply(prompt: str, seed: int, schema: Any = None) -> str:
    """The whole reply to ``prompt``; the decode loop then hands it out token by token."""
    rng = random.Random(_hash(f"{seed}\x00{prompt}"))
    if schema is not None:
        return json.dumps(_value(schema if isinstance(schema, dict) else {}, rng))
    tools = _offered_tools(prompt)
    if tools and prompt.rfind("<|user|>") > prompt.rfind("<|tool|>"):
        function = rng.choice(tools)
        call = {"name": function["name"], "arguments": _value(function["parameters"], rng)}
        return f"<tool_call>{json.dumps(call)}</tool_call>"
    sentences = []
    for _ in range(rng.randint(1, 3)):
        words = [rng.choice(WORDS) for _ in range(rng.randint(4, 10))]
        sentences.append(" ".join(words).capitalize() + ".")
    return " ".join(sentences)


def _offered_tools(prompt: str) -> list[dict[str, Any]]:
    """The functions the mock template listed in the prompt (the last ``<tools>`` block)."""
    found = _TOOLS.findall(prompt)
    if not found:
        return []
    try:
        tools = json.loads(found[-1])
    except ValueError:
        return []
    functions = []
    for tool in tools if isinstance(tools, list) else []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            parameters = function.get("parameters")
            functions.append(
                {
                    "name": function["name"],
                    "parameters": parameters if isinstance(parameters, dict) else {},
                }
            )
    return functions


def _value(schema: dict[str, Any], rng: random.Random, depth: int = 0) -> Any:
    """A made-up value that fits a JSON schema's common keywords (``format: "json"`` and
    anything unusual get an object of words)."""
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return rng.choice(enum)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    properties = schema.get("properties")
    if kind == "object" or isinstance(properties, dict) or kind is None:
        if depth > 4:
            return {}
        if not isinstance(properties, dict):
            return {"mock": " ".join(rng.choice(WORDS) for _ in range(3))} if depth == 0 else {}
        return {
            str(name): _value(sub if isinstance(sub, dict) else {}, rng, depth + 1)
            for name, sub in properties.items()
        }
    if kind == "array":
        items = schema.get("items")
        count = max(1, int(schema.get("minItems", 1) or 1))
        return [_value(items if isinstance(items, dict) else {}, rng, depth + 1)] * count
    if kind == "integer":
        return rng.randint(0, 100)
    if kind == "number":
        return round(rng.uniform(0, 100), 2)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return rng.choice(WORDS)


# -- embeddings ----------------------------------------------------------------------------


def embedding_vector(text: str, dimensions: int) -> list[float]:
    """A bag of words: the sum of one fixed random vector per lower-cased word, so texts that
    share words point the same way (enough for a retrieval demo to rank plausibly)."""
    words = re.findall(r"\w+", text.lower()) or [text]
    total = np.zeros(dimensions)
    for word in words:
        total += np.random.default_rng(_hash(word)).standard_normal(dimensions)
    return [float(v) for v in total]
