"""The clause IDs of ``spec/infonce-spec.md``: title and presuppositions, in the spec's order.

This is the spec's clause index (Appendix A) as data; ``tests/test_spec_consistency.py`` checks that
the two agree row by row. ``presupposes`` is the diagnosis graph of spec §15.1: clause A presupposes
clause B when a check of A can only blame A if B holds -- a violation of B makes A's checks fail
too. A failure filed under A while B is also failing is a *consequence* of B, not a second bug.

>>> from infonce_spec.clauses import presupposes
>>> sorted(presupposes("DP-4"))[:3]
['DP-1', 'DP-3', 'GRAD-1']
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

__all__ = ["CLAUSES", "CLAUSE_IDS", "Clause", "clause", "presupposes"]


@dataclass(frozen=True)
class Clause:
    """One row of the clause index: ``id`` (e.g. ``MASK-DD-2``), a short ``title`` and the clauses it
    directly ``presupposes``."""

    id: str
    title: str
    presupposes: tuple[str, ...] = ()


def _c(id: str, title: str, *presupposes: str) -> Clause:
    return Clause(id, title, presupposes)


#: Every clause, in the order of the spec.
CLAUSES: tuple[Clause, ...] = (
    _c("LAYOUT-1", "queries"),
    _c("LAYOUT-2", "documents"),
    _c("LAYOUT-3", "candidate index", "LAYOUT-2"),
    _c("LAYOUT-4", "finite values"),
    _c("LAYOUT-5", "floating arrays"),
    _c("SIM-1", "cos"),
    _c("SIM-2", "dot"),
    _c("SIM-3", "choice"),
    _c("SCALE-1", "scale"),
    _c("DIR-1", "direction set"),
    _c("DIR-2", "order and repetition", "DIR-1"),
    _c("QD-1", "query_to_doc", "LAYOUT-1", "LAYOUT-3", "SIM-1", "SIM-2", "SCALE-1", "LOSS-1"),
    _c("QD-2", "positive logit", "QD-1"),
    _c("QQ-1", "query_to_query", "QD-1", "PART-2", "MASK-QQ-1"),
    _c("MASK-QQ-1", "self excluded"),
    _c("DQ-1", "doc_to_query", "QD-1", "PART-2"),
    _c("DD-1", "doc_to_doc", "QD-1", "PART-2", "MASK-DD-1", "MASK-DD-2"),
    _c("MASK-DD-1", "own positive excluded"),
    _c("MASK-DD-2", "own hard negatives excluded"),
    _c("ROW-1", "hard negatives are never rows", "DD-1"),
    _c("HARD-1", "validation"),
    _c("HARD-2", "the term", "QD-1", "PART-2", "HARD-4", "HARD-6"),
    _c("HARD-3", "selection", "HARD-2"),
    _c("HARD-4", "positive", "QD-1", "PART-2", "HARD-6"),
    _c("HARD-5", "no gradient", "HARD-3"),
    _c("HARD-6", "inactive", "QD-1", "PART-2"),
    _c("PART-1", "modes"),
    _c("PART-2", "joint", "QD-1"),
    _c("PART-3", "per_direction", "PART-2", "DQ-1"),
    _c("PART-4", "per_direction restriction", "PART-1"),
    _c("LOSS-1", "mean over queries"),
    _c("LOSS-2", "per-query losses", "PART-2", "PART-3", "HARD-2"),
    _c("GRAD-1", "exact gradients", "QD-1", "PART-2"),
    _c("GRAD-2", "excluded entries", "GRAD-1", "MASK-QQ-1", "MASK-DD-1", "MASK-DD-2"),
    _c("GRAD-3", "cos backward and its floor", "SIM-1", "GRAD-1"),
    _c("SCALE-2", "gradient with respect to scale", "SCALE-1", "GRAD-1"),
    _c("NUM-1", "stability", "QD-1", "PART-2", "GRAD-1"),
    _c("DP-1", "layout over ranks", "GRAD-1", "LOSS-1"),
    _c("DP-2", "reported loss", "DP-1"),
    _c("DP-3", "local gradient", "DP-1"),
    _c("DP-4", "parameter gradients", "DP-3"),
    _c("DP-5", "unequal local batches"),
    _c("CACHE-1", "same results", "GRAD-1"),
    _c("CACHE-2", "linear backward", "CACHE-1"),
    _c("CACHE-3", "random-state replay", "CACHE-1"),
    _c("CACHE-4", "accumulation and re-entrancy", "CACHE-1", "CACHE-2"),
    _c("CACHE-5", "memory"),
    _c("VAL-1", "errors name the clause"),
)

#: The IDs alone, in the spec's order.
CLAUSE_IDS: tuple[str, ...] = tuple(c.id for c in CLAUSES)
_BY_ID = {c.id: c for c in CLAUSES}


def clause(id: str) -> Clause:
    """The clause ``id`` (``KeyError`` naming the valid IDs if there is none)."""
    try:
        return _BY_ID[id]
    except KeyError:
        raise KeyError(f"no clause {id!r} in the spec; valid: {', '.join(CLAUSE_IDS)}") from None


@cache
def presupposes(id: str) -> frozenset[str]:
    """Every clause ``id`` presupposes, directly or through others (its transitive closure)."""
    out: set[str] = set()
    todo = list(clause(id).presupposes)
    while todo:
        c = todo.pop()
        if c not in out:
            out.add(c)
            todo.extend(clause(c).presupposes)
    return frozenset(out)
