"""Partition of the logit rows into softmax normalisers (clauses PART-2, PART-3, LOSS-1).

* ``joint`` (PART-2): one log-partition over all selected rows of query ``g`` together,
  ``l_g = logsumexp(concat rows) - p_g``.
* ``per_direction`` (PART-3): one log-partition per direction, averaged,
  ``l_g = mean_dir logsumexp(row_dir) - p_g``.

Besides the log-partition of each query, :func:`partition` returns ``dL/dlogits`` for every block
*without* the positive's ``-1/N`` (the caller adds it): the softmax probabilities times the
weight of the row in ``L = mean_g l_g`` (``1/N`` joint, ``1/(N * |directions|)`` per direction).
Masked entries (``-inf``) get probability exactly 0 (GRAD-2).
"""

from __future__ import annotations

from typing import Any

from .rows import RowBlock

__all__ = ["partition"]


def _row_max(xp: Any, blocks: list[Any]) -> Any:
    m = xp.max(blocks[0], axis=1, keepdims=True)
    for logits in blocks[1:]:
        m = xp.maximum(m, xp.max(logits, axis=1, keepdims=True))
    return m


def _softmax_group(xp: Any, logits: list[Any], weight: float) -> tuple[Any, list[Any]]:
    """``logsumexp`` over the concatenation of ``logits`` (shifted by the row max, NUM-1) and
    ``weight * softmax`` split back into the blocks."""
    m = _row_max(xp, logits)
    exps = []
    for z in logits:
        z -= m  # in place: the logits are not needed afterwards
        exps.append(xp.exp(z))
    z_sum = xp.sum(exps[0], axis=1, keepdims=True)
    for e in exps[1:]:
        z_sum = z_sum + xp.sum(e, axis=1, keepdims=True)
    lse = m + xp.log(z_sum)
    factor = weight / z_sum
    for e in exps:
        e *= factor
    return xp.reshape(lse, (-1,)), exps


def partition(xp: Any, blocks: list[RowBlock], partition_mode: str, n: int) -> tuple[Any, list[Any]]:
    """The log-partition term of each query in the chunk and ``dL/dlogits`` per block (no positive term).

    The blocks' logits are consumed (overwritten in place).
    """
    if partition_mode == "joint":
        return _softmax_group(xp, [b.logits for b in blocks], 1.0 / n)
    weight = 1.0 / (n * len(blocks))
    log_z = None
    grads = []
    for block in blocks:
        lse, (grad,) = _softmax_group(xp, [block.logits], weight)
        log_z = lse if log_z is None else log_z + lse
        grads.append(grad)
    return log_z / len(blocks), grads
