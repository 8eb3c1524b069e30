"""The normative reference: the loss and its closed-form gradients, chapter by chapter (§2 .. §7).

Written to be held against spec/infonce-spec.md, not to be fast: every row of every direction is
one full (N, width) matrix, and each step is one function of the chapter module that defines it.
:func:`infonce_spec.reference.loss_and_grad` uses it for small batches and the engine
(:mod:`infonce_spec.reference.engine`, same results to rounding) for large ones. In any mismatch
between this code and the spec, the spec is right.
"""

from __future__ import annotations

from typing import Any

from .config import Config
from .gradients import logit_gradients, pullback, scale_gradient, unit_row_gradients
from .layout import as_batch
from .partition import log_partitions, loss, per_query_losses
from .result import Result
from .rows import logit_rows, positive_logits, side_vectors

__all__ = ["loss_and_grad"]


def loss_and_grad(queries: Any, docs: Any, config: Config) -> Result:
    """L, the per-query losses and every gradient for ``queries`` (N, D) and ``docs`` (K, N, D), in float64."""
    if not isinstance(config, Config):
        raise TypeError(f"config must be an infonce_spec.reference.Config, got {type(config).__name__}")
    batch = as_batch(queries, docs)  # §2: LAYOUT-1 .. LAYOUT-5, float64
    xp, n, k, d = batch.xp, batch.n, batch.k, batch.d

    vectors = side_vectors(batch, config.similarity)  # §3: the unit rows n(x) (SIM-1, SIM-2)
    rows = logit_rows(xp, vectors, config)  # §4 and §5: z = scale · s + h, -inf where excluded
    positive = positive_logits(xp, rows)  # QD-2: p_g

    groups = config.partition_groups  # §6: the groups of the partition mode (PART-2, PART-3, PART-5)
    log_z = log_partitions(xp, rows, groups)  # one log-partition per group
    per_query = per_query_losses(xp, log_z, groups, positive)  # LOSS-2: l_g

    grads = logit_gradients(xp, rows, log_z, n, len(groups))  # §7: G = ∂L/∂z (GRAD-1, GRAD-2)
    grad_u = unit_row_gradients(xp, vectors, rows, grads, config.scale)  # ∂L/∂n(x) (GRAD-1, HARD-5)
    grad_docs_u = xp.concat([grad_u["positives"], grad_u["hard_negatives"]], axis=0)
    doc_rows = xp.reshape(batch.docs, (k * n, d))
    unit_docs = xp.concat([vectors["positives"], vectors["hard_negatives"]], axis=0)
    return Result(
        loss=loss(xp, per_query),  # LOSS-1
        per_query_loss=per_query,
        grad_queries=pullback(xp, batch.queries, vectors["queries"], grad_u["queries"], config.similarity),
        grad_docs=xp.reshape(pullback(xp, doc_rows, unit_docs, grad_docs_u, config.similarity), (k, n, d)),
        grad_scale=scale_gradient(xp, rows, grads),  # SCALE-2
    )
