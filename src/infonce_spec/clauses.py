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

__all__ = ["CLAUSES", "CLAUSE_IDS", "Clause", "clause", "presupposes", "spec_order"]


@dataclass(frozen=True)
class Clause:
    """One row of the clause index: ``id`` (e.g. ``MASK-DD-2``), the ``title`` its definition carries,
    the index's one-line ``summary``, and the clauses it directly ``presupposes``."""

    id: str
    title: str
    summary: str
    presupposes: tuple[str, ...] = ()


def _c(id: str, title: str, summary: str, *presupposes: str) -> Clause:
    return Clause(id, title, summary, presupposes)


#: Every clause, in the order of the spec.
CLAUSES: tuple[Clause, ...] = (
    _c("LAYOUT-1", "queries", "queries are (N, D), N ≥ 1, D ≥ 1"),
    _c("LAYOUT-2", "documents", "documents are (K, N, D), K ≥ 1; column 0 positives, 1.. hard negatives"),
    _c("LAYOUT-3", "candidate index", "document `d[k, j]` has candidate index k·N + j", "LAYOUT-2"),
    _c("LAYOUT-4", "finite values", "values finite; reference rejects, implementations should"),
    _c("LAYOUT-5", "floating arrays", "arrays of a real floating type, else TypeError"),
    _c("SIM-1", "cos", "cos: `n(a)·n(b)`, `n(x) = x / max(‖x‖, 1e-12)`"),
    _c("SIM-2", "dot", "dot: `a·b`"),
    _c("SIM-3", "choice", "similarity is `cos` or `dot`"),
    _c("SCALE-1", "scale", "scale finite and > 0; logits are scale·s (+ h)"),
    _c("DIR-1", "direction set", "directions: non-empty, known names, contains `query_to_doc`"),
    _c("DIR-2", "order and repetition", "order and repetition of directions change nothing", "DIR-1"),
    _c(
        "QD-1",
        "query_to_doc",
        "`query_to_doc` row: q_g against every document",
        "LAYOUT-1",
        "LAYOUT-3",
        "SIM-1",
        "SIM-2",
        "SCALE-1",
        "LOSS-1",
    ),
    _c("QD-2", "positive logit", "positive logit p_g = scale·s(q_g, d[0, g])", "QD-1"),
    _c(
        "QQ-1",
        "query_to_query",
        "`query_to_query` row: q_g against the other queries",
        "QD-1",
        "PART-2",
        "MASK-QQ-1",
    ),
    _c("MASK-QQ-1", "self excluded", "query with itself excluded"),
    _c(
        "DQ-1",
        "doc_to_query",
        "`doc_to_query` row: d[0, g] against every query, j = g included",
        "QD-1",
        "PART-2",
    ),
    _c(
        "DD-1",
        "doc_to_doc",
        "`doc_to_doc` row: d[0, g] against other queries' documents",
        "QD-1",
        "PART-2",
        "MASK-DD-1",
        "MASK-DD-2",
    ),
    _c("MASK-DD-1", "own positive excluded", "own positive excluded from `doc_to_doc`"),
    _c("MASK-DD-2", "own hard negatives excluded", "own hard negatives excluded from `doc_to_doc`"),
    _c("ROW-1", "hard negatives are never rows", "hard negatives are candidates only, never rows", "DD-1"),
    _c("HARD-1", "validation", "hardness mode None or one of three; strength finite ≥ 0"),
    _c(
        "HARD-2",
        "the term",
        "h = α·stopgrad(s) on selected `query_to_doc` entries, not times scale",
        "QD-1",
        "PART-2",
        "HARD-4",
        "HARD-6",
    ),
    _c("HARD-3", "selection", "selection per mode", "HARD-2"),
    _c("HARD-4", "positive", "the positive never carries h", "QD-1", "PART-2", "HARD-6"),
    _c("HARD-5", "no gradient", "no gradient through h", "HARD-3"),
    _c("HARD-6", "inactive", "mode None or α = 0 is no hardness", "QD-1", "PART-2"),
    _c("PART-1", "modes", "partition mode `joint`, `per_direction` or `per_anchor`"),
    _c(
        "PART-2",
        "joint",
        "joint: one logsumexp over all rows; the positive pair twice with `doc_to_query`",
        "QD-1",
    ),
    _c(
        "PART-3",
        "per_direction",
        "per_direction: mean over directions of each row's logsumexp",
        "PART-2",
        "DQ-1",
    ),
    _c(
        "PART-4",
        "per_direction restriction",
        "per_direction only with subsets of {`query_to_doc`, `doc_to_query`}",
        "PART-1",
    ),
    _c(
        "PART-5",
        "per_anchor",
        "per_anchor: mean over row vectors of each group's logsumexp (NT-Xent)",
        "PART-2",
        "PART-3",
        "QQ-1",
        "DQ-1",
        "DD-1",
    ),
    _c(
        "PART-6",
        "group restriction",
        "every group holds `query_to_doc` or `doc_to_query`; per_anchor errors name PART-6",
        "PART-1",
    ),
    _c("LOSS-1", "mean over queries", "L is the mean of l_g over all N queries"),
    _c("LOSS-2", "per-query losses", "per-query losses l_g; l_g ≥ 0", "PART-2", "PART-3", "PART-5", "HARD-2"),
    _c(
        "GRAD-1",
        "exact gradients",
        "exact gradients: softmax minus one-hot, chained through s",
        "QD-1",
        "PART-2",
    ),
    _c(
        "GRAD-2",
        "excluded entries",
        "excluded entries contribute exactly 0, never NaN",
        "GRAD-1",
        "MASK-QQ-1",
        "MASK-DD-1",
        "MASK-DD-2",
    ),
    _c(
        "GRAD-3",
        "cos backward and its floor",
        "cos backward; below 1e-12 the gradient of x/1e-12",
        "SIM-1",
        "GRAD-1",
    ),
    _c("SCALE-2", "gradient with respect to scale", "∂L/∂scale = Σ G·s, h excluded", "SCALE-1", "GRAD-1"),
    _c(
        "NUM-1", "stability", "finite results for finite inputs; stable logsumexp", "QD-1", "PART-2", "GRAD-1"
    ),
    _c(
        "DP-1",
        "layout over ranks",
        "rank r owns [rB, (r+1)B); every document column gathered separately",
        "GRAD-1",
        "LOSS-1",
    ),
    _c(
        "DP-2",
        "reported loss",
        "rank r reports L_r, the mean of its own l_g (recommended), or the global L",
        "DP-1",
    ),
    _c("DP-3", "local gradient", "local embedding gradient = W·∂L/∂(local)", "DP-1", "DP-2"),
    _c("DP-4", "parameter gradients", "averaged parameter gradients = ∂L/∂θ", "DP-3", "CACHE-1"),
    _c("DP-5", "unequal local batches", "unequal local batches raise an error, never hang"),
    _c("CACHE-1", "same results", "cached = uncached for every mini-batch size ≥ 1", "GRAD-1"),
    _c("CACHE-2", "linear backward", "backward linear in the upstream gradient", "CACHE-1"),
    _c("CACHE-3", "random-state replay", "second forward replays the first's random state", "CACHE-1"),
    _c("CACHE-4", "accumulation and re-entrancy", "gradients accumulate; re-entrant", "CACHE-1", "CACHE-2"),
    _c("CACHE-5", "memory", "loss-stage memory O(mini-batch × candidates) (SHOULD)"),
    _c("VAL-1", "errors name the clause", "invalid input raises ValueError / TypeError naming the clause"),
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


def spec_order(id: str | None) -> int:
    """``id``'s position in the spec (a sort key for clause IDs; ``None``, no clause, sorts first)."""
    return -1 if id is None else CLAUSE_IDS.index(id)


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
