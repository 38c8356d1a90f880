"""Modelfiles: Ollama's parser (exactly), a renderer that round-trips, the typed PARAMETER
schema, and conversion to and from the ``/api/create`` JSON body."""

from __future__ import annotations

from neurons.errors import ModelfileError
from neurons.modelfile.convert import blob_reference, from_create_request, to_create_request
from neurons.modelfile.parser import (
    COMMANDS,
    MESSAGE_ROLES,
    Instruction,
    Modelfile,
    check,
    is_valid_requires,
    parse,
    parse_file,
    validate,
)
from neurons.modelfile.render import quote, render, render_instruction
from neurons.modelfile.schema import (
    DEPRECATED_PARAMETERS,
    PARAMETERS,
    ParameterSpec,
    ParameterType,
    ParameterValue,
    coerce_parameter,
    format_parameter_value,
)

__all__ = [
    "COMMANDS",
    "DEPRECATED_PARAMETERS",
    "MESSAGE_ROLES",
    "PARAMETERS",
    "Instruction",
    "Modelfile",
    "ModelfileError",
    "ParameterSpec",
    "ParameterType",
    "ParameterValue",
    "blob_reference",
    "check",
    "coerce_parameter",
    "format_parameter_value",
    "from_create_request",
    "is_valid_requires",
    "parse",
    "parse_file",
    "quote",
    "render",
    "render_instruction",
    "to_create_request",
    "validate",
]
