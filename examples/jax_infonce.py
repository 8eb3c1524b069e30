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
* :func:`validate_config` and :func:`validate_batch` raise ``ValueError``/``TypeError`` naming the
  clause (VAL-1); they run outside ``jit`` (on Python values and concrete shapes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["DIRECTIONS", "Options", "gather_global", "infonce_loss", "validate_batch", "validate_config"]

DIRECTIONS = ("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc")
PARTITION_MODES = ("joint", "per_direction", "per_anchor")
HARDNESS_MODES = ("in_batch_negatives", "hard_negatives", "all_negatives")
EPS = 1e-12  # SIM-1's floor, fixed by the spec

#: A validated configuration: (directions in canonical order, partition mode, similarity, hardness
#: mode or None, hardness strength). The scale stays an argument (it may be differentiated).
Options = tuple[tuple[str, ...], str, str, "str | None", float]


def _real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def validate_config(
    directions: Sequence[str] = ("query_to_doc",),
    partition_mode: str = "joint",
    scale: Any = 20.0,
    similarity: str = "cos",
    hardness_mode: str | None = None,
    hardness_strength: Any = 0.0,
) -> Options:
    """The configuration checks of spec §11, before any data is seen (VAL-1)."""
    if isinstance(directions, str) or not all(isinstance(d, str) for d in directions):
        raise TypeError(f"[DIR-1] directions must be a collection of names, got {directions!r}")
    chosen = set(directions)
    if not chosen or not chosen <= set(DIRECTIONS) or "query_to_doc" not in chosen:
        raise ValueError(f"[DIR-1] directions must be a non-empty subset of {DIRECTIONS} with query_to_doc")
    ordered = tuple(d for d in DIRECTIONS if d in chosen)
    if partition_mode not in PARTITION_MODES:
        raise ValueError(f"[PART-1] partition_mode must be one of {PARTITION_MODES}, got {partition_mode!r}")
    if partition_mode == "per_direction" and not chosen <= {"query_to_doc", "doc_to_query"}:
        raise ValueError(
            "[PART-4] partition_mode='per_direction' is defined only for query_to_doc/doc_to_query"
        )
    if partition_mode == "per_anchor" and "doc_to_doc" in chosen and "doc_to_query" not in chosen:
        raise ValueError("[PART-6] per_anchor: the document group needs doc_to_query (the positive pair)")
    if similarity not in ("cos", "dot"):
        raise ValueError(f"[SIM-3] similarity must be 'cos' or 'dot', got {similarity!r}")
    if isinstance(scale, jax.Array):
        scale = float(scale)
    if not _real(scale):
        raise TypeError(f"[SCALE-1] scale must be a real number, got {scale!r}")
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"[SCALE-1] scale must be finite and > 0, got {scale!r}")
    if hardness_mode is not None and hardness_mode not in HARDNESS_MODES:
        raise ValueError(f"[HARD-1] hardness_mode must be None or one of {HARDNESS_MODES}")
    if not _real(hardness_strength):
        raise TypeError(f"[HARD-1] hardness_strength must be a real number, got {hardness_strength!r}")
    if not math.isfinite(hardness_strength) or hardness_strength < 0:
        raise ValueError(f"[HARD-1] hardness_strength must be finite and >= 0, got {hardness_strength!r}")
    return ordered, partition_mode, similarity, hardness_mode, float(hardness_strength)


def validate_batch(queries: Any, docs: Any) -> None:
    """The data checks of spec §11 on concrete arrays (LAYOUT-1, -2, -4, -5)."""
    for name, x in (("queries", queries), ("docs", docs)):
        if not hasattr(x, "dtype") or not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(f"[LAYOUT-5] {name} must be a real floating array, got {type(x).__name__}")
    if queries.ndim != 2 or min(queries.shape) < 1:
        raise ValueError(f"[LAYOUT-1] queries must be (N, D) with N, D >= 1, got {queries.shape}")
    if docs.ndim != 3 or docs.shape[0] < 1 or docs.shape[1:] != queries.shape:
        raise ValueError(
            f"[LAYOUT-2] docs must be (K, N, D) matching queries {queries.shape}, got {docs.shape}"
        )
    if not (bool(jnp.all(jnp.isfinite(queries))) and bool(jnp.all(jnp.isfinite(docs)))):
        raise ValueError("[LAYOUT-4] queries and docs must be finite")


def _unit(x: jax.Array) -> jax.Array:
    """SIM-1's n(x) = x / max(|x|, eps), with a gradient that is finite at x = 0 (GRAD-3)."""
    sq = jnp.sum(x * x, axis=-1, keepdims=True)
    above = sq >= EPS * EPS
    norm = jnp.where(above, jnp.sqrt(jnp.where(above, sq, 1.0)), EPS)
    return x / norm


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
    if mode == "joint":
        groups = [directions]
    elif mode == "per_direction":
        groups = [(d,) for d in directions]
    else:  # per_anchor: the rows of q_g, the rows of d[0, g]
        groups = [
            g
            for g in (("query_to_doc", "query_to_query"), ("doc_to_query", "doc_to_doc"))
            if set(g) & set(directions)
        ]
        groups = [tuple(d for d in g if d in directions) for g in groups]
    lse = [jax.nn.logsumexp(jnp.concatenate([rows[d] for d in g], axis=1), axis=1) for g in groups]
    per_query = jnp.mean(jnp.stack(lse), axis=0) - positive  # LOSS-2
    return jnp.mean(per_query)
