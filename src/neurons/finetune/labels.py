"""Tokenise training examples into ids and labels: what the loss trains on, and what not.

**Chat examples** are rendered with the tokenizer's chat template and train on the assistant
turns only: each assistant message's content plus the end-of-turn marker the template puts
after it (a special token such as ``<|im_end|>`` or ``<end_of_turn>``), so the model also
learns to stop. The content is found in the rendered text by character offsets (see
:func:`_assistant_spans`). **Text examples** train on every token, with EOS appended.

Examples are cut to ``max_seq_length``; one left with no token to train on is dropped (and
:func:`encode_examples` counts it). A label is the token id where the token is trained and
:data:`IGNORE` (-100, what ``cross_entropy`` skips) elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from jinja2 import TemplateError
from transformers import PreTrainedTokenizerBase

from neurons.errors import InvalidRequestError
from neurons.finetune.examples import Example, Message

__all__ = ["IGNORE", "Encoded", "encode_example", "encode_examples"]

IGNORE = -100  # the label cross_entropy skips: prompt tokens, padding


@dataclass(frozen=True)
class Encoded:
    """One example as token ids, with ``labels`` = the id where it is trained, else -100."""

    input_ids: list[int]
    labels: list[int]

    @property
    def trainable(self) -> int:
        """Tokens the loss counts: the first position predicts nothing (labels shift by one)."""
        return sum(1 for label in self.labels[1:] if label != IGNORE)


def _render(tokenizer: PreTrainedTokenizerBase, messages: Sequence[Message]) -> str:
    chat = [{"role": m.role, "content": m.content} for m in messages]
    text = tokenizer.apply_chat_template(chat, tokenize=False)
    if not isinstance(text, str):  # pragma: no cover - tokenize=False renders to a string
        raise TypeError(f"chat template rendered {type(text).__name__}, not str")
    return text


def _assistant_spans(
    tokenizer: PreTrainedTokenizerBase, messages: Sequence[Message], text: str
) -> list[tuple[int, int]] | None:
    """Character spans of the assistant messages' content in ``text`` (the rendered chat), or
    None when a message's content cannot be found (the template rewrote it).

    Templates often trim content, so the stripped content is searched, each message after the
    previous one. A short content could also occur in the template's own text before it (an
    answer "user" next to a ``<|user|>`` tag), so where the template renders the conversation
    up to this message as a prefix of the whole, the *last* occurrence before that prefix's
    end is taken: only the template's closing text follows a message's content. Templates
    that render earlier turns differently (some drop old reasoning) fall back to the first
    occurrence after the previous message.
    """
    spans: list[tuple[int, int]] = []
    cursor = 0
    for i, message in enumerate(messages):
        content = message.content.strip()
        if not content:
            continue
        limit = len(text)
        if i + 1 < len(messages):
            try:
                prefix = _render(tokenizer, messages[: i + 1])
            except (TemplateError, ValueError):  # a template may refuse partial chats
                prefix = None
            limit = len(prefix) if prefix is not None and text.startswith(prefix) else -1
        pos = text.rfind(content, cursor, limit) if limit >= 0 else -1
        if pos < 0:
            pos = text.find(content, cursor)
        if pos < 0:
            return None
        cursor = pos + len(content)
        if message.role == "assistant":
            spans.append((pos, cursor))
    return spans


def _marker_ids(tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    """Ids that can close a turn: special and added tokens (``<|im_end|>``, ``<end_of_turn>``,
    EOS). Ordinary text after an answer is never taken for an end marker."""
    ids = set(tokenizer.all_special_ids) | set(tokenizer.get_added_vocab().values())
    return frozenset(ids)


def _encode_chat(
    tokenizer: PreTrainedTokenizerBase, messages: Sequence[Message], markers: frozenset[int]
) -> Encoded | None:
    if not getattr(tokenizer, "chat_template", None):
        raise InvalidRequestError(
            "the base model's tokenizer has no chat template, so chat examples cannot be "
            "rendered; use text examples or a base model with a template"
        )
    text = _render(tokenizer, messages)
    spans = _assistant_spans(tokenizer, messages, text)
    if spans is None:
        return None
    # The template already wrote BOS and the turn markers as text.
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(encoding["input_ids"])
    offsets: list[tuple[int, int]] = [tuple(o) for o in encoding["offset_mapping"]]
    labels = [IGNORE] * len(ids)
    for start, end in spans:
        last = -1
        for t, (a, b) in enumerate(offsets):
            if a >= end:
                break
            if b > start and b > a:  # overlaps the content
                labels[t] = ids[t]
                last = t
        if last < 0:
            continue
        # The end-of-turn marker: the first special token after the content, past any
        # whitespace the template or an untrimmed content put in between.
        t = last + 1
        while t < len(ids) and ids[t] not in markers and not text[slice(*offsets[t])].strip():
            t += 1
        if t < len(ids) and ids[t] in markers:
            for k in range(last + 1, t + 1):
                labels[k] = ids[k]
    return Encoded(ids, labels)


def _encode_text(tokenizer: PreTrainedTokenizerBase, text: str) -> Encoded:
    ids: list[int] = list(tokenizer(text, add_special_tokens=True)["input_ids"])
    eos = tokenizer.eos_token_id
    if isinstance(eos, int) and (not ids or ids[-1] != eos):
        ids.append(eos)  # the model learns where a document ends
    return Encoded(ids, list(ids))


def encode_example(
    tokenizer: PreTrainedTokenizerBase,
    example: Example,
    max_seq_length: int,
    markers: frozenset[int] | None = None,
) -> Encoded | None:
    """``example`` as ids and labels, cut to ``max_seq_length``; None when nothing in it can
    be trained (the assistant turns were cut off, or the template rewrote them). ``markers``:
    the tokenizer's special ids, when the caller has them already."""
    if example.is_chat:
        markers = _marker_ids(tokenizer) if markers is None else markers
        encoded = _encode_chat(tokenizer, example.messages, markers)
    else:
        encoded = _encode_text(tokenizer, example.text or "")
    if encoded is None:
        return None
    cut = Encoded(encoded.input_ids[:max_seq_length], encoded.labels[:max_seq_length])
    return cut if cut.trainable else None


def encode_examples(
    tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example], max_seq_length: int
) -> tuple[list[Encoded], int]:
    """The examples that have something to train, and how many were dropped."""
    kept: list[Encoded] = []
    markers = _marker_ids(tokenizer)
    for example in examples:
        encoded = encode_example(tokenizer, example, max_seq_length, markers)
        if encoded is not None:
            kept.append(encoded)
    return kept, len(examples) - len(kept)
