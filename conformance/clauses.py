"""The clause IDs and titles the reports use: :mod:`infonce_spec.clauses` (the spec's clause index)."""

from __future__ import annotations

from infonce_spec.clauses import CLAUSES as _INDEX

__all__ = ["CLAUSES", "CLAUSE_TITLES"]

#: (clause ID, title) in the order of the spec.
CLAUSES: tuple[tuple[str, str], ...] = tuple((c.id, c.title) for c in _INDEX)
CLAUSE_TITLES: dict[str, str] = dict(CLAUSES)
