"""The public entry points: :class:`Template`, :func:`parse` and :func:`render`."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from ._exec import _Exec
from ._inspect import field_names, thinking_tags, tool_call_tag
from ._parser import _Parser


class Template:
    """A parsed template; :meth:`render` may be called any number of times."""

    __slots__ = ("_nodes", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self._nodes = _Parser(source).item_list(None)[0]

    def render(self, data: Mapping[str, Any]) -> str:
        """Execute with ``data`` as dot (and ``$``)."""
        executor = _Exec(data)
        executor.walk(data, self._nodes)
        return "".join(executor.out)

    def vars(self) -> set[str]:
        """The field names the template uses, lower-cased (Ollama's ``Vars``)."""
        return field_names(self._nodes)

    def tool_call_tag(self) -> str:
        """What the model writes before a tool call (``{`` when the template shows none)."""
        return tool_call_tag(self._nodes)

    def thinking_tags(self) -> tuple[str, str]:
        """The opening and closing thinking tags, or empty strings."""
        return thinking_tags(self._nodes)

    def __repr__(self) -> str:
        return f"Template({self.source!r})"


def parse(template: str) -> Template:
    """Parse ``template``; raises :class:`TemplateError` on a syntax error."""
    return Template(template)


@functools.lru_cache(maxsize=64)
def _cached(template: str) -> Template:
    return Template(template)


def render(template: str, data: Mapping[str, Any]) -> str:
    """Parse (cached) and execute ``template`` with ``data`` as dot."""
    return _cached(template).render(data)
