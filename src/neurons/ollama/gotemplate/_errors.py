"""The public error type, raised for parse and execution errors alike."""

from __future__ import annotations

from neurons.errors import InvalidRequestError


class TemplateError(InvalidRequestError):
    """A template failed to parse or to execute; ``line`` is 1-based where known."""

    error_code = "invalid_template"

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line
