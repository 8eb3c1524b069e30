"""A plain TensorFlow MultipleNegativesRankingLoss, written from infonce-spec (not from any other library).

``infonce_loss(queries, docs, scale, options)`` is the loss of spec §2-§6; ``tf.GradientTape`` gives
§7's gradients. Every direction with its masks (MASK-QQ-1, MASK-DD-1, MASK-DD-2) as ``-inf``
logits (GRAD-2), every partition mode, cos and dot, the three hardness modes with the hardness term
behind ``tf.stop_gradient`` (HARD-5). ``options`` come from :func:`infonce_options.validate_config`.
The adapter that checks it is :mod:`tf_adapter`.

``replicas=True``: inside ``tf.distribute.MirroredStrategy.run``, the replicas' local batches are
gathered column by column (DP-1) with ``ReplicaContext.all_gather``, whose gradient sums the
replicas' cotangents (DP-3); the loss is this replica's ``L_r`` (DP-2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf
from infonce_options import EPS, Options, groups

__all__ = ["gather_replicas", "infonce_loss"]


def _unit(x: tf.Tensor) -> tf.Tensor:
    """SIM-1's n(x) = x / max(|x|, eps), with a gradient that is finite at x = 0 (GRAD-3)."""
    sq = tf.reduce_sum(x * x, axis=-1, keepdims=True)
    above = sq >= EPS * EPS
    norm = tf.where(above, tf.sqrt(tf.where(above, sq, tf.ones_like(sq))), tf.constant(EPS, x.dtype))
    return x / norm


def gather_replicas(x: tf.Tensor, axis: int) -> tf.Tensor:
    """The global batch along ``axis``, in replica order (DP-1); its gradient sums over replicas."""
    return tf.distribute.get_replica_context().all_gather(x, axis=axis)


def infonce_loss(
    queries: tf.Tensor,
    docs: tf.Tensor,
    scale: Any,
    options: Options,
    *,
    replicas: bool = False,
    gather: Callable[[tf.Tensor, int], tf.Tensor] = gather_replicas,
) -> tf.Tensor:
    """Mean per-query loss (LOSS-1) of the local ``queries`` (B, D) against ``docs`` (K, B, D); with
    ``replicas``, this replica's ``L_r`` over the global batch that ``gather`` builds."""
    directions, mode, similarity, hardness, alpha = options
    b, k = queries.shape[0], docs.shape[0]
    q_all, d_all = (gather(queries, 0), gather(docs, 1)) if replicas else (queries, docs)
    n = q_all.shape[0]
    rank = tf.distribute.get_replica_context().replica_id_in_sync_group if replicas else 0
    own = rank * b + tf.range(b)  # global indices g of the local rows (DP-1)
    if similarity == "cos":
        queries, docs, q_all, d_all = _unit(queries), _unit(docs), _unit(q_all), _unit(d_all)
    cand = tf.reshape(d_all, (k * n, -1))  # LAYOUT-3: candidate c = k N + j
    col_j = tf.range(k * n) % n
    col_k = tf.range(k * n) // n
    same = col_j[None, :] == own[:, None]  # (B, K N): j == g
    neg_inf = tf.constant(float("-inf"), queries.dtype)
    positive = scale * tf.reduce_sum(queries * docs[0], axis=-1)  # QD-2
    rows: dict[str, tf.Tensor] = {}
    s_qd = tf.matmul(queries, cand, transpose_b=True)
    z_qd = scale * s_qd
    if hardness is not None and alpha > 0:  # HARD-2/3/4
        selected = {
            "in_batch_negatives": ~same,
            "hard_negatives": same & (col_k[None, :] >= 1),
            "all_negatives": ~(same & (col_k[None, :] == 0)),
        }[hardness]
        z_qd = z_qd + tf.where(selected, alpha * tf.stop_gradient(s_qd), tf.zeros_like(s_qd))
    rows["query_to_doc"] = z_qd
    if "query_to_query" in directions:  # MASK-QQ-1
        z = scale * tf.matmul(queries, q_all, transpose_b=True)
        rows["query_to_query"] = tf.where(tf.range(n)[None, :] == own[:, None], neg_inf, z)
    if "doc_to_query" in directions:  # DQ-1: j = g kept
        rows["doc_to_query"] = scale * tf.matmul(docs[0], q_all, transpose_b=True)
    if "doc_to_doc" in directions:  # MASK-DD-1, MASK-DD-2: every (k, g)
        rows["doc_to_doc"] = tf.where(same, neg_inf, scale * tf.matmul(docs[0], cand, transpose_b=True))
    lse = [
        tf.reduce_logsumexp(tf.concat([rows[d] for d in g], axis=1), axis=1) for g in groups(directions, mode)
    ]
    per_query = tf.reduce_mean(tf.stack(lse), axis=0) - positive  # LOSS-2
    return tf.reduce_mean(per_query)
