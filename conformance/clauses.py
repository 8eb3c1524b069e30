"""The clause IDs of spec/infonce-spec.md with their short titles (in the spec's order).

The reports have one row per clause: pass, FAIL, not claimed (the adapter does not claim what the
clause needs) or not checked (no property of this suite covers it).
"""

from __future__ import annotations

__all__ = ["CLAUSES", "CLAUSE_TITLES"]

#: (clause ID, title) in the order of the spec.
CLAUSES: tuple[tuple[str, str], ...] = (
    ("LAYOUT-1", "queries"),
    ("LAYOUT-2", "documents"),
    ("LAYOUT-3", "candidate index"),
    ("LAYOUT-4", "finite values"),
    ("LAYOUT-5", "floating arrays"),
    ("SIM-1", "cos"),
    ("SIM-2", "dot"),
    ("SIM-3", "choice"),
    ("SCALE-1", "scale"),
    ("DIR-1", "direction set"),
    ("DIR-2", "order and repetition"),
    ("QD-1", "query_to_doc"),
    ("QD-2", "positive logit"),
    ("QQ-1", "query_to_query"),
    ("MASK-QQ-1", "self excluded"),
    ("DQ-1", "doc_to_query"),
    ("DD-1", "doc_to_doc"),
    ("MASK-DD-1", "own positive excluded"),
    ("MASK-DD-2", "own hard negatives excluded"),
    ("ROW-1", "hard negatives are never rows"),
    ("HARD-1", "validation"),
    ("HARD-2", "the term"),
    ("HARD-3", "selection"),
    ("HARD-4", "positive"),
    ("HARD-5", "no gradient"),
    ("HARD-6", "inactive"),
    ("PART-1", "modes"),
    ("PART-2", "joint"),
    ("PART-3", "per_direction"),
    ("PART-4", "per_direction restriction"),
    ("LOSS-1", "mean over queries"),
    ("LOSS-2", "per-query losses"),
    ("GRAD-1", "exact gradients"),
    ("GRAD-2", "excluded entries"),
    ("GRAD-3", "cos backward and its floor"),
    ("SCALE-2", "gradient with respect to scale"),
    ("NUM-1", "stability"),
    ("DP-1", "layout over ranks"),
    ("DP-2", "reported loss"),
    ("DP-3", "local gradient"),
    ("DP-4", "parameter gradients"),
    ("DP-5", "unequal local batches"),
    ("CACHE-1", "same results"),
    ("CACHE-2", "linear backward"),
    ("CACHE-3", "random-state replay"),
    ("CACHE-4", "accumulation and re-entrancy"),
    ("CACHE-5", "memory"),
    ("VAL-1", "errors name the clause"),
)
CLAUSE_TITLES: dict[str, str] = dict(CLAUSES)
