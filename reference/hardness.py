"""§5 Hardness weighting of query_to_doc negatives (clauses HARD-2 .. HARD-6).

With strength α, every selected ``query_to_doc`` entry gets ``h = α · stopgrad(s)`` added to
``scale · s`` (HARD-2): the term is not multiplied by scale, and it carries no gradient (HARD-5),
which :mod:`.gradients` honours by using ``∂z/∂s = scale`` on every entry. Selection (HARD-3), for
candidate ``(k, j)`` of query ``g``:

======================== ========================= ==========================================
mode                     selected when             meaning
======================== ========================= ==========================================
``in_batch_negatives``   ``j != g``                every document of another query
``hard_negatives``       ``j == g`` and ``k >= 1`` the query's own hard negatives
``all_negatives``        ``(k, j) != (0, g)``      every entry but the positive
======================== ========================= ==========================================

The positive ``(0, g)`` is never selected (HARD-4).
"""

from __future__ import annotations

from typing import Any

from .config import Config

__all__ = ["hardness_term", "selected_entries"]


def selected_entries(own: Any, positive_column: Any, mode: str) -> Any:
    """HARD-3: which entries carry a hardness term, as booleans.

    ``own`` is ``j == g`` (the candidate is one of query g's documents) and ``positive_column`` is
    ``k == 0``; both broadcast to the shape of the query_to_doc rows.
    """
    if mode == "in_batch_negatives":
        return ~own
    if mode == "hard_negatives":
        return own & ~positive_column
    if mode == "all_negatives":
        return ~(own & positive_column)
    raise AssertionError(f"unknown hardness mode {mode!r} (Config validates it, HARD-1)")


def hardness_term(xp: Any, s: Any, own: Any, positive_column: Any, config: Config) -> Any:
    """``h[g, k·N + j] = α · stopgrad(s)`` on the selected entries, 0 elsewhere (HARD-2, HARD-4).

    ``s`` is the (N, K·N) block of query_to_doc similarities. With hardness inactive (HARD-6) h is 0.
    The reference computes on values only, so ``stopgrad`` is the value itself; :mod:`.gradients`
    gives h no derivative (HARD-5).
    """
    zero = xp.zeros_like(s)
    if not config.hardness_active:
        return zero
    assert config.hardness_mode is not None
    selected = selected_entries(own, positive_column, config.hardness_mode)
    return xp.where(selected, config.hardness_strength * s, zero)
