"""Partition of the rows into per-query losses (clauses PART-2, PART-3, LOSS-2).

joint (PART-2): ``l_g = logsumexp(all selected rows concatenated) - p_g``.
per_direction (PART-3): ``l_g = mean over directions of logsumexp(row) - p_g``.
The logits are already in the compute precision (at least float32), so logsumexp and its softmax
gradient never run in half precision.
"""

from __future__ import annotations

import torch

from .logits import RowBlock

__all__ = ["per_query_loss"]


def per_query_loss(block: RowBlock, partition_mode: str) -> torch.Tensor:
    """The per-query losses ``l_g`` (m,) of one :class:`RowBlock`."""
    rows = list(block.rows.values())
    if partition_mode == "joint":
        log_z = torch.logsumexp(torch.cat(rows, dim=1) if len(rows) > 1 else rows[0], dim=1)
    else:
        log_z = torch.stack([torch.logsumexp(r, dim=1) for r in rows]).mean(dim=0)
    return log_z - block.positive
