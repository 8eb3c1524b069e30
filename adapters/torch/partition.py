"""Partition of the rows into per-query losses (clauses PART-2, PART-3, PART-5, LOSS-2).

Each partition mode groups the rows of query g; a group has one logsumexp over its rows together,
and ``l_g`` is the mean over the groups of their logsumexp minus ``p_g``:

* joint (PART-2): one group, every selected row;
* per_direction (PART-3): one group per direction;
* per_anchor (PART-5): one group per row vector -- the rows of the query ``q_g`` (query_to_doc,
  query_to_query) and the rows of its positive ``d[0, g]`` (doc_to_query, doc_to_doc).

The logits are already in the compute precision (at least float32), so logsumexp and its softmax
gradient never run in half precision.
"""

from __future__ import annotations

import torch

from infonce_spec.vocabulary import DIRECTION_SPECS

from .logits import RowBlock

__all__ = ["per_query_loss"]

#: PART-5: the row vector of each direction's rows, the query or its positive (the vocabulary's
#: row side of the direction: a name, no math).
_ROW_VECTOR = {name: spec.row_side for name, spec in DIRECTION_SPECS.items()}


def _groups(block: RowBlock, partition_mode: str) -> list[list[torch.Tensor]]:
    """The rows of ``block`` grouped as ``partition_mode`` says (in the order of ``block.rows``)."""
    if partition_mode == "joint":
        return [list(block.rows.values())]
    if partition_mode == "per_direction":
        return [[row] for row in block.rows.values()]
    by_vector: dict[str, list[torch.Tensor]] = {}
    for name, row in block.rows.items():
        by_vector.setdefault(_ROW_VECTOR[name], []).append(row)
    return list(by_vector.values())


def per_query_loss(block: RowBlock, partition_mode: str) -> torch.Tensor:
    """The per-query losses ``l_g`` (m,) of one :class:`RowBlock`."""
    log_z = [
        torch.logsumexp(torch.cat(rows, dim=1) if len(rows) > 1 else rows[0], dim=1)
        for rows in _groups(block, partition_mode)
    ]
    mean = log_z[0] if len(log_z) == 1 else torch.stack(log_z).mean(dim=0)
    return mean - block.positive
