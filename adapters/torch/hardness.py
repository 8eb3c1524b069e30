"""Hardness weighting of query_to_doc logits (clauses HARD-2 .. HARD-6).

``h[g, k, j] = alpha * stopgrad(s(q_g, d[k, j]))`` is added to selected query_to_doc logits; it is
not multiplied by ``scale`` (HARD-2) and carries no gradient (HARD-5). Which entries it touches
depends on the mode (HARD-3); the positive ``(k=0, j=g)`` never does (HARD-4).
"""

from __future__ import annotations

import torch

__all__ = ["hardness_selection", "hardness_term"]


def hardness_selection(own: torch.Tensor, k: int, mode: str) -> torch.Tensor:
    """The entries of a (m, K, N) query_to_doc block that carry hardness (HARD-3), as a bool mask.

    ``own`` (m, 1, N) is True where the document belongs to the row's query (j == g).
    in_batch_negatives: j != g. hard_negatives: j == g and k >= 1. all_negatives: all but (0, g).
    """
    is_positive_column = (torch.arange(k, device=own.device) == 0).view(1, k, 1)
    if mode == "in_batch_negatives":
        return (~own).expand(-1, k, -1)
    if mode == "hard_negatives":
        return own & ~is_positive_column
    if mode == "all_negatives":
        return ~(own & is_positive_column)
    raise AssertionError(f"unknown hardness mode {mode!r} (validated by LossConfig, HARD-1)")


def hardness_term(
    similarity_qd: torch.Tensor, own: torch.Tensor, mode: str | None, strength: float
) -> torch.Tensor | None:
    """``h`` for a (m, K, N) block of query_to_doc similarities, or ``None`` when inactive (HARD-6)."""
    if mode is None or strength == 0.0:
        return None
    selected = hardness_selection(own, similarity_qd.shape[1], mode)
    weighted = similarity_qd.detach() * strength
    return torch.where(selected, weighted, torch.zeros((), dtype=weighted.dtype, device=weighted.device))
