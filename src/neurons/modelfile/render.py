"""Writing a Modelfile back as text that parses to the same instructions.

The format follows Ollama's ``Modelfile.String()``: one instruction per line, the command
upper-case, ``PARAMETER name value`` and ``MESSAGE role text``, in source order. Its quoting
does not always read back (a value that starts with ``"``, a tab at an end, ``\"\"\"``
inside a multi-line value), so each value here takes one of three forms that the parser
reads back exactly:

1. **plain** when the value is not empty, has no line end, does not start with ``"`` and has
   no space or tab at either end;
2. ``\"\"\"value\"\"\"`` when no ``\"\"\"`` comes directly before a line end (blanks between
   allowed) and the value has a line end or cannot take form 3;
3. ``"value"`` when the line-end rule cannot end it early: no ``"`` directly before a line
   end, and ``"value"`` does not open with ``\"\"\"``.

A value that fits none of them contains ``\"\"\"`` before a line end (which fails form 1
and 3 as well). The parser cannot produce one: a quoted value ends at the first line end
where the text read so far is a closed quote, and a ``\"\"\"`` before a line end closes
both quote forms right there, so the rest could never be part of that value. :func:`render`
raises ModelfileError for such a value (only a Modelfile built in code can hold one).
Characters the parser drops (control and format characters, non-ASCII spaces) are written
as they are and, as in Ollama, do not survive a re-parse.

>>> from neurons.modelfile.parser import parse
>>> text = 'from llama3\\nsystem \"\"\" Be brief. \"\"\"\\nparameter stop "<end>"'
>>> print(render(parse(text)), end="")
FROM llama3
SYSTEM " Be brief. "
PARAMETER stop <end>
"""

from __future__ import annotations

import re

from neurons.errors import ModelfileError
from neurons.modelfile.parser import Instruction, Modelfile

__all__ = ["quote", "render", "render_instruction"]

_QUOTE_BEFORE_LINE_END = re.compile(r'"[ \t]*[\r\n]')
_TRIPLE_BEFORE_LINE_END = re.compile(r'"""[ \t]*[\r\n]')


def quote(value: str) -> str:
    """``value`` as Modelfile argument text that the parser reads back as ``value``."""
    multiline = "\n" in value or "\r" in value
    if value and not multiline and value[0] not in ' \t"' and value[-1] not in " \t":
        return value
    single = (
        not value.startswith('""') and value != '"' and not _QUOTE_BEFORE_LINE_END.search(value)
    )
    triple = not _TRIPLE_BEFORE_LINE_END.search(value)
    # Multi-line text reads best in triple quotes, the way Modelfiles are usually written.
    if triple and (multiline or not single):
        return f'"""{value}"""'
    if single:
        return f'"{value}"'
    raise ModelfileError(f'cannot be written in a Modelfile: {value!r} has """ before a line end')


def render_instruction(instruction: Instruction) -> str:
    command, value = instruction.command, quote(instruction.value)
    if command in ("parameter", "message"):
        return f"{command.upper()} {instruction.key or ''} {value}"
    return f"{command.upper()} {value}"


def render(modelfile: Modelfile) -> str:
    """Normalised Modelfile text: ``parse(render(m)) == m`` for every ``m`` that
    :func:`~neurons.modelfile.parser.parse` returns."""
    return "".join(render_instruction(i) + "\n" for i in modelfile.instructions)
