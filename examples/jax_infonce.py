"""A plain JAX MultipleNegativesRankingLoss, written from infonce-spec (not from any other library).

``infonce_loss(queries, docs, ...)`` is the loss of spec §2-§6 with the spec's (= sentence-transformers')
option names; ``jax.grad`` gives §7's gradients. It is an example for docs/conformance.md: the adapters
in :mod:`jax_adapter` check it at every level of the conformance suite.

* Every direction (QD-1, QQ-1, DQ-1, DD-1 with MASK-QQ-1, MASK-DD-1, MASK-DD-2), every partition
  mode (PART-2, PART-3, PART-5), cos and dot (SIM-1, SIM-2), the three hardness modes (HARD-2,
  HARD-3); excluded entries are ``-inf`` logits (GRAD-2).
* ``axis_name``: inside ``jax.shard_map`` over that mesh axis, the local batches of all devices
  are gathered column by column (DP-1) with ``jax.lax.all_gather``, whose transpose sums the
  cotangents (DP-3); the loss is this device's ``L_r`` (DP-2).
* :func:`validate_config` and :func:`validate_batch` (from :mod:`infonce_options`) raise
  ``ValueError``/``TypeError`` naming the clause (VAL-1); they run outside ``jit``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from infonce_options import DIRECTIONS, EPS, Options, groups, validate_batch, validate_config

__all__ = ["DIRECTIONS", "Options", "gather_global", "infonce_loss", "validate_batch", "validate_config"]


def _unit(x: jax.Array) -> jax.Array:
    """SIM-1's n(x) = x / max(|x|, eps), with a gradient that is finite at x = 0 (GRAD-3)."""
    sq = jnp.sum(x * x, axis=-1, keepdims=True)
    above = sq >= EPS * EPS
    norm = jnp.where(above, jnp.sqrt(jnp.where(above, sq, 1.0)), EPS)
    return x / norm


def _materialized(z: jax.Array) -> jax.Array:
    """The logits computed once, rounded, before ``logsumexp`` reads them twice (NUM-1).

    Under ``jit``, XLA's CPU backend fuses the producer of the logits (``scale * (q @ c.T)``) into
    both consumers of ``logsumexp`` -- the row maximum and ``exp(z - max)`` -- and may contract the
    second copy into a fused multiply-add that skips the rounding of ``z``. Then ``z - max`` is not
    0 but a fraction of an ulp of the logit (16384 at 4e12: ``scale`` 1000, dot products 4e9, the
    suite's ``numerics/large_logits``), and ``exp`` of it overflows: loss ``inf``, gradients NaN.
    The barrier keeps one rounded copy of ``z``; eager execution never showed it."""
    return jax.lax.optimization_barrier(z)


def gather_global(x: jax.Array, axis: int, axis_name: str | None) -> jax.Array:
    """The global batch along ``axis`` (rank order, DP-1); autodiff sums the cotangents (DP-3)."""
    return x if axis_name is None else jax.lax.all_gather(x, axis_name, axis=axis, tiled=True)


def infonce_loss(
    queries: jax.Array,
    docs: jax.Array,
    scale: Any,
    options: Options,
    *,
    axis_name: str | None = None,
    gather: Callable[[jax.Array, int, str | None], jax.Array] = gather_global,
) -> jax.Array:
    """Mean per-query loss of the local queries (spec LOSS-1; with ``axis_name``, this device's
    ``L_r`` over the global batch, DP-2). ``queries`` (B, D), ``docs`` (K, B, D); ``options`` from
    :func:`validate_config`. ``gather`` is how the global batch is built (a parameter so that the
    mutants in :mod:`jax_adapter` can break it)."""
    directions, mode, similarity, hardness, alpha = options
    q_all, d_all = gather(queries, 0, axis_name), gather(docs, 1, axis_name)
    b, n, k = queries.shape[0], q_all.shape[0], docs.shape[0]
    rank = 0 if axis_name is None else jax.lax.axis_index(axis_name)
    own = rank * b + jnp.arange(b)  # global indices g of the local rows (DP-1)
    if similarity == "cos":
        queries, docs, q_all, d_all = map(_unit, (queries, docs, q_all, d_all))
    cand = d_all.reshape(k * n, -1)  # LAYOUT-3: candidate c = k N + j
    col_j = jnp.arange(k * n) % n
    col_k = jnp.arange(k * n) // n
    same = col_j[None, :] == own[:, None]  # (B, K N): j == g
    pos = queries[:, None, :] @ docs[0][:, :, None]  # (B, 1, 1)
    positive = scale * pos[:, 0, 0]  # QD-2
    rows: dict[str, jax.Array] = {}
    s_qd = queries @ cand.T
    z_qd = scale * s_qd
    if hardness is not None and alpha > 0:  # HARD-2/3/4, no gradient through h (HARD-5)
        selected = {
            "in_batch_negatives": ~same,
            "hard_negatives": same & (col_k[None, :] >= 1),
            "all_negatives": ~(same & (col_k[None, :] == 0)),
        }[hardness]
        z_qd = z_qd + jnp.where(selected, alpha * jax.lax.stop_gradient(s_qd), 0.0)
    rows["query_to_doc"] = z_qd
    self_q = jnp.arange(n)[None, :] == own[:, None]
    if "query_to_query" in directions:  # MASK-QQ-1
        rows["query_to_query"] = jnp.where(self_q, -jnp.inf, scale * (queries @ q_all.T))
    if "doc_to_query" in directions:  # DQ-1: j = g kept
        rows["doc_to_query"] = scale * (docs[0] @ q_all.T)
    if "doc_to_doc" in directions:  # MASK-DD-1, MASK-DD-2: every (k, g)
        rows["doc_to_doc"] = jnp.where(same, -jnp.inf, scale * (docs[0] @ cand.T))
    lse = [
        jax.nn.logsumexp(_materialized(jnp.concatenate([rows[d] for d in g], axis=1)), axis=1)
        for g in groups(directions, mode)
    ]
    per_query = jnp.mean(jnp.stack(lse), axis=0) - positive  # LOSS-2
    return jnp.mean(per_query)
