"""Conformance adapter for the plain TensorFlow loss of :mod:`tf_infonce` -- levels 1 and 2, no torch.

Run it (in an environment with ``infonce-spec[conformance]`` and ``tensorflow-cpu``)::

    infonce-conformance run --adapter examples/tf_adapter.py:adapter --profile ci

Level 1 with a learnable scale (SCALE-2) and input validation (VAL-1); level 2 a linear encoder
(``x @ weight.T``), plain or cached -- GradCache: embed every mini-batch outside any tape, take the
loss's gradient with respect to the embeddings, then one tape per mini-batch pulls its stored
gradient back (``output_gradients``) -- with dropout from stateless random ops keyed by the case's
seed (CACHE-3: both forwards of a mini-batch use the same mask by construction). Every step's forward
runs, under its own tape, before any backward (CACHE-4).

Not claimed: level 3 (a ``MirroredStrategy`` adapter would claim ``collectives="devices"`` like
``jax_adapter.data_parallel``), CACHE-5 (measured through torch's allocator only).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf
from infonce_options import DIRECTIONS, Options, check_mini_batch_size, validate_batch, validate_config
from tf_infonce import infonce_loss

from infonce_spec.conformance import (
    Capabilities,
    DropoutCase,
    EmbeddingCase,
    EncoderCase,
    EncoderGrads,
    LossGrads,
)

__all__ = ["TensorFlowAdapter", "adapter"]

F32 = tf.float32
Step = tuple[float, Callable[[float], tf.Tensor]]


def _f32(x: Any) -> tf.Tensor:
    return tf.constant(np.asarray(x), dtype=F32)


def _linear(x: tf.Tensor, weight: tf.Variable) -> tf.Tensor:
    """The bias-free linear encoder ``x @ weight.T`` on (..., F) inputs."""
    return tf.einsum("...f,df->...d", x, weight)


def _plain_step(weight: tf.Variable, xq: tf.Tensor, xd: tf.Tensor, scale: float, options: Options) -> Step:
    """The forward under a tape; the backward (later) as a function of the upstream multiplier."""
    with tf.GradientTape() as tape:
        loss = infonce_loss(_linear(xq, weight), _linear(xd, weight), scale, options)

    def backward(upstream: float) -> tf.Tensor:
        return tape.gradient(loss, weight, output_gradients=tf.constant(upstream, F32))

    return float(loss), backward


def _cached_step(
    weight: tf.Variable, xq: tf.Tensor, xd: tf.Tensor, scale: float, options: Options, m: int
) -> Step:
    """GradCache (spec §10): embeddings without a tape, their gradient, then one tape per mini-batch."""
    n = xq.shape[0]
    starts = range(0, n, m)
    columns = [xq, *tf.unstack(xd)]
    embedded = [tf.concat([_linear(x[s : s + m], weight) for s in starts], 0) for x in columns]
    eq, ed = tf.Variable(embedded[0]), tf.Variable(tf.stack(embedded[1:]))
    with tf.GradientTape() as tape:
        loss = infonce_loss(eq, ed, scale, options)
    gq, gd = tape.gradient(loss, [eq, ed])
    stored = [gq, *tf.unstack(gd)]

    def backward(upstream: float) -> tf.Tensor:
        total = tf.zeros_like(weight)
        for x, g in zip(columns, stored, strict=True):
            for s in starts:
                with tf.GradientTape() as mini:
                    e = _linear(x[s : s + m], weight)
                total += mini.gradient(e, weight, output_gradients=upstream * g[s : s + m])
        return total

    return float(loss), backward


def _dropout(x: tf.Tensor, p: float, seed: int, column: int) -> tf.Tensor:
    """Inverted dropout from a stateless uniform keyed by (seed, column)."""
    if p == 0:
        return x
    keep = tf.random.stateless_uniform(x.shape, seed=(seed, column)) >= p
    return tf.where(keep, x / (1.0 - p), tf.zeros_like(x))


class TensorFlowAdapter:
    """Levels 1 and 2 of the plain TensorFlow loss, in float32."""

    def __init__(self, name: str = "tf-infonce") -> None:
        self.capabilities = Capabilities(
            name=name,
            directions=frozenset(DIRECTIONS),
            partition_modes=frozenset({"joint", "per_direction", "per_anchor"}),
            similarities=frozenset({"cos", "dot"}),
            hardness_modes=frozenset({"in_batch_negatives", "hard_negatives", "all_negatives"}),
            dtype="float32",
            grad_scale=True,
            encoder=True,
            cached=True,
            dropout=True,
            validates_inputs=True,
        )

    def embeddings(self, case: EmbeddingCase) -> LossGrads:
        options = validate_config(**case.loss_kwargs())
        validate_batch(case.queries, case.docs)
        q, d = tf.Variable(_f32(case.queries)), tf.Variable(_f32(case.docs))
        scale = tf.Variable(float(case.config.scale), dtype=F32)
        with tf.GradientTape() as tape:
            loss = infonce_loss(q, d, scale, options)
        gq, gd, gs = tape.gradient(loss, [q, d, scale])
        return LossGrads(float(loss), gq.numpy(), gd.numpy(), float(gs))

    def _step(
        self, weight: tf.Variable, xq: Any, xd: Any, options: Options, scale: float, m: int | None
    ) -> Step:
        xq, xd = tf.cast(xq, F32), tf.cast(xd, F32)
        if m is None:
            return _plain_step(weight, xq, xd, scale, options)
        return _cached_step(weight, xq, xd, scale, options, m)

    def encoder(self, case: EncoderCase) -> EncoderGrads:
        options = validate_config(**case.loss_kwargs())
        check_mini_batch_size(case.mini_batch_size)
        weight = tf.Variable(_f32(case.weight))
        scale = float(case.config.scale)
        steps = [
            self._step(weight, s.x_queries, s.x_docs, options, scale, case.mini_batch_size)
            for s in case.steps
        ]
        total = tf.zeros_like(weight)
        for (_, backward), s in zip(steps, case.steps, strict=True):
            total += backward(float(s.upstream))
        return EncoderGrads([loss for loss, _ in steps], total.numpy())

    def dropout_encoder(self, case: DropoutCase) -> EncoderGrads:
        options = validate_config(**case.loss_kwargs())
        check_mini_batch_size(case.mini_batch_size)
        columns = [case.x_queries, *case.x_docs]
        dropped = [_dropout(_f32(x), case.p, case.seed, c) for c, x in enumerate(columns)]
        weight = tf.Variable(_f32(case.weight))
        loss, backward = self._step(
            weight, dropped[0], tf.stack(dropped[1:]), options, float(case.config.scale), case.mini_batch_size
        )
        return EncoderGrads([loss], backward(float(case.upstream)).numpy())


adapter = TensorFlowAdapter()
