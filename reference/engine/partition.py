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
For the pieces that are matrix products of the chunk's own (:mod:`.products`) that last factor,
one number per row, is returned instead of applied: their backward applies it to the row vectors
(rows x D) rather than to the logits (rows x candidates).
Masked entries (``-inf``) get probability exactly 0 (GRAD-2). The normative form is
:mod:`infonce_spec.reference.partition` and :mod:`infonce_spec.reference.gradients`; this one
works in place so that the chunk's products (:mod:`.products`) find the gradients where they
wrote the logits, with no chunk-sized allocation.
"""

from __future__ import annotations

from typing import Any

from .inplace import exp_over
from .rows import Piece, RowBlock
from .threads import row_steps

__all__ = ["UNSHIFTED_BOUND", "partition"]

#: The partition skips the shift by the row max (a pass over the logits) when no ``|logit|`` can
#: exceed this bound (``exp(600)`` times a few million entries stays far below the float64 maximum,
#: and ``exp(-600)`` far above its smallest normal number). With cos similarity, ``|logit| <= scale +
#: hardness_strength``.
UNSHIFTED_BOUND = 600.0


def _row_max(xp: Any, pieces: list[Any]) -> Any:
    m = xp.max(pieces[0], axis=1, keepdims=True)
    for logits in pieces[1:]:
        m = xp.maximum(m, xp.max(logits, axis=1, keepdims=True))
    return m


def _exp_and_sum(xp: Any, logits: Any, m: Any | None) -> Any:
    """``logits = exp(logits - m)`` in place and its row sums (rows, 1), a few rows at a time
    (:func:`.threads.row_steps`), so that the sum reads what ``exp`` wrote from the cache."""
    rows, width = (int(size) for size in logits.shape)
    sums = []
    for a, b in row_steps(0, rows, width):
        block = logits[a:b, :]
        if m is not None:
            block -= m[a:b, :]
        exp_over(xp, block)
        sums.append(xp.sum(block, axis=1, keepdims=True))
    return sums[0] if len(sums) == 1 else xp.concat(sums, axis=0)


def _softmax_group(xp: Any, pieces: list[Piece], weight: float, shift: bool) -> tuple[Any, Any]:
    """``logsumexp`` over the concatenation of the pieces' logits, (rows, 1), and the factor
    ``weight / sum exp`` (rows, 1): the pieces become ``exp(logits - shift)``, and then
    ``weight * softmax``, in place, except those scaled later (:attr:`.rows.Piece.scaled_later`).

    NUM-1: with ``shift`` the logits are shifted by the row max; without, the caller knows that no
    ``|logit|`` exceeds :data:`UNSHIFTED_BOUND`, so no ``exp`` overflows or loses precision."""
    m = _row_max(xp, [p.logits for p in pieces]) if shift else None
    z_sum = None
    for p in pieces:
        piece_sum = _exp_and_sum(xp, p.logits, m)
        z_sum = piece_sum if z_sum is None else z_sum + piece_sum
    lse = xp.log(z_sum) if m is None else m + xp.log(z_sum)
    factor = weight / z_sum
    for p in pieces:
        if not p.scaled_later:
            p.logits *= factor
    return lse, factor


def partition(
    xp: Any,
    blocks: list[RowBlock],
    groups: tuple[tuple[str, ...], ...],
    n: int,
    positives: Any,
    shift: bool,
) -> tuple[Any, dict[tuple[str, str], Any]]:
    """The log-partition term of each query in the chunk, and the factor (rows, 1) of each piece
    scaled later; every piece's logits are overwritten by its ``dL/dlogits`` (no positive term;
    divided by that factor for the pieces scaled later). ``groups`` are the directions that share a
    log-partition (PART-2, PART-3, PART-5); ``positives`` the chunk's ``p_g``.

    LOSS-2: every group holds ``p_g`` (PART-6), so its log-partition is at least ``p_g``. Shifted by
    the row max it is so exactly (the sum holds ``exp(0) = 1``); unshifted, rounding could put it a
    unit in the last place below, so it is taken as ``max(lse, p_g)``."""
    by_direction = {block.direction: block for block in blocks}
    weight = 1.0 / (n * len(groups))
    log_z = None
    factors: dict[tuple[str, str], Any] = {}
    for group in groups:
        pieces = [p for name in group for p in by_direction[name].pieces]
        lse, factor = _softmax_group(xp, pieces, weight, shift)
        lse = xp.reshape(lse, (-1,))
        if not shift:
            lse = xp.maximum(lse, positives)
        log_z = lse if log_z is None else log_z + lse
        factors.update(((p.row_side, p.col_side), factor) for p in pieces if p.scaled_later)
    return log_z / len(groups), factors
