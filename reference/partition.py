"""§6 Partition and loss (clauses PART-2, PART-3, PART-5, LOSS-1, LOSS-2, NUM-1).

A partition mode groups the selected directions (:attr:`.config.Config.partition_groups`); each
group γ of query g has one partition over the union of its rows' entries, and
``l_g = mean_γ logsumexp({z_e : e ∈ E_g^γ}) − p_g``:

* ``joint`` (PART-2): one group, every selected row of query g together;
* ``per_direction`` (PART-3): one group per direction, averaged over the m selected directions;
* ``per_anchor`` (PART-5): one group per row vector: the rows of ``q_g`` and the rows of ``d[0, g]``;
* ``L = (1/N) Σ_g l_g`` (LOSS-1); ``l_g`` are the per-query losses (LOSS-2).

Excluded entries hold ``-inf`` and so add ``exp(-inf) = 0`` to a partition (GRAD-2).
"""

from __future__ import annotations

from typing import Any

from .rows import Rows

__all__ = ["log_partitions", "logsumexp", "loss", "per_query_losses"]


def logsumexp(xp: Any, z: Any) -> Any:
    """``log Σ_c exp(z[g, c])`` of every row, shifted by the row maximum (NUM-1)."""
    m = xp.max(z, axis=1, keepdims=True)
    return xp.reshape(m, (-1,)) + xp.log(xp.sum(xp.exp(z - m), axis=1))


def log_partitions(xp: Any, rows: dict[str, Rows], groups: tuple[tuple[str, ...], ...]) -> dict[str, Any]:
    """The log-partition (N,) of each group of query g, keyed by every direction of the group (the
    directions of one group share one array): one group joint (PART-2), one per direction
    per_direction (PART-3), one per row vector per_anchor (PART-5)."""
    out: dict[str, Any] = {}
    for group in groups:
        log_z = logsumexp(xp, xp.concat([rows[name].logits for name in group], axis=1))
        out.update((name, log_z) for name in group)
    return out


def per_query_losses(
    xp: Any, log_z: dict[str, Any], groups: tuple[tuple[str, ...], ...], positive: Any
) -> Any:
    """``l_g``: the mean over the groups of their log-partitions (one group joint, PART-2; m
    per_direction, PART-3; one or two per_anchor, PART-5) minus the positive logit ``p_g`` (QD-2)."""
    total = log_z[groups[0][0]]
    for group in groups[1:]:
        total = total + log_z[group[0]]
    return total / len(groups) - positive


def loss(xp: Any, per_query: Any) -> float:
    """LOSS-1: ``L = (1/N) Σ_g l_g``."""
    return float(xp.mean(per_query))
