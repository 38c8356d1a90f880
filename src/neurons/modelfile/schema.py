"""The typed PARAMETER schema: every option Ollama accepts in a Modelfile, with its type,
current default and meaning, and the coercion rules Ollama applies to a value.

Two kinds of values arrive here. Modelfile text (``PARAMETER temperature 0.7``) is parsed the
way Ollama's ``api.FormatParams`` does it, with Go's ``strconv`` rules: ``ParseInt(s, 10, 64)``,
``ParseFloat(s, 32)`` and ``ParseBool``. Already typed values (the ``parameters`` object of an
``/api/create`` body) follow ``Options.FromMap``: JSON numbers are accepted for integers (a
float is truncated), a bool must be a bool, and ``stop`` must be a list of strings.

>>> coerce_parameter("num_ctx", "8192")
8192
>>> coerce_parameter("use_mmap", "F")
False
>>> coerce_parameter("top_k", 3.9)
3
>>> coerce_parameter("stop", "<|eot_id|>")
['<|eot_id|>']
>>> format_parameter_value("temperature", 0.5)
['0.5']
>>> coerce_parameter("min_p", "1e-50")  # a float32, as in Ollama
0.0
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from typing import Any, Literal

import numpy

from neurons.errors import ModelfileError

__all__ = [
    "DEPRECATED_PARAMETERS",
    "PARAMETERS",
    "ParameterSpec",
    "ParameterType",
    "ParameterValue",
    "coerce_parameter",
    "format_parameter_value",
]

ParameterType = Literal["int", "float", "bool", "string_list"]
ParameterValue = int | float | bool | list[str]


@dataclass(frozen=True)
class ParameterSpec:
    """One Modelfile PARAMETER / request option.

    ``default`` is Ollama's current default, or None where Ollama leaves the option unset and
    decides at load time (``main_gpu``, ``use_mmap``). ``runner`` marks load-time options:
    changing one means reloading the model, not just sampling differently.
    """

    name: str
    type: ParameterType
    default: int | float | bool | tuple[str, ...] | None
    description: str
    runner: bool = False


def _spec(
    name: str,
    type_: ParameterType,
    default: int | float | bool | tuple[str, ...] | None,
    description: str,
    *,
    runner: bool = False,
) -> tuple[str, ParameterSpec]:
    return name, ParameterSpec(name, type_, default, description, runner)


# Current Ollama (shared/reference/ollama-api.md §2.3: api/types.go Options, Runner and
# DefaultOptions). num_ctx 4096 is the tier Ollama picks below 24 GiB of VRAM.
PARAMETERS: dict[str, ParameterSpec] = dict(
    [
        _spec("num_ctx", "int", 4096, "Context window in tokens.", runner=True),
        _spec("num_batch", "int", 512, "Prompt tokens per batch.", runner=True),
        _spec("num_gpu", "int", -1, "Layers on the GPU (-1 auto, 0 none).", runner=True),
        _spec("main_gpu", "int", None, "GPU for an unsplit model.", runner=True),
        _spec("use_mmap", "bool", None, "Memory-map the model file.", runner=True),
        _spec("num_thread", "int", 0, "CPU threads (0: runtime decides).", runner=True),
        _spec("draft_num_predict", "int", 4, "Tokens a draft model proposes.", runner=True),
        _spec("num_keep", "int", 4, "Prompt tokens kept when the context is shifted."),
        _spec("seed", "int", -1, "Random seed (-1: random)."),
        _spec("num_predict", "int", -1, "Maximum tokens to generate (-1: until a stop)."),
        _spec("top_k", "int", 40, "Sample only from the k most likely tokens."),
        _spec("top_p", "float", 0.9, "Nucleus sampling: smallest set with this probability."),
        _spec("min_p", "float", 0.0, "Drop tokens below this fraction of the top probability."),
        _spec("typical_p", "float", 1.0, "Locally typical sampling (1.0 disables)."),
        _spec("repeat_last_n", "int", 64, "Tokens looked back for repeats (0 off, -1 num_ctx)."),
        _spec("temperature", "float", 0.8, "Sampling temperature; higher is more random."),
        _spec("repeat_penalty", "float", 1.0, "Penalty for repeated tokens (1.0 disables)."),
        _spec("presence_penalty", "float", 0.0, "Penalty for tokens already present."),
        _spec("frequency_penalty", "float", 0.0, "Penalty scaled by how often a token appeared."),
        _spec("stop", "string_list", (), "Stop sequences; repeat the line for several."),
    ]
)

# Accepted in a Modelfile but dropped with a warning (parser.go deprecatedParameters). Any
# other name that is not in PARAMETERS (numa, tfs_z, ...) is an error.
DEPRECATED_PARAMETERS: frozenset[str] = frozenset(
    {
        "penalize_newline",
        "low_vram",
        "f16_kv",
        "logits_all",
        "vocab_only",
        "use_mlock",
        "mirostat",
        "mirostat_tau",
        "mirostat_eta",
    }
)

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_GO_INT = re.compile(r"[+-]?[0-9]+", re.ASCII)
# Go's float literal syntax as strconv.ParseFloat reads it: "_" only between digits (or after
# a 0x prefix), a hex mantissa needs a "p" exponent. Inf/NaN are handled (refused) apart.
_DIGITS = r"[0-9](?:_?[0-9])*"
_HEX_DIGITS = r"[0-9a-fA-F](?:_?[0-9a-fA-F])*"
_GO_DECIMAL = re.compile(
    rf"[+-]?(?:{_DIGITS}(?:\.(?:{_DIGITS})?)?|\.{_DIGITS})(?:[eE][+-]?{_DIGITS})?", re.ASCII
)
_GO_HEX = re.compile(
    rf"[+-]?0[xX](?:_?{_HEX_DIGITS}(?:\.(?:{_HEX_DIGITS})?)?|\.{_HEX_DIGITS})[pP][+-]?{_DIGITS}",
    re.ASCII,
)
_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def _spec_for(name: str) -> ParameterSpec:
    spec = PARAMETERS.get(name)
    if spec is not None:
        return spec
    if name in DEPRECATED_PARAMETERS:
        raise ModelfileError(f"parameter {name} is deprecated")
    raise ModelfileError(f"unknown parameter '{name}'")


def _as_float32(value: float, shown: str) -> float:
    """``value`` as Ollama holds it: a float32, written back as the shortest decimal that
    reads as that float32 (what Go's JSON encoder sends: 0.1 stays 0.1, 1e-50 becomes 0)."""
    # Overflowing float32 is ParseFloat's ErrRange. Inf and NaN parse in Go but cannot be
    # sent as JSON, so they fail here instead of at upload time.
    try:
        struct.pack("<f", value)
    except OverflowError:
        raise ModelfileError(f"invalid float value [{shown}]") from None
    if not math.isfinite(value):
        raise ModelfileError(f"invalid float value [{shown}]")
    return float(str(numpy.float32(value)))


def _parse_text(spec: ParameterSpec, text: str) -> ParameterValue:
    if spec.type == "string_list":
        return [text]
    if spec.type == "int":
        if _GO_INT.fullmatch(text):
            number = int(text)
            if _INT64_MIN <= number <= _INT64_MAX:
                return number
        raise ModelfileError(f"invalid int value [{text}]")
    if spec.type == "bool":
        if text in _GO_TRUE:
            return True
        if text in _GO_FALSE:
            return False
        raise ModelfileError(f"invalid bool value [{text}]")
    digits = text.replace("_", "")
    if _GO_DECIMAL.fullmatch(text):
        return _as_float32(float(digits), text)
    if _GO_HEX.fullmatch(text):
        return _as_float32(float.fromhex(digits), text)
    raise ModelfileError(f"invalid float value [{text}]")


def _coerce_typed(spec: ParameterSpec, value: object) -> ParameterValue:
    name = spec.name
    if spec.type == "bool":
        if isinstance(value, bool):
            return value
        raise ModelfileError(f'option "{name}" must be of type boolean')
    if spec.type == "string_list":
        if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
            return list(value)
        raise ModelfileError(f'option "{name}" must be of an array of strings')
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = "integer" if spec.type == "int" else "float32"
        raise ModelfileError(f'option "{name}" must be of type {kind}')
    if spec.type == "float":
        return _as_float32(float(value), repr(value))
    if isinstance(value, float) and not math.isfinite(value):
        raise ModelfileError(f"invalid int value [{value!r}]")
    number = int(value)  # JSON numbers arrive as floats in Go too; they are truncated
    if not _INT64_MIN <= number <= _INT64_MAX:
        raise ModelfileError(f"invalid int value [{value!r}]")
    return number


def coerce_parameter(name: str, raw: Any) -> ParameterValue:
    """The typed value of PARAMETER ``name``: ``raw`` is Modelfile text or a JSON value.

    Raises ModelfileError, worded as Ollama words it, for an unknown or deprecated name or a
    value of the wrong type. ``stop`` always comes back as a list.
    """
    spec = _spec_for(name)
    if isinstance(raw, str):
        return _parse_text(spec, raw)
    return _coerce_typed(spec, raw)


def format_parameter_value(name: str, value: Any) -> list[str]:
    """The Modelfile text for a value of ``name``: one string per PARAMETER line.

    ``stop`` gives one line per sequence; every other parameter gives exactly one. The text
    parses back (with :func:`coerce_parameter`) to the same value.
    """
    typed = coerce_parameter(name, value)
    if isinstance(typed, list):
        return list(typed)
    if isinstance(typed, bool):
        return ["true" if typed else "false"]
    # repr() of a float is the shortest text that reads back to it, and Go's ParseFloat reads
    # every form it produces ("0.1", "1e-05", "1e+20").
    return [repr(typed)]
