"""The builtin functions (Go's, Ollama's ``json`` and the extras), printf included."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from ._format import _float_str, _fmt, _gotype, _is_int, _quote, _to_json


class _CallError(Exception):
    """A builtin failed; reported as ``error calling NAME: ...``."""


_VERB_RE = re.compile(r"%([-+# 0]*)(\d*)(?:\.(\d*))?(.?)", re.S)


def _verb(v: Any, verb: str, flags: str, prec: int | None) -> str:
    """One printf verb: %v %s %q %d %t %x %X %o %b %c %e %f %g (and upper-case forms)."""
    plus = "+" if "+" in flags else ""
    if verb == "v" or (verb == "s" and not isinstance(v, int | float)):
        s = _fmt(v)
        return s[:prec] if prec is not None and verb == "s" else s
    if verb == "q" and isinstance(v, str):
        return _quote(v if prec is None else v[:prec])
    if verb == "q" and _is_int(v):
        return "'" + _quote(chr(v))[1:-1].replace('\\"', '"').replace("'", "\\'") + "'"
    if verb == "t" and isinstance(v, bool):
        return _fmt(v)
    if _is_int(v) and verb in "dboxXc":
        return chr(v) if verb == "c" else format(v, plus + verb)
    if isinstance(v, str) and verb in "xX":
        return v.encode().hex().upper() if verb == "X" else v.encode().hex()
    if isinstance(v, int | float) and not isinstance(v, bool) and verb in "eEfFgG":
        if verb in "gG" and prec is None:
            s = plus * (v >= 0) + _float_str(float(v), -4, 6)
            return s.upper() if verb == "G" else s
        return format(float(v), f"{plus}.{6 if prec is None else prec}{verb}")
    return f"%!{verb}(<nil>)" if v is None else f"%!{verb}({_gotype(v)}={_fmt(v)})"


def _sprintf(fmt: Any, *args: Any) -> str:
    if not isinstance(fmt, str):
        raise _CallError(f"wrong type for value; expected string; got {_gotype(fmt)}")
    out, pos, k = [], 0, 0
    for m in _VERB_RE.finditer(fmt):
        out.append(fmt[pos : m.start()])
        pos = m.end()
        flags, width, prec, verb = m.groups()
        if verb in ("%", "") or k >= len(args):
            out.append("%" if verb == "%" else f"%!{verb}(MISSING)" if verb else "%!(NOVERB)")
            continue
        v, k = args[k], k + 1
        s, w = _verb(v, verb, flags, None if prec is None else int(prec or 0)), int(width or 0)
        zero = "0" in flags and "-" not in flags and isinstance(v, int | float)
        if zero and s[:1] in ("+", "-"):
            s = s[0] + s[1:].rjust(w - 1, "0")
        out.append(s.ljust(w) if "-" in flags else s.rjust(w, "0" if zero else " "))
    out.append(fmt[pos:])
    if k < len(args):
        out.append("%!(EXTRA " + ", ".join(f"{_gotype(a)}={_fmt(a)}" for a in args[k:]) + ")")
    return "".join(out)


def _truth(v: Any) -> bool:
    """Go's truth: false, 0, nil and empty strings, lists and maps are false."""
    return (
        bool(v)
        if isinstance(v, bool | int | float | str | list | tuple | Mapping)
        else v is not None
    )


def _kind(v: Any) -> str:
    if isinstance(v, bool | str):
        return "bool" if isinstance(v, bool) else "string"
    return "number" if isinstance(v, int | float) else "other"


def _zeroed(a: Any, b: Any) -> tuple[Any, Any]:
    """``None`` stands for the zero value of the other operand's type."""
    zeros = {"bool": False, "number": 0, "string": ""}
    return (zeros.get(_kind(b)) if a is None else a), (zeros.get(_kind(a)) if b is None else b)


def _equal(a: Any, b: Any) -> bool:
    a, b = _zeroed(a, b)
    if a is None or b is None:
        return a is b
    if "other" in (_kind(a), _kind(b)):
        raise _CallError(f"non-comparable type {_gotype(a if _kind(a) == 'other' else b)}")
    if _kind(a) != _kind(b):
        raise _CallError("incompatible types for comparison")
    return bool(a == b)


def _less(a: Any, b: Any) -> bool:
    a, b = _zeroed(a, b)
    if not {_kind(a), _kind(b)} <= {"number", "string"}:
        raise _CallError("invalid type for comparison")
    if _kind(a) != _kind(b):
        raise _CallError("incompatible types for comparison")
    return bool(a < b)


def _eq(a: Any, *others: Any) -> bool:
    if not others:
        raise _CallError("missing argument for comparison")
    return any(_equal(a, b) for b in others)


def _len(v: Any) -> int:
    if v is None or isinstance(v, str | list | tuple | Mapping):
        return len(v.encode()) if isinstance(v, str) else len(v or ())
    raise _CallError(f"len of type {_gotype(v)}")


def _check_index(key: Any, size: int, inclusive: bool = False) -> int:
    if not _is_int(key):
        raise _CallError(f"cannot index slice/array with type {_gotype(key)}")
    if not 0 <= key < size + inclusive:
        raise _CallError(f"index out of range: {key}")
    return int(key)


def _index(v: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(v, Mapping):
            v = v.get(key)
        elif isinstance(v, list | tuple | str):
            seq = v.encode() if isinstance(v, str) else v
            v = seq[_check_index(key, len(seq))]
        else:
            raise _CallError(
                "index of untyped nil" if v is None else f"can't index item of type {_gotype(v)}"
            )
    return v


def _slice(v: Any, *idx: Any) -> Any:
    if not isinstance(v, list | tuple | str):
        raise _CallError(
            "slice of untyped nil" if v is None else f"can't slice item of type {_gotype(v)}"
        )
    if len(idx) > 3 or (isinstance(v, str) and len(idx) == 3):
        raise _CallError(f"too many slice indexes: {len(idx)}")
    seq = v.encode() if isinstance(v, str) else v
    bounds = [_check_index(i, len(seq), inclusive=True) for i in idx]
    lo, hi = (bounds + [0, len(seq)][len(bounds) :])[:2]
    for a, b in zip([lo, *bounds[1:]], bounds[1:], strict=False):
        if a > b:
            raise _CallError(f"invalid slice index: {a} > {b}")
    part = seq[lo:hi]
    return part.decode(errors="replace") if isinstance(part, bytes) else list(part)


def _print(*args: Any) -> str:
    """Go's fmt.Sprint: a space between operands when neither is a string."""
    out = [_fmt(a) for a in args]
    for i in range(len(args) - 1, 0, -1):
        if not isinstance(args[i], str) and not isinstance(args[i - 1], str):
            out.insert(i, " ")
    return "".join(out)


def _binary(op: Callable[[Any, Any], Any], kind: str) -> Callable[[Any, Any], Any]:
    def call(a: Any, b: Any) -> Any:
        a, b = _zeroed(a, b)
        if _kind(a) != kind or _kind(b) != kind:
            raise _CallError(f"expected {kind}s, got {_gotype(a)} and {_gotype(b)}")
        return op(a, b)

    return call


# name -> (implementation, minimum arguments, maximum or None when variadic). The executor
# evaluates "and" and "or" itself, lazily; their entries only carry the arity.
_FUNCS: dict[str, tuple[Callable[..., Any], int, int | None]] = {
    "and": (_truth, 1, None),
    "or": (_truth, 1, None),
    "not": (lambda v: not _truth(v), 1, 1),
    "eq": (_eq, 1, None),
    "ne": (lambda a, b: not _equal(a, b), 2, 2),
    "lt": (_less, 2, 2),
    "le": (lambda a, b: _less(a, b) or _equal(a, b), 2, 2),
    "gt": (lambda a, b: not (_less(a, b) or _equal(a, b)), 2, 2),
    "ge": (lambda a, b: not _less(a, b), 2, 2),
    "len": (_len, 1, 1),
    "index": (_index, 1, None),
    "slice": (_slice, 1, None),
    "print": (_print, 0, None),
    "println": (lambda *a: " ".join(_fmt(x) for x in a) + "\n", 0, None),
    "printf": (_sprintf, 1, None),
    "json": (_to_json, 1, 1),
    "add": (_binary(lambda a, b: a + b, "number"), 2, 2),
    "sub": (_binary(lambda a, b: a - b, "number"), 2, 2),
    "contains": (_binary(lambda s, part: part in s, "string"), 2, 2),
    "hasPrefix": (_binary(str.startswith, "string"), 2, 2),
    "hasSuffix": (_binary(str.endswith, "string"), 2, 2),
}
