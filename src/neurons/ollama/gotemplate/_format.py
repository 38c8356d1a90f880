"""How values print and quote: Go's fmt %v, strconv.Quote and json.Marshal."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any


def _quote(s: str) -> str:
    """Go's strconv.Quote."""
    out = ['"']
    for ch in s:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append("\\" + "abfnrtv"["\a\b\f\n\r\t\v".index(ch)])
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        else:
            out.append(f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out) + '"'


def _float_str(f: float, lo: int, hi: int, pad_negative_exp: bool = True) -> str:
    """Shortest round-trip digits, in exponent form when the decimal exponent is < lo or >= hi."""
    if not math.isfinite(f):
        return "NaN" if math.isnan(f) else "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    _, digit_tuple, exp = Decimal(repr(abs(f))).as_tuple()
    assert isinstance(exp, int)
    digits = "".join(map(str, digit_tuple))
    x, digits, sign = exp + len(digits) - 1, digits.rstrip("0"), "-" if f < 0 else ""
    if x < lo or x >= hi:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        width = 2 if x >= 0 or pad_negative_exp else 1
        return f"{sign}{mantissa}e{'+' if x >= 0 else '-'}{abs(x):0{width}d}"
    if x < 0:
        return f"{sign}0.{'0' * (-x - 1)}{digits}"
    whole, frac = digits[: x + 1].ljust(x + 1, "0"), digits[x + 1 :]
    return sign + whole + ("." + frac if frac else "")


class Struct(dict[str, Any]):
    """A Go struct as templates see it: fields by their Go names (``.Function.Name``), and
    printed as its JSON form ``wire`` (``{{ .Function }}``), as Ollama's tool types print
    through their ``String()`` methods."""

    def __init__(self, fields: Mapping[str, Any], wire: Any) -> None:
        super().__init__(fields)
        self.wire = wire


class StructList(list[Any]):
    """A Go slice type with a ``String()`` method (Ollama's ``Tools``): its items are
    :class:`Struct` values, and the whole prints as its JSON form ``wire``."""

    def __init__(self, items: list[Any], wire: Any) -> None:
        super().__init__(items)
        self.wire = wire


def _json(v: Any) -> str:
    """Go's json.Marshal; raises ValueError for NaN and infinities, as Go's does."""
    if isinstance(v, Struct | StructList):
        return _json(v.wire)
    if v is None or isinstance(v, bool):
        return "null" if v is None else "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError("unsupported value")
        return _float_str(v, -6, 21, pad_negative_exp=False)
    if isinstance(v, Mapping):
        return "{" + ",".join(f"{_json(str(k))}:{_json(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list | tuple):
        return "[" + ",".join(_json(x) for x in v) + "]"
    out = json.dumps(str(v), ensure_ascii=False)
    for ch in "<>&\u2028\u2029":  # json.Marshal's HTML-safe escaping
        out = out.replace(ch, f"\\u{ord(ch):04x}")
    return out


def _to_json(v: Any) -> str:
    try:
        return _json(v)
    except ValueError:
        return ""  # Ollama's json ignores Marshal's error and prints the empty result


def _fmt(v: Any) -> str:
    """How a value prints (``{{ . }}``, ``print``, ``%v``); see the package docstring."""
    if v is None or isinstance(v, str):
        return v or ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return _float_str(v, -4, 6)  # fmt's %v: strconv's shortest 'g'
    if isinstance(v, Mapping | StructList):
        return _to_json(v)
    if isinstance(v, list | tuple):
        return "[" + " ".join(_fmt(x) for x in v) + "]"
    return str(v)


def _gotype(v: Any) -> str:
    if isinstance(v, Mapping):
        return "map[string]interface {}"
    if isinstance(v, list | tuple):
        return "[]interface {}"
    names = {bool: "bool", int: "int", float: "float64", str: "string", type(None): "<nil>"}
    return names.get(type(v), type(v).__name__)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)
