"""Conformance adapters for the plain TensorFlow loss of :mod:`tf_infonce` -- levels 1, 2 and 3, no torch.

Run them (in an environment with ``infonce-spec[conformance]`` and ``tensorflow-cpu``)::

    infonce-conformance run --adapter examples/tf_adapter.py:adapter --profile ci
    infonce-conformance run --adapter examples/tf_adapter.py:data_parallel --profile ci

Level 1 with a learnable scale (SCALE-2) and input validation (VAL-1); level 2 a linear encoder
(``x @ weight.T``), plain or cached -- GradCache: embed every mini-batch outside any tape, take the
loss's gradient with respect to the embeddings, then one tape per mini-batch pulls its stored
gradient back (``output_gradients``) -- with dropout from stateless random ops keyed by the case's
seed (CACHE-3: both forwards of a mini-batch use the same mask by construction). Every step's forward
runs, under its own tape, before any backward (CACHE-4).

:data:`data_parallel` adds level 3 in the ``devices`` form: a ``tf.distribute.MirroredStrategy``
over W logical CPU devices (the module splits the CPU into 4 before TensorFlow starts), each replica
computing its ``L_r`` with ``ReplicaContext.all_gather``, whose gradient sums the replicas'
cotangents (DP-3), and its own copy of the encoder weight (DP-4).

:data:`processes` adds level 3 in the ``rendezvous`` form instead: one process per rank, as a
multi-worker job runs. ``join`` writes ``TF_CONFIG`` (a cluster of W workers at the suite's
addresses, this process the worker of its rank) and starts a
``tf.distribute.MultiWorkerMirroredStrategy``, one replica per worker; each rank then runs its own
case with the same replica function (collectives over gRPC).

Not claimed: CACHE-5 (measured through torch's allocator only).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Sequence
from functools import cache, partial
from typing import Any

import numpy as np
import tensorflow as tf
from infonce_options import (
    DIRECTIONS,
    Options,
    check_equal_local_batches,
    check_mini_batch_size,
    validate_batch,
    validate_config,
)
from tf_infonce import infonce_loss

from infonce_spec.conformance import (
    Capabilities,
    DropoutCase,
    EmbeddingCase,
    EncoderCase,
    EncoderGrads,
    LossGrads,
    RankCase,
    RankEncoderCase,
    Rendezvous,
)

__all__ = ["TensorFlowAdapter", "adapter", "data_parallel", "processes"]

#: Level 3's replicas: W logical CPU devices, which TensorFlow accepts only before it starts.
REPLICAS = 4
with contextlib.suppress(RuntimeError):  # already started (another adapter first): see _strategy
    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * REPLICAS
    )

F32 = tf.float32
#: A step: its loss (a tensor) and its backward as a function of the upstream multiplier.
Step = tuple[tf.Tensor, Callable[[float], tf.Tensor]]
LossFn = Callable[..., tf.Tensor]


def _f32(x: Any) -> tf.Tensor:
    return tf.constant(np.asarray(x), dtype=F32)


def _linear(x: tf.Tensor, weight: tf.Tensor) -> tf.Tensor:
    """The bias-free linear encoder ``x @ weight.T`` on (..., F) inputs."""
    return tf.einsum("...f,df->...d", x, weight)


def _plain_step(
    loss_fn: LossFn, weight: tf.Tensor, xq: tf.Tensor, xd: tf.Tensor, scale: float, options: Options
) -> Step:
    """The forward under a tape; the backward (later) as a function of the upstream multiplier."""
    with tf.GradientTape() as tape:
        tape.watch(weight)
        loss = loss_fn(_linear(xq, weight), _linear(xd, weight), scale, options)

    def backward(upstream: float) -> tf.Tensor:
        return tape.gradient(loss, weight, output_gradients=tf.constant(upstream, F32))

    return loss, backward


def _cached_step(
    loss_fn: LossFn, weight: tf.Tensor, xq: tf.Tensor, xd: tf.Tensor, scale: float, options: Options, m: int
) -> Step:
    """GradCache (spec §10): embeddings without a tape, their gradient, then one tape per mini-batch."""
    n = xq.shape[0]
    starts = range(0, n, m)
    columns = [xq, *tf.unstack(xd)]
    embedded = [tf.concat([_linear(x[s : s + m], weight) for s in starts], 0) for x in columns]
    eq, ed = embedded[0], tf.stack(embedded[1:])
    with tf.GradientTape() as tape:
        tape.watch([eq, ed])
        loss = loss_fn(eq, ed, scale, options)
    gq, gd = tape.gradient(loss, [eq, ed])
    stored = [gq, *tf.unstack(gd)]

    def backward(upstream: float) -> tf.Tensor:
        total = tf.zeros_like(weight)
        for x, g in zip(columns, stored, strict=True):
            for s in starts:
                with tf.GradientTape() as mini:
                    mini.watch(weight)
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


@cache
def _strategy(w: int) -> tf.distribute.MirroredStrategy:
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    if len(devices) < w:
        raise RuntimeError(
            f"W = {w} replicas need {w} logical CPU devices, TensorFlow has {len(devices)}: the "
            "adapter's module must be imported before TensorFlow starts"
        )
    # Every MirroredStrategy numbers its collective groups from 1, so a second strategy of another
    # size in the same process collides with the first ("joining a group with size 3, but that group
    # has size 2"); each W gets its own range through the class attribute TensorFlow's own tests set.
    keyed = type(
        f"MirroredStrategyW{w}", (tf.distribute.MirroredStrategy,), {"_collective_key_base": 10_000 * w}
    )
    return keyed(devices[:w])


def _replica_embeddings(q: tf.Tensor, d: tf.Tensor, scale: float, options: Options) -> tuple[tf.Tensor, ...]:
    """One replica's ``L_r`` and its gradients with respect to its local ``q`` and ``d`` (DP-2, DP-3)."""
    with tf.GradientTape() as tape:
        tape.watch([q, d])
        loss = infonce_loss(q, d, scale, options, replicas=True)
    return (loss, *tape.gradient(loss, [q, d]))


def _per_replica(strategy: tf.distribute.MirroredStrategy, outputs: Any) -> list[list[tf.Tensor]]:
    """``strategy.run``'s per-replica outputs as one list per output, in replica order."""
    return [list(strategy.experimental_local_results(o)) for o in outputs]


class TensorFlowAdapter:
    """The plain TensorFlow loss in float32: levels 1 and 2, and level 3 with ``data_parallel``."""

    def __init__(
        self, name: str = "tf-infonce", *, data_parallel: bool = False, collectives: str = "devices"
    ) -> None:
        self._workers: tf.distribute.MultiWorkerMirroredStrategy | None = None
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
            data_parallel=data_parallel,
            collectives=collectives,
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
        self,
        weight: tf.Tensor,
        xq: Any,
        xd: Any,
        options: Options,
        scale: float,
        m: int | None,
        loss_fn: LossFn = infonce_loss,
    ) -> Step:
        xq, xd = tf.cast(xq, F32), tf.cast(xd, F32)
        if m is None:
            return _plain_step(loss_fn, weight, xq, xd, scale, options)
        return _cached_step(loss_fn, weight, xq, xd, scale, options, m)

    def encoder(self, case: EncoderCase) -> EncoderGrads:
        options = validate_config(**case.loss_kwargs())
        check_mini_batch_size(case.mini_batch_size)
        weight = _f32(case.weight)
        scale = float(case.config.scale)
        steps = [
            self._step(weight, s.x_queries, s.x_docs, options, scale, case.mini_batch_size)
            for s in case.steps
        ]
        total = tf.zeros_like(weight)
        for (_, backward), s in zip(steps, case.steps, strict=True):
            total += backward(float(s.upstream))
        return EncoderGrads([float(loss) for loss, _ in steps], total.numpy())

    def dropout_encoder(self, case: DropoutCase) -> EncoderGrads:
        options = validate_config(**case.loss_kwargs())
        check_mini_batch_size(case.mini_batch_size)
        columns = [case.x_queries, *case.x_docs]
        dropped = [_dropout(_f32(x), case.p, case.seed, c) for c, x in enumerate(columns)]
        weight = _f32(case.weight)
        loss, backward = self._step(
            weight, dropped[0], tf.stack(dropped[1:]), options, float(case.config.scale), case.mini_batch_size
        )
        return EncoderGrads([float(loss)], backward(float(case.upstream)).numpy())

    # -- level 3 (collectives="devices"): one replica per rank ----------------------------------------------
    def devices_embeddings(self, cases: Sequence[RankCase]) -> list[LossGrads]:
        check_equal_local_batches([(c.queries.shape, c.docs.shape) for c in cases])
        options = validate_config(**cases[0].loss_kwargs())
        queries = _f32(np.stack([c.queries for c in cases]))  # (W, B, D): replica r takes its row
        docs = _f32(np.stack([c.docs for c in cases]))
        scale = float(cases[0].config.scale)

        def replica() -> tuple[tf.Tensor, ...]:
            r = tf.distribute.get_replica_context().replica_id_in_sync_group
            return _replica_embeddings(tf.gather(queries, r), tf.gather(docs, r), scale, options)

        strategy = _strategy(len(cases))
        losses, gq, gd = _per_replica(strategy, strategy.run(replica))
        return [LossGrads(float(losses[r]), gq[r].numpy(), gd[r].numpy()) for r in range(len(cases))]

    def devices_encoder(self, cases: Sequence[RankEncoderCase]) -> list[EncoderGrads]:
        check_equal_local_batches([(c.x_queries.shape, c.x_docs.shape) for c in cases])
        options = validate_config(**cases[0].loss_kwargs())
        check_mini_batch_size(cases[0].mini_batch_size)
        weights = _f32(np.stack([c.weight for c in cases]))  # every replica its own copy (DP-4)
        xq = _f32(np.stack([c.x_queries for c in cases]))
        xd = _f32(np.stack([c.x_docs for c in cases]))
        scale, m = float(cases[0].config.scale), cases[0].mini_batch_size

        def replica() -> tuple[tf.Tensor, tf.Tensor]:
            r = tf.distribute.get_replica_context().replica_id_in_sync_group
            return self._replica_step(
                tf.gather(weights, r), tf.gather(xq, r), tf.gather(xd, r), options, scale, m
            )

        strategy = _strategy(len(cases))
        losses, grads = _per_replica(strategy, strategy.run(replica))
        return [EncoderGrads([float(losses[r])], grads[r].numpy()) for r in range(len(cases))]

    def _replica_step(
        self, weight: tf.Tensor, xq: tf.Tensor, xd: tf.Tensor, options: Options, scale: float, m: int | None
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """One replica's encoder step: its ``L_r`` and its own weight gradient (DP-4)."""
        loss, backward = self._step(weight, xq, xd, options, scale, m, partial(infonce_loss, replicas=True))
        return loss, backward(1.0)

    # -- level 3 (collectives="rendezvous": this process is one rank) -------------------------------------
    def join(self, rendezvous: Rendezvous) -> None:
        """Start this worker of a W-worker cluster at the suite's addresses (before any collective)."""
        cluster = {"worker": list(rendezvous.addresses)}
        os.environ["TF_CONFIG"] = json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": rendezvous.rank}}
        )
        self._workers = tf.distribute.MultiWorkerMirroredStrategy()
        if self._workers.num_replicas_in_sync != rendezvous.world_size:
            raise RuntimeError(
                f"{self._workers.num_replicas_in_sync} replicas for W = {rendezvous.world_size} workers"
            )

    def _run_rank(self, replica: Callable[[], Any], shapes: tuple[tuple[int, ...], ...]) -> list[tf.Tensor]:
        """``replica`` on this worker's one replica, after DP-5: every worker learns every worker's
        local shapes (an all-gather of equal length), so that all refuse alike."""
        strategy = self._workers
        if strategy is None:
            raise RuntimeError("rank_* before join(rendezvous)")
        mine = tf.constant([n for shape in shapes for n in shape], dtype=tf.int64)
        every = strategy.run(lambda: tf.distribute.get_replica_context().all_gather(mine[None], axis=0))
        check_equal_local_batches(
            [tuple(row) for row in strategy.experimental_local_results(every)[0].numpy().tolist()]
        )
        return [strategy.experimental_local_results(o)[0] for o in strategy.run(replica)]

    def rank_embeddings(self, case: RankCase) -> LossGrads:
        shapes = (case.queries.shape, case.docs.shape)
        options = validate_config(**case.loss_kwargs())
        q, d, scale = _f32(case.queries), _f32(case.docs), float(case.config.scale)
        loss, gq, gd = self._run_rank(lambda: _replica_embeddings(q, d, scale, options), shapes)
        return LossGrads(float(loss), gq.numpy(), gd.numpy())

    def rank_encoder(self, case: RankEncoderCase) -> EncoderGrads:
        shapes = (case.x_queries.shape, case.x_docs.shape)
        options = validate_config(**case.loss_kwargs())
        check_mini_batch_size(case.mini_batch_size)
        weight, xq, xd = _f32(case.weight), _f32(case.x_queries), _f32(case.x_docs)
        scale, m = float(case.config.scale), case.mini_batch_size
        loss, grad = self._run_rank(lambda: self._replica_step(weight, xq, xd, options, scale, m), shapes)
        return EncoderGrads([float(loss)], grad.numpy())


adapter = TensorFlowAdapter()
data_parallel = TensorFlowAdapter("tf-infonce-data-parallel", data_parallel=True)
processes = TensorFlowAdapter("tf-infonce-processes", data_parallel=True, collectives="rendezvous")
