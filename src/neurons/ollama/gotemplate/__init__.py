"""A renderer for the subset of Go's ``text/template`` that Ollama Modelfile TEMPLATEs use.

>>> render("{{ if .System }}[{{ .System }}] {{ end }}{{ .Prompt }}", {"Prompt": "hi"})
'hi'

Supported: text, ``{{ actions }}`` with the trim markers ``{{- `` and `` -}}``, comments
``{{/* ... */}}``; ``.``, ``.Field.Chain``, ``$``, ``$var.Field``, ``$x := ...``, ``$x = ...``;
``if``/``else if``/``else``, ``with``/``else with``/``else``, ``range`` (optionally ``$i, $e :=``)
with ``else``, ``break`` and ``continue``; pipelines with ``|`` and parenthesised pipelines;
string (Go escapes), raw-string, character, integer, float, ``true``/``false``/``nil`` literals.
Functions: Go's ``and or not len index slice eq ne lt le gt ge print printf println``, Ollama's
``json``, and the extras ``add sub contains hasPrefix hasSuffix`` (argument order of Go's
``strings`` package: ``contains s substr``). ``define``/``template``/``block``, ``call``,
``html``/``js``/``urlquery``, methods and complex numbers are not supported (parse errors).

Deliberate differences from Go, because Ollama executes templates on structs, where a missing
field is just a zero value:

* a missing map key, and any field of ``None``, is ``None``, which prints as the empty string
  (Go prints ``<no value>`` or ``<nil>``) and compares equal to ``""``, ``0`` and ``false``
  (the zero value of the other operand); ints and floats compare numerically;
* a dict prints as compact JSON, as Ollama's tool types do through their ``String()`` methods;
  lists print Go-style, ``[a b c]``;
* ``json`` escapes like ``json.Marshal`` (``<`` becomes ``\\u003c``), but keeps dict keys in
  insertion order (Ollama's structs have a fixed field order; Go would sort map keys).

As in Go: ``range`` over a dict visits its keys sorted; ``len``/``index``/``slice`` on strings
count UTF-8 bytes; ``and``/``or`` short-circuit; variables are scoped to the enclosing control
structure; error messages read ``template: :LINE: ...``.
"""

from ._errors import TemplateError
from ._format import Struct, StructList
from ._template import Template, parse, render

__all__ = ["Struct", "StructList", "Template", "TemplateError", "parse", "render"]

# Defined in private modules; name the package, as before the split (reprs, pickling, docs).
for _public in (Struct, StructList, Template, TemplateError, parse, render):
    _public.__module__ = __name__
del _public
