"""§4 Directions and logit rows (clauses QD-1, QD-2, QQ-1, MASK-QQ-1, DQ-1, DD-1, MASK-DD-1, MASK-DD-2, ROW-1).

Each selected direction gives every query g one row of logits ``z = scale · s(a_g, b_c) + h``
(SCALE-1, HARD-2) over its candidates ``b_c``; all N rows of a direction are one (N, width) matrix.
The parts of each direction are declared in :data:`infonce_spec.vocabulary.DIRECTION_SPECS`:

=============== ============== ====================== ====================== ==========
direction       row vector     candidates             excluded               hardness
=============== ============== ====================== ====================== ==========
query_to_doc    ``q_g``        ``d[k, j]``, all k, j  none                   §5
query_to_query  ``q_g``        ``q_j``                ``j = g``              never
doc_to_query    ``d[0, g]``    ``q_j``                none (``j = g`` kept)  never
doc_to_doc      ``d[0, g]``    ``d[k, j]``, all k, j  ``j = g``, every k     never
=============== ============== ====================== ====================== ==========

Candidates over documents are in the order of LAYOUT-3, ``c = k·N + j``. Hard negatives are never
row vectors (ROW-1). An excluded entry holds the logit ``-inf`` (allowed by §4; GRAD-2 makes its
probability and its derivative exactly 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import array_api_compat

from infonce_spec.vocabulary import DIRECTION_SPECS, REQUIRED_DIRECTION, DirectionSpec, Side

from .config import Config
from .hardness import hardness_term
from .layout import Batch
from .similarity import similarities, unit_rows

__all__ = ["Rows", "candidate_vectors", "logit_rows", "positive_logits", "side_vectors"]


@dataclass(frozen=True)
class Rows:
    """The rows of one direction for every query: (N, width) matrices over its candidates.

    ``s`` the similarities ``s(a_g, b_c)``, ``own`` where the candidate is one of query g's own
    (``j = g``), ``positive_column`` where it lies in document column ``k = 0`` (or is a query),
    ``excluded`` the masked entries, ``logits`` ``scale · s + h`` with ``-inf`` where excluded.
    """

    direction: DirectionSpec
    s: Any
    own: Any
    positive_column: Any
    excluded: Any
    logits: Any


def side_vectors(batch: Batch, similarity: str) -> dict[Side, Any]:
    """The unit rows ``n(x)`` (§3) of each side: queries (N, D), positives (N, D), hard negatives ((K-1)·N, D)."""
    xp, n = batch.xp, batch.n
    docs = unit_rows(xp, xp.reshape(batch.docs, (batch.k * n, batch.d)), similarity)  # LAYOUT-3 order
    return {
        "queries": unit_rows(xp, batch.queries, similarity),
        "positives": docs[:n, :],
        "hard_negatives": docs[n:, :],
    }


def candidate_vectors(xp: Any, vectors: dict[Side, Any], direction: DirectionSpec) -> Any:
    """The candidates ``b_c`` of a direction in candidate order (LAYOUT-3 over documents)."""
    return xp.concat([vectors[side] for side in direction.column_sides], axis=0)


def _candidate_indices(xp: Any, n: int, width: int, device: Any) -> tuple[Any, Any]:
    """``own`` (N, width): candidate c is query g's own, ``j = c mod N == g``; ``positive_column``
    (1, width): ``k = c div N == 0`` (LAYOUT-3; for candidates over queries, c = j)."""
    g = xp.reshape(xp.arange(n, device=device), (n, 1))
    c = xp.reshape(xp.arange(width, device=device), (1, width))
    return (c % n) == g, c < n


def logit_rows(xp: Any, vectors: dict[Side, Any], config: Config) -> dict[str, Rows]:
    """The rows of every selected direction (QD-1, QQ-1, DQ-1, DD-1), canonical order (DIR-2)."""
    n = int(vectors["queries"].shape[0])
    device = array_api_compat.device(vectors["queries"])
    minus_inf = xp.asarray(-float("inf"), dtype=xp.float64, device=device)
    out: dict[str, Rows] = {}
    for name in config.selected_directions:
        direction = DIRECTION_SPECS[name]
        a = vectors[direction.row_side]  # q_g or d[0, g] (ROW-1)
        b = candidate_vectors(xp, vectors, direction)
        s = similarities(a, b)
        own, positive_column = _candidate_indices(xp, n, int(b.shape[0]), device)
        own = xp.broadcast_to(own, s.shape)
        positive_column = xp.broadcast_to(positive_column, s.shape)
        # MASK-QQ-1 (j = g), MASK-DD-1 and MASK-DD-2 (j = g, every k); nothing in QD-1 and DQ-1.
        excluded = own if direction.excludes_own else xp.zeros_like(own)
        z = config.scale * s  # SCALE-1
        if direction.hardness:
            z = z + hardness_term(xp, s, own, positive_column, config)  # HARD-2 .. HARD-6
        out[name] = Rows(direction, s, own, positive_column, excluded, xp.where(excluded, minus_inf, z))
    return out


def positive_logits(xp: Any, rows: dict[str, Rows]) -> Any:
    """QD-2: ``p_g = z_qd[g, g] = scale · s(q_g, d[0, g])``, the query_to_doc entry ``(0, g)``.

    Read off the row itself (a sum of one entry and zeros, exact), so p_g is bitwise a member of its
    own partition and ``l_g >= 0`` holds exactly (LOSS-2). It carries no hardness term (HARD-4).
    """
    qd = rows[REQUIRED_DIRECTION]
    positive = qd.own & qd.positive_column
    return xp.sum(xp.where(positive, qd.logits, xp.zeros_like(qd.logits)), axis=1)
