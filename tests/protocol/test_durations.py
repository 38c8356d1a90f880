from __future__ import annotations

import pytest

from neurons.errors import InvalidOptionError
from neurons.ollama.durations import parse_keep_alive


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0), (30, 30.0), (1.5, 1.5), ("0", 0.0), ("5m", 300.0), ("1h30m", 5400.0),
        ("250ms", 0.25), ("2h45m10s", 9910.0), (-1, None), ("-1m", None), ("-5", None),
    ],
)  # fmt: skip
def test_parse(value: object, seconds: float | None) -> None:
    if value == "-5":  # a unitless string is refused even when negative
        with pytest.raises(InvalidOptionError):
            parse_keep_alive(value)
        return
    assert parse_keep_alive(value) == seconds


@pytest.mark.parametrize("value", ["3600", "5 minutes", "m", "", True, None, [1]])
def test_invalid(value: object) -> None:
    with pytest.raises(InvalidOptionError):
        parse_keep_alive(value)
