"""The engine's partition of a chunk's logit blocks (clauses PART-2, PART-3, LOSS-1, GRAD-1).

* ``joint`` (PART-2): one log-partition over all selected rows of query ``g`` together,
  ``l_g = logsumexp(concat rows) - p_g``.
* ``per_direction`` (PART-3): one log-partition per direction, averaged,
  ``l_g = mean_dir logsumexp(row_dir) - p_g``.

Besides the log-partition of each query, :func:`partition` returns ``dL/dlogits`` for every piece
*without* the positive's ``-1/N`` (the caller adds it): the softmax probabilities times the
weight of the row in ``L = mean_g l_g`` (``1/N`` joint, ``1/(N * |directions|)`` per direction).
Masked entries (``-inf``) get probability exactly 0 (GRAD-2). The normative form is
:mod:`infonce_spec.reference.partition` and :mod:`infonce_spec.reference.gradients`; this one
overwrites the logits in place to spare chunk-sized allocations.
"""

from __future__ import annotations

from typing import Any

import array_api_compat

from .rows import RowBlock

__all__ = ["partition"]


def _row_max(xp: Any, pieces: list[Any]) -> Any:
    m = xp.max(pieces[0], axis=1, keepdims=True)
    for logits in pieces[1:]:
        m = xp.maximum(m, xp.max(logits, axis=1, keepdims=True))
    return m


def _exp_over(xp: Any, z: Any) -> Any:
    """``exp(z)``, written over ``z`` where the namespace can (numpy, torch: ``out=``), which spares
    a chunk-sized allocation; a new array elsewhere (the Array API has no ``out``)."""
    if array_api_compat.is_numpy_array(z) or array_api_compat.is_torch_array(z):
        return xp.exp(z, out=z)
    return xp.exp(z)


def _softmax_group(xp: Any, logits: list[Any], weight: float) -> tuple[Any, list[Any]]:
    """``logsumexp`` over the concatenation of ``logits`` (shifted by the row max, NUM-1) and
    ``weight * softmax`` split back into the pieces."""
    m = _row_max(xp, logits)
    exps = []
    for z in logits:
        z -= m  # in place: the logits are not needed afterwards
        exps.append(_exp_over(xp, z))
    z_sum = xp.sum(exps[0], axis=1, keepdims=True)
    for e in exps[1:]:
        z_sum = z_sum + xp.sum(e, axis=1, keepdims=True)
    lse = m + xp.log(z_sum)
    factor = weight / z_sum
    for e in exps:
        e *= factor
    return xp.reshape(lse, (-1,)), exps


def partition(xp: Any, blocks: list[RowBlock], partition_mode: str, n: int) -> tuple[Any, list[Any]]:
    """The log-partition term of each query in the chunk and ``dL/dlogits`` per piece (no positive
    term), in the order of the blocks' pieces.

    The pieces' logits are consumed (overwritten in place).
    """
    if partition_mode == "joint":
        return _softmax_group(xp, [p.logits for b in blocks for p in b.pieces], 1.0 / n)
    weight = 1.0 / (n * len(blocks))
    log_z = None
    grads = []
    for block in blocks:
        lse, block_grads = _softmax_group(xp, [p.logits for p in block.pieces], weight)
        log_z = lse if log_z is None else log_z + lse
        grads.extend(block_grads)
    return log_z / len(blocks), grads
