"""``format`` as a grammar: a JSON schema's strings may not hold raw control characters."""

from __future__ import annotations

import re

from llama_cpp.llama_grammar import LlamaGrammar

from neurons.neuron.llama import grammar_for_format

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


def _char_rule(grammar: str) -> str:
    (rule,) = [line for line in grammar.splitlines() if line.startswith("char ::=")]
    return rule


def test_a_schemas_strings_exclude_control_characters_as_json_does() -> None:
    """A model once answered {"name": ", <newline>"} under the converter's own rule: no JSON
    parser reads that. The rule now excludes U+0000-U+001F and U+007F, as llama.cpp's does."""
    grammar = grammar_for_format(PERSON)
    class_ = re.search(r"\[\^[^\]]*\]", _char_rule(grammar))
    assert class_ is not None and r"\x00-\x1F" in class_.group(0) and r"\x7F" in class_.group(0)
    LlamaGrammar.from_string(grammar, verbose=False)  # llama.cpp's parser takes it
    assert '"\\\\" (["\\\\/bfnrt]' in _char_rule(grammar)  # escapes still allowed
