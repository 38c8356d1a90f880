"""What changed between two versions of a component: entries added, removed and changed.

>>> diff_entries({"a": {"x": 1}, "b": {"x": 2, "y": 0}}, {"b": {"x": 3, "y": 0}, "c": {"x": 4}})
{'added': ['c'], 'removed': ['a'], 'changed': {'b': {'x': [2, 3]}}}

A flat mapping (the settings) compares value by value:

>>> diff_entries({"port": 8000, "host": "h"}, {"port": 8001, "host": "h"})
{'added': [], 'removed': [], 'changed': {'port': [8000, 8001]}}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["diff_entries", "is_empty"]


def diff_entries(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Entries by name in ``old`` and ``new``: names added and removed, and for each entry in
    both that differs, its changed fields as ``[old, new]`` (or the whole value, when the
    entries are not mappings)."""
    changed: dict[str, Any] = {}
    for name in sorted(set(old) & set(new)):
        before, after = old[name], new[name]
        if before == after:
            continue
        if isinstance(before, Mapping) and isinstance(after, Mapping):
            changed[name] = {
                field: [before.get(field), after.get(field)]
                for field in sorted(set(before) | set(after))
                if before.get(field) != after.get(field)
            }
        else:
            changed[name] = [before, after]
    return {
        "added": sorted(set(new) - set(old)),
        "removed": sorted(set(old) - set(new)),
        "changed": changed,
    }


def is_empty(diff: Mapping[str, Any]) -> bool:
    """Whether a diff found nothing.

    >>> is_empty({"added": [], "removed": [], "changed": {}})
    True
    """
    return not (diff["added"] or diff["removed"] or diff["changed"])
