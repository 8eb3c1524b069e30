"""The entry points (the reference's API): :func:`loss_and_grad` and :func:`loss` (clauses LOSS-1, LOSS-2, GRAD-1, SCALE-2).

Both compute the normative reference's function (:mod:`.normative`). For small batches they run
it as written; beyond :data:`PLAIN_MAX_LOGITS` logits they run the engine (:mod:`.engine`), which
gives the same results up to rounding with bounded memory and at BLAS speed.
"""

from __future__ import annotations

from typing import Any

from infonce_spec.vocabulary import DIRECTION_SPECS

from . import engine, normative
from .config import Config
from .result import Result

__all__ = ["PLAIN_MAX_LOGITS", "Result", "logit_count", "loss", "loss_and_grad"]

#: The normative reference runs as written while the rows hold at most this many logits (each
#: (N, width) matrix is then at most 2 MiB); larger batches go to the engine.
PLAIN_MAX_LOGITS = 1 << 18


def logit_count(n: int, k: int, config: Config) -> int:
    """The number of entries in the rows of every selected direction (§4): N · Σ widths."""
    widths = {"queries": n, "positives": n, "hard_negatives": (k - 1) * n}
    return n * sum(
        widths[side] for name in config.selected_directions for side in DIRECTION_SPECS[name].column_sides
    )


def _shape(x: Any, axis: int) -> int:
    shape = getattr(x, "shape", None)
    return int(shape[axis]) if shape is not None and len(shape) > axis else 0


def loss_and_grad(queries: Any, docs: Any, config: Config) -> Result:
    """L, the per-query losses and every gradient, exactly, for ``queries`` (N, D) and ``docs`` (K, N, D).

    Inputs may be numpy, torch or any Array API array (a torch tensor is read through ``detach()``);
    results come back in the same namespace, in float64. Bad input raises
    :class:`~infonce_spec.errors.SpecViolation` or :class:`~infonce_spec.errors.SpecTypeError`
    naming the clause it breaks.
    """
    if (
        isinstance(config, Config)
        and logit_count(_shape(queries, 0), _shape(docs, 0), config) > PLAIN_MAX_LOGITS
    ):
        return engine.loss_and_grad(queries, docs, config)
    return normative.loss_and_grad(queries, docs, config)


def loss(queries: Any, docs: Any, config: Config) -> float:
    """L (LOSS-1) for ``queries`` (N, D) and ``docs`` (K, N, D)."""
    return loss_and_grad(queries, docs, config).loss
