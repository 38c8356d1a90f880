"""Splitting a model's streamed text into thinking and content, as Ollama's
``thinking.Parser`` does.

The tags come from the template (:meth:`~neurons.ollama.gotemplate.Template.thinking_tags`).
Whitespace before the opening tag, and right after either tag, is dropped; output that does
not start with the opening tag is all content. A tag split across pieces is held back until
it is whole.

>>> parser = ThinkingParser("<think>", "</think>")
>>> parser.add("<thi")
('', '')
>>> parser.add("nk>Let me ")
('Let me ', '')
>>> parser.add("see.</th")
('see.', '')
>>> parser.add("ink>\\n\\nHello")
('', 'Hello')
"""

from __future__ import annotations

__all__ = ["ThinkingParser"]


class ThinkingParser:
    def __init__(self, opening: str, closing: str) -> None:
        self.opening = opening
        self.closing = closing
        self._acc = ""
        self._state = "opening"  # opening → eat-start → thinking → eat-end → done

    def add(self, text: str) -> tuple[str, str]:
        """The thinking and the content that ``text`` completes."""
        self._acc += text
        thinking: list[str] = []
        content: list[str] = []
        again = True
        while again:
            think, rest, again = self._eat()
            thinking.append(think)
            content.append(rest)
        return "".join(thinking), "".join(content)

    def _eat(self) -> tuple[str, str, bool]:
        acc = self._acc
        if self._state == "opening":
            trimmed = acc.lstrip()
            if trimmed.startswith(self.opening):
                after = trimmed[len(self.opening) :].lstrip()
                self._acc = after
                self._state = "thinking" if after else "eat-start"
                return "", "", True
            if self.opening.startswith(trimmed):  # the tag may still be arriving
                return "", "", False
            self._state, self._acc = "done", ""
            return "", acc, False
        if self._state == "eat-start":
            trimmed = acc.lstrip()
            self._acc = trimmed
            if not trimmed:
                return "", "", False
            self._state = "thinking"
            return "", "", True
        if self._state == "thinking":
            if self.closing in acc:
                think, rest = acc.split(self.closing, 1)
                rest = rest.lstrip()
                self._acc = ""
                self._state = "done" if rest else "eat-end"
                return think, rest, False
            held = _overlap(acc, self.closing)
            self._acc = acc[len(acc) - held :] if held else ""
            return acc[: len(acc) - held], "", False
        if self._state == "eat-end":
            trimmed = acc.lstrip()
            self._acc = ""
            if trimmed:
                self._state = "done"
            return "", trimmed, False
        self._acc = ""
        return "", acc, False


def _overlap(text: str, delimiter: str) -> int:
    """How long a suffix of ``text`` is a prefix of ``delimiter``."""
    for size in range(min(len(delimiter), len(text)), 0, -1):
        if text.endswith(delimiter[:size]):
            return size
    return 0
