"""Peer adapter: optax's ``optax.losses.ntxent`` (JAX), SimCLR's NT-Xent.

``ntxent(embeddings, labels, temperature)`` takes one (2N, D) batch and integer labels that pair
its rows; with ``embeddings = concat(queries, docs[0])`` and ``labels = [0 .. N-1, 0 .. N-1]``
every row is an anchor against every other row, its pair the target, averaged over the 2N anchors:
all four directions, ``per_anchor`` (PART-5; spec §14.1). Its similarity is the cosine
(``optax.losses.cosine_similarity`` with ``epsilon = finfo(dtype).eps``); scale = 1/temperature,
and the temperature may be an array, so dL/dscale is taken through ``temperature = 1/scale``.

The loss is called under ``jax.jit``, as a training step would (one compilation per shape). JAX
computes in float32 unless x64 is enabled, so the adapter claims float32.

Not claimed: hard negatives (K >= 2: no such input), ``dot``, validation, the encoder and cached
levels, data parallel. It runs without torch, in the JAX environment (``./run setup-frameworks jax``
or peers/run_matrix.py).

Run: ``infonce-conformance run --adapter adapters/peers/peer_optax.py:ntxent``
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from infonce_spec.conformance.protocol import Capabilities, EmbeddingCase, LossGrads, nt_xent


def _loss(queries: jax.Array, positives: jax.Array, scale: jax.Array) -> jax.Array:
    n = queries.shape[0]
    labels = jnp.concatenate([jnp.arange(n), jnp.arange(n)])
    return optax.losses.ntxent(jnp.concatenate([queries, positives]), labels, 1.0 / scale)


_loss_and_grads = jax.jit(jax.value_and_grad(_loss, argnums=(0, 1, 2)))


class OptaxNTXent:
    def __init__(self) -> None:
        self.capabilities = Capabilities(
            name=f"optax {optax.__version__} losses.ntxent (float32, jit)",
            configurations=nt_xent(),
            similarities=frozenset({"cos"}),
            max_k=1,
            dtype="float32",
            grad_scale=True,
        )

    def embeddings(self, case: EmbeddingCase) -> LossGrads:
        q = jnp.asarray(case.queries, jnp.float32)
        p = jnp.asarray(case.docs[0], jnp.float32)
        loss, (gq, gp, gs) = _loss_and_grads(q, p, jnp.float32(case.config.scale))
        return LossGrads(float(loss), np.asarray(gq), np.asarray(gp)[None], float(gs))


ntxent = OptaxNTXent()
