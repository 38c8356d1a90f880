"""Ollama's ``keep_alive`` duration syntax.

A JSON number means seconds; a string is a Go duration (``"10m"``, ``"1h30m"``, ``"-1m"``,
``"0"``). Any negative value means "forever". A unitless numeric string other than ``"0"``
is an error, as in Ollama (Go's ``time.ParseDuration`` refuses it).

>>> parse_keep_alive("5m")
300.0
>>> parse_keep_alive(0)
0.0
>>> parse_keep_alive("1h2m3.5s")
3723.5
>>> parse_keep_alive(-1) is None
True
"""

from __future__ import annotations

import re

from neurons.errors import InvalidOptionError

__all__ = ["parse_keep_alive"]

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_keep_alive(value: object) -> float | None:
    """Return seconds to keep a model loaded, or ``None`` for forever."""
    if isinstance(value, bool):
        raise InvalidOptionError(f"time: invalid duration {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_go_duration(value)
    else:
        raise InvalidOptionError(f"time: invalid duration {value!r}")
    return None if seconds < 0 else seconds


def _parse_go_duration(text: str) -> float:
    s = text.strip()
    if s in ("0", "+0", "-0"):
        return 0.0
    sign = 1.0
    if s[:1] in "+-" and s:
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if not s:
        raise InvalidOptionError(f'time: invalid duration "{text}"')
    pos = 0
    total = 0.0
    while pos < len(s):
        match = _PART.match(s, pos)
        if match is None:
            if re.fullmatch(r"[\d.]+", s[pos:]):
                raise InvalidOptionError(f'time: missing unit in duration "{text}"')
            raise InvalidOptionError(f'time: invalid duration "{text}"')
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    return sign * total
