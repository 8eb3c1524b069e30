"""Peer adapter: tensorflow-similarity's ``SimCLRLoss`` (TensorFlow), SimCLR's NT-Xent.

``SimCLRLoss(temperature)(za, zb)`` with ``za`` = queries and ``zb`` = ``docs[0]``: both views are
L2-normalised (``tf.math.l2_normalize``), each row of ``za`` is an anchor against every row of
``zb`` and every other row of ``za`` (itself pushed down by subtracting 1e9), and the same with the
roles exchanged; the two per-example cross-entropies are added and Keras' default reduction
averages them over the N examples. Its anchors and candidates are those of all four directions,
``per_anchor`` (PART-5; spec §14.1); scale = 1/temperature, taken as a variable so that dL/dscale
is the tape's gradient through ``temperature = 1/scale``.

Only ``tensorflow_similarity.losses.simclr`` is imported (the package's ``__init__`` pulls nmslib,
umap, matplotlib and more, which the loss never uses). Float32, eager, outside any distribution
strategy. Not claimed: hard negatives (K >= 2), ``dot``, validation, the encoder and cached
levels, data parallel (its ``cross_replica_concat`` runs under ``tf.distribute`` only). It runs
without torch, in the TensorFlow environment (peers/run_matrix.py).

Run: ``infonce-conformance run --adapter adapters/peers/peer_tf_similarity.py:simclr``
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from _import_only import import_module_only

from infonce_spec.conformance.protocol import Capabilities, EmbeddingCase, LossGrads, nt_xent

SimCLRLoss = import_module_only("tensorflow_similarity", "losses.simclr").SimCLRLoss


class SimCLRAdapter:
    def __init__(self) -> None:
        self.capabilities = Capabilities(
            name="tensorflow-similarity SimCLRLoss (float32)",
            configurations=nt_xent(),
            similarities=frozenset({"cos"}),
            max_k=1,
            dtype="float32",
            grad_scale=True,
        )

    def embeddings(self, case: EmbeddingCase) -> LossGrads:
        za = tf.Variable(np.asarray(case.queries, np.float32))
        zb = tf.Variable(np.asarray(case.docs[0], np.float32))
        scale = tf.Variable(np.float32(case.config.scale))
        with tf.GradientTape() as tape:
            loss = SimCLRLoss(temperature=1.0 / scale)(za, zb)
        ga, gb, gs = tape.gradient(loss, [za, zb, scale])
        zeros = tf.zeros_like
        ga = ga if ga is not None else zeros(za)
        gb = gb if gb is not None else zeros(zb)
        return LossGrads(float(loss), ga.numpy(), gb.numpy()[None], float(gs) if gs is not None else 0.0)


simclr = SimCLRAdapter()
