"""§6 Partition and loss (clauses PART-2, PART-3, LOSS-1, LOSS-2, NUM-1).

* ``joint`` (PART-2): ``l_g = logsumexp({z_e : e ∈ E_g}) − p_g``, one partition over every
  selected row of query g together;
* ``per_direction`` (PART-3): ``l_g = mean_δ logsumexp({z_e : e ∈ E_g^δ}) − p_g``, one partition
  per direction, averaged over the m selected directions;
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


def log_partitions(xp: Any, rows: dict[str, Rows], partition_mode: str) -> dict[str, Any]:
    """The log-partition of each partition of query g: ``{"joint": (N,)}`` (PART-2) or one (N,)
    per direction (PART-3)."""
    if partition_mode == "joint":
        return {"joint": logsumexp(xp, xp.concat([r.logits for r in rows.values()], axis=1))}
    return {name: logsumexp(xp, r.logits) for name, r in rows.items()}


def per_query_losses(xp: Any, log_z: dict[str, Any], positive: Any) -> Any:
    """``l_g``: the mean of the log-partitions (one in joint mode, PART-2; m per_direction, PART-3)
    minus the positive logit ``p_g`` (QD-2)."""
    parts = list(log_z.values())
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total / len(parts) - positive


def loss(xp: Any, per_query: Any) -> float:
    """LOSS-1: ``L = (1/N) Σ_g l_g``."""
    return float(xp.mean(per_query))
