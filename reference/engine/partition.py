"""The engine's partition of a chunk's logit blocks (clauses PART-2, PART-3, PART-5, LOSS-1, GRAD-1).

The partition mode groups the selected directions (:attr:`..config.Config.partition_groups`);
each group has one log-partition over its blocks' pieces together, and
``l_g = mean_groups logsumexp(group) - p_g``:

* ``joint`` (PART-2): one group, ``l_g = logsumexp(concat rows) - p_g``;
* ``per_direction`` (PART-3): one group per direction, ``l_g = mean_dir logsumexp(row_dir) - p_g``;
* ``per_anchor`` (PART-5): one group per row vector (the rows of ``q_g``, the rows of ``d[0, g]``).

Besides returning the log-partition of each query, :func:`partition` writes ``dL/dlogits`` over
every piece's logits, in place, *without* the positive's ``-1/N`` (the caller adds it): the
softmax probabilities times the weight of the group in ``L = mean_g l_g`` (``1/(N * groups)``).
Masked entries (``-inf``) get probability exactly 0 (GRAD-2). The normative form is
:mod:`infonce_spec.reference.partition` and :mod:`infonce_spec.reference.gradients`; this one
works in place so that the chunk's products (:mod:`.products`) find the gradients where they
wrote the logits, with no chunk-sized allocation.
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


def _exp_over(xp: Any, z: Any) -> None:
    """``z = exp(z)`` in place (numpy, torch: ``out=``; elsewhere a new array copied back, as the
    Array API has no ``out``)."""
    if array_api_compat.is_numpy_array(z) or array_api_compat.is_torch_array(z):
        xp.exp(z, out=z)
    else:
        z[...] = xp.exp(z)


def _softmax_group(xp: Any, logits: list[Any], weight: float) -> Any:
    """``logsumexp`` over the concatenation of ``logits`` (shifted by the row max, NUM-1); the
    pieces become ``weight * softmax``, in place."""
    m = _row_max(xp, logits)
    for z in logits:
        z -= m
        _exp_over(xp, z)
    z_sum = xp.sum(logits[0], axis=1, keepdims=True)
    for e in logits[1:]:
        z_sum = z_sum + xp.sum(e, axis=1, keepdims=True)
    lse = m + xp.log(z_sum)
    factor = weight / z_sum
    for e in logits:
        e *= factor
    return xp.reshape(lse, (-1,))


def partition(xp: Any, blocks: list[RowBlock], groups: tuple[tuple[str, ...], ...], n: int) -> Any:
    """The log-partition term of each query in the chunk; every piece's logits are overwritten by
    its ``dL/dlogits`` (no positive term). ``groups`` are the directions that share a
    log-partition (PART-2, PART-3, PART-5)."""
    by_direction = {block.direction: block for block in blocks}
    weight = 1.0 / (n * len(groups))
    log_z = None
    for group in groups:
        lse = _softmax_group(xp, [p.logits for name in group for p in by_direction[name].pieces], weight)
        log_z = lse if log_z is None else log_z + lse
    return log_z / len(groups)
