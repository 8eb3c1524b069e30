"""The logit rows of a chunk of queries, with their masks (clauses QD-1, QQ-1, DQ-1, DD-1, MASK-*).

For query ``g`` every selected direction contributes one row of logits ``scale * s(a, b) (+ h)``:

=============== ======================= ============================== =====================
direction       row vector              candidates                     masked (excluded)
=============== ======================= ============================== =====================
query_to_doc    ``q_g``                 ``d[k, j]`` for all ``k, j``    none (QD-1)
query_to_query  ``q_g``                 ``q_j``                         ``j == g`` (MASK-QQ-1)
doc_to_query    ``d[0, g]``             ``q_j``                         none, ``j == g`` kept (DQ-1)
doc_to_doc      ``d[0, g]``             ``d[k, j]`` for all ``k, j``    ``j == g``, every ``k`` (MASK-DD-1/2)
=============== ======================= ============================== =====================

Hard negatives (``k >= 1``) are candidates only, never rows (ROW-1). A chunk holds the rows of
queries ``start .. stop-1``; its blocks are ``(stop - start) x candidates``, never ``N x K*N``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import array_api_compat

from .config import Config
from .hardness import hardness_multiplier

__all__ = ["RowBlock", "positive_logits", "row_blocks"]


@dataclass
class RowBlock:
    """One direction's logits for a chunk of queries.

    ``row_side`` / ``col_side`` name the vectors the rows and columns are made of
    (``"q"`` queries, ``"d0"`` positives, ``"d"`` all documents flattened as ``k * N + j``).
    ``logits`` is ``scale * s + h`` with ``-inf`` at masked entries.
    """

    direction: str
    row_side: str
    col_side: str
    logits: Any


def _column_query_index(xp: Any, n: int, k: int, device: Any) -> Any:
    """For each flattened document column ``k * N + j`` its query index ``j`` (LAYOUT-3)."""
    return xp.reshape(xp.arange(k * n, device=device) % n, (1, k * n))


def _mask_own(xp: Any, logits: Any, start: int, n: int, k: int) -> Any:
    """Set the entries ``(g, k' * N + g)`` of a chunk of rows ``start ..`` to ``-inf``, for every ``k' < k``.

    In the row-major flattened block the entry of row ``r`` (query ``start + r``) and column
    ``k' N + start + r`` sits at ``start + k' N + r (k N + 1)``: one strided slice per column
    block, so no ``(rows x candidates)`` boolean mask is built (MASK-QQ-1, MASK-DD-1, MASK-DD-2).
    """
    rows, width = (int(s) for s in logits.shape)
    flat = xp.reshape(logits, (rows * width,))
    for block in range(k):
        flat[_own_entries(start + block * n, rows, width)] = -float("inf")
    return xp.reshape(flat, (rows, width))


def _own_entries(first: int, rows: int, width: int) -> slice:
    """The strided slice of a flattened ``(rows, width)`` block holding entry ``(r, first - start + r)``."""
    return slice(first, first + (rows - 1) * (width + 1) + 1, width + 1)


def positive_logits(xp: Any, query_to_doc: RowBlock, start: int) -> Any:
    """The positive logits ``p_g`` (QD-2) of the chunk, read off the query_to_doc block itself.

    Reading them from the block (rather than recomputing ``s(q_g, d[0, g])``) makes ``p_g``
    bitwise one of the entries of its own logsumexp, so ``l_g >= 0`` holds exactly (LOSS-2).
    Call before the block is consumed by the partition.
    """
    rows, width = (int(s) for s in query_to_doc.logits.shape)
    flat = xp.reshape(query_to_doc.logits, (rows * width,))
    return xp.asarray(flat[_own_entries(start, rows, width)], copy=True)


def row_blocks(xp: Any, u_q: Any, u_d: Any, start: int, stop: int, config: Config) -> list[RowBlock]:
    """The selected directions' logit blocks for queries ``start .. stop-1`` (canonical order)."""
    n = int(u_q.shape[0])
    k = int(u_d.shape[0]) // n
    device = array_api_compat.device(u_q)
    # SCALE-1: the row vectors are scaled before the products, so each block is ``scale * s``
    # straight out of the matrix product (a (rows x D) multiply instead of a (rows x candidates) one).
    scaled_q = config.scale * u_q[start:stop, :]
    scaled_d0 = config.scale * u_d[start:stop, :]
    blocks: list[RowBlock] = []
    # query_to_doc is always selected (DIR-1).
    logits = scaled_q @ u_d.T
    if config.hardness_active:
        rows = xp.reshape(xp.arange(start, stop, device=device), (stop - start, 1))
        logits *= hardness_multiplier(xp, rows, _column_query_index(xp, n, k, device), k, config)
    blocks.append(RowBlock("query_to_doc", "q", "d", logits))
    if "query_to_query" in config.directions:
        logits = _mask_own(xp, scaled_q @ u_q.T, start, n, 1)
        blocks.append(RowBlock("query_to_query", "q", "q", logits))
    if "doc_to_query" in config.directions:
        blocks.append(RowBlock("doc_to_query", "d0", "q", scaled_d0 @ u_q.T))
    if "doc_to_doc" in config.directions:
        logits = _mask_own(xp, scaled_d0 @ u_d.T, start, n, k)
        blocks.append(RowBlock("doc_to_doc", "d0", "d", logits))
    return blocks
