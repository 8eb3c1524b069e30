"""Errors that name the spec clause they enforce (clause VAL-1).

Both the reference and our torch implementations raise these, so a user sees the same clause ID
whichever side rejects the input. This module depends on nothing but the standard library.
"""

from __future__ import annotations

__all__ = ["SpecTypeError", "SpecViolation", "clause_error"]


class SpecViolation(ValueError):
    """An input breaks a numbered rule of the spec.

    ``clause`` is the clause ID (for example ``"PART-4"``); the message starts with it in brackets
    so that it survives any logging that keeps only ``str(exc)``.
    """

    def __init__(self, clause: str, message: str) -> None:
        self.clause = clause
        super().__init__(f"[{clause}] {message} (see spec/infonce-spec.md, clause {clause})")


class SpecTypeError(SpecViolation, TypeError):
    """An input has the wrong type (not an array, not a floating dtype, not a string)."""


def clause_error(clause: str, message: str, *, type_error: bool = False) -> SpecViolation:
    """Build the error for ``clause``; ``type_error`` picks :class:`SpecTypeError`."""
    cls = SpecTypeError if type_error else SpecViolation
    return cls(clause, message)
