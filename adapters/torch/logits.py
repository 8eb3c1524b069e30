"""Logit rows and their masks (clauses QD-1, QD-2, QQ-1, MASK-QQ-1, DQ-1, DD-1, MASK-DD-1, MASK-DD-2, ROW-1).

For a contiguous range of global query indices ``[start, stop)`` this builds the selected rows
against the whole global batch, in O((stop - start) x candidates) memory: masks come from comparing
index vectors, never from an (N x N) identity. Hard negatives are never rows (ROW-1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import LossConfig
from .hardness import hardness_term
from .similarity import similarity_matrix

__all__ = ["Candidates", "RowBlock", "query_rows"]


@dataclass(frozen=True)
class Candidates:
    """Unit rows of the global batch: ``queries`` (N, D) and ``docs`` (K * N, D), column-blocked.

    Row ``k * N + j`` of ``docs`` is document ``d[k, j]`` (LAYOUT-3); rows ``[0, N)`` are positives.
    """

    queries: torch.Tensor
    docs: torch.Tensor

    @property
    def n(self) -> int:
        return self.queries.shape[0]

    @property
    def k(self) -> int:
        return self.docs.shape[0] // self.queries.shape[0]


@dataclass(frozen=True)
class RowBlock:
    """The rows of queries ``[start, stop)``: one (m, width) logit tensor per direction, and p_g (m,)."""

    rows: dict[str, torch.Tensor]
    positive: torch.Tensor


def query_rows(
    cands: Candidates, start: int, stop: int, config: LossConfig, scale: float | torch.Tensor
) -> RowBlock:
    """Logits of the selected directions for global queries ``start <= g < stop``.

    query_to_doc (QD-1): ``scale * s(q_g, d[k, j]) + h`` for all (k, j); positive (QD-2)
    ``p_g = scale * s(q_g, d[0, g])``. query_to_query (QQ-1): ``scale * s(q_g, q_j)``, j = g masked
    (MASK-QQ-1). doc_to_query (DQ-1): ``scale * s(d[0, g], q_j)``, j = g kept. doc_to_doc (DD-1):
    ``scale * s(d[0, g], d[k, j])`` with every j = g masked (MASK-DD-1, MASK-DD-2). Masked entries
    are ``-inf``: they vanish from the softmax and get an exact zero gradient (GRAD-2).
    """
    n, k = cands.n, cands.k
    m = stop - start
    device = cands.queries.device
    own = torch.arange(n, device=device).view(1, n) == torch.arange(start, stop, device=device).view(m, 1)
    own3 = own.view(m, 1, n)
    q_rows = cands.queries[start:stop]
    d_rows = cands.docs[start:stop]  # d[0, g]: column 0 comes first
    rows: dict[str, torch.Tensor] = {}

    s_qd = similarity_matrix(q_rows, cands.docs)
    positive = s_qd[:, start:stop].diagonal() * scale
    logits_qd = s_qd * scale
    h = hardness_term(s_qd.view(m, k, n), own3, config.hardness_mode, config.hardness_strength)
    if h is not None:
        logits_qd = logits_qd + h.view(m, k * n)
    rows["query_to_doc"] = logits_qd

    if "query_to_query" in config.directions:
        rows["query_to_query"] = (similarity_matrix(q_rows, cands.queries) * scale).masked_fill(
            own, float("-inf")
        )
    if "doc_to_query" in config.directions:
        rows["doc_to_query"] = similarity_matrix(d_rows, cands.queries) * scale
    if "doc_to_doc" in config.directions:
        logits_dd = (similarity_matrix(d_rows, cands.docs) * scale).view(m, k, n)
        rows["doc_to_doc"] = logits_dd.masked_fill(own3, float("-inf")).view(m, k * n)
    return RowBlock(rows=rows, positive=positive)
