"""The engine's partition of a chunk's logit blocks (clauses PART-2, PART-3, PART-5, LOSS-1, GRAD-1).

The partition mode groups the selected directions (:attr:`..config.Config.partition_groups`);
each group has one log-partition over its blocks' pieces together, and
``l_g = mean_groups logsumexp(group) - p_g``:

* ``joint`` (PART-2): one group, ``l_g = logsumexp(concat rows) - p_g``;
* ``per_direction`` (PART-3): one group per direction, ``l_g = mean_dir logsumexp(row_dir) - p_g``;
* ``per_anchor`` (PART-5): one group per row vector (the rows of ``q_g``, the rows of ``d[0, g]``).

Besides the log-partition of each query, :func:`partition` returns ``dL/dlogits`` for every piece
*without* the positive's ``-1/N`` (the caller adds it): the softmax probabilities times the
weight of the group in ``L = mean_g l_g`` (``1/(N * groups)``).
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


def partition(
    xp: Any, blocks: list[RowBlock], groups: tuple[tuple[str, ...], ...], n: int
) -> tuple[Any, list[Any]]:
    """The log-partition term of each query in the chunk and ``dL/dlogits`` per piece (no positive
    term), in the order of the blocks' pieces. ``groups`` are the directions that share a
    log-partition (PART-2, PART-3, PART-5).

    The pieces' logits are consumed (overwritten in place).
    """
    weight = 1.0 / (n * len(groups))
    by_direction = {block.direction: block for block in blocks}
    log_z = None
    grads: dict[int, Any] = {}
    for group in groups:
        pieces = [p for name in group for p in by_direction[name].pieces]
        lse, group_grads = _softmax_group(xp, [p.logits for p in pieces], weight)
        log_z = lse if log_z is None else log_z + lse
        grads.update((id(p), g) for p, g in zip(pieces, group_grads, strict=True))
    ordered = [grads[id(p)] for block in blocks for p in block.pieces]
    return log_z / len(groups), ordered
