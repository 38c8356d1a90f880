"""The integer row a public id names (optimization sessions, fine-tuning jobs, learning runs).

Ids travel as text in URLs, so anything may arrive: only ASCII digits, at most 18 of them (so
the number fits SQLite's 64-bit integers), name a row. ``str.isdigit`` alone is not enough:
it accepts ``'³'`` and ``'¹'``, which ``int`` refuses.
"""

from __future__ import annotations

import re

__all__ = ["row_id"]

_ROW_ID = re.compile(r"[0-9]{1,18}")


def row_id(value: str | int) -> int | None:
    """The row ``value`` names, or None where it can name none.

    >>> row_id("42"), row_id(" 7 "), row_id(12)
    (42, 7, 12)
    >>> row_id("³"), row_id("٣"), row_id(""), row_id("-1"), row_id("9" * 19)
    (None, None, None, None, None)
    """
    match = _ROW_ID.fullmatch(str(value).strip())
    return int(match.group()) if match else None
