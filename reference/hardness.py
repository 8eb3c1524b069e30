"""Hardness weighting of query_to_doc negatives (clauses HARD-2 .. HARD-6).

With strength ``alpha`` the selected query_to_doc logits become ``scale * s + alpha * stopgrad(s)``:
the penalty is *not* multiplied by ``scale`` (HARD-2) and carries no gradient (HARD-5). Selection
(HARD-3), for candidate ``(k, j)`` of query ``g``:

* ``in_batch_negatives``: ``j != g`` (other queries' documents, every column);
* ``hard_negatives``: ``j == g`` and ``k >= 1`` (the query's own hard negatives);
* ``all_negatives``: every ``(k, j)`` except the positive ``(0, g)``.

The positive never carries a penalty (HARD-4).
"""

from __future__ import annotations

from typing import Any

import array_api_compat

from .config import Config

__all__ = ["hardness_multiplier", "hardness_selection"]


def hardness_selection(xp: Any, rows: Any, candidates: Any, n: int, mode: str) -> Any:
    """Boolean ``(rows, width)`` mask of the query_to_doc entries that carry a penalty (HARD-3).

    ``rows`` is the ``(c, 1)`` column of query indices ``g``, ``candidates`` the ``(1, width)`` row
    of flattened candidate indices ``k * N + j`` (LAYOUT-3).
    """
    own = rows == candidates % n
    if mode == "in_batch_negatives":
        return ~own
    if mode == "hard_negatives":
        return own & (candidates >= n)
    # all_negatives: everything but the positive (0, g), whose flattened index is g itself.
    return ~(own & (candidates < n))


def hardness_multiplier(xp: Any, rows: Any, candidates: Any, n: int, config: Config) -> Any:
    """``1 + alpha / scale`` on selected entries and ``1`` elsewhere, so that
    ``(scale * s) * multiplier = scale * s + alpha * s`` (HARD-2).

    Only the *value* carries the penalty; the gradient with respect to ``s`` uses ``scale`` alone
    (HARD-5), which :mod:`.loss` applies.
    """
    assert config.hardness_mode is not None
    selected = hardness_selection(xp, rows, candidates, n, config.hardness_mode)
    device = array_api_compat.device(rows)
    return xp.where(
        selected,
        xp.asarray(1.0 + config.hardness_strength / config.scale, dtype=xp.float64, device=device),
        xp.asarray(1.0, dtype=xp.float64, device=device),
    )
