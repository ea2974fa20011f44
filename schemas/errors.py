"""The one error type of the contract."""

from __future__ import annotations

__all__ = ["SchemaError"]


class SchemaError(ValueError):
    """An event does not follow the contract.

    The message names the field path, what was expected and what was found:

    >>> str(SchemaError("annotation.labels[2].name", "a non-empty string", "42"))
    'annotation.labels[2].name: expected a non-empty string, got 42'

    ``kind`` says what went wrong, as data: ``"decode"`` when the bytes are not a JSON object at
    all (not UTF-8, not JSON), ``"schema"`` (the default) when they are JSON that breaks the
    contract. The dead-letter categories of the same names follow it.

    >>> SchemaError("message", "a JSON object", "empty input", kind="decode").kind
    'decode'
    """

    def __init__(self, path: str, expected: str, found: str, kind: str = "schema") -> None:
        self.path = path
        self.expected = expected
        self.found = found
        self.kind = kind
        super().__init__(f"{path}: expected {expected}, got {found}")

    def __reduce__(self) -> tuple[type[SchemaError], tuple[str, ...]]:
        return (SchemaError, (self.path, self.expected, self.found, self.kind))
