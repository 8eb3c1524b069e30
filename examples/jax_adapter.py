"""Conformance adapters for the plain JAX loss of :mod:`jax_infonce` -- levels 1, 2 and 3, no torch.

Run them (in an environment with ``infonce-spec[conformance]``, jax and optax; see docs/conformance.md)::

    infonce-conformance run --adapter examples/jax_adapter.py:adapter --profile ci
    infonce-conformance run --adapter examples/jax_adapter.py:data_parallel --profile ci
    infonce-conformance run --adapter examples/jax_adapter.py:processes --profile ci

* :data:`adapter` -- levels 1 and 2, jitted: every direction, partition mode, similarity and
  hardness mode, a learnable scale (SCALE-2), input validation (VAL-1), a linear encoder with a
  GradCache path (CACHE-1 .. CACHE-4: one VJP per mini-batch) and dropout from ``jax.random``
  (CACHE-3: the key is the random state, so the second forward replays the first by construction).
* :data:`eager` -- the same without ``jax.jit`` (per-call overhead: ``benchmarks/bench_frameworks.py``).
* :data:`data_parallel` -- adds level 3 in the ``devices`` form: the W ranks are W CPU devices of
  one process (``jax.shard_map``; the module asks XLA for 4 host devices before jax starts).
* :data:`processes` -- level 3 in the ``rendezvous`` form: one process per rank, as a multi-host
  job runs. ``join`` starts ``jax.distributed`` at the suite's rendezvous (CPU collectives over
  gloo); each rank then builds the global arrays from its own local batch
  (``jax.make_array_from_single_device_arrays``) and runs the same ``shard_map`` over one device of
  every process.
* :data:`gather_without_gradient` / :data:`processes_gather_without_gradient` -- mutants for the
  tests: ``stop_gradient`` around the all-gather (only the local block keeps its autodiff
  connection), which breaks DP-3.

CACHE-5 (the loss stage's peak memory) is not claimed: the suite measures it through torch's
allocator (``Capabilities.torch_memory``), which sees nothing that XLA allocates.
"""

from __future__ import annotations

import os

# Level 3 runs the ranks on host devices: XLA reads this when its CPU client starts (the first
# computation), so it is set before jax is imported. Four devices cover the suite's W = 1 .. 4.
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    ).strip()

from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from infonce_options import check_equal_local_batches, check_mini_batch_size
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jax_infonce import (
    DIRECTIONS,
    Options,
    gather_global,
    infonce_loss,
    validate_batch,
    validate_config,
)

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

__all__ = [
    "JaxAdapter",
    "adapter",
    "data_parallel",
    "eager",
    "gather_without_gradient",
    "processes",
    "processes_gather_without_gradient",
]

F32 = jnp.float32
AXIS = "ranks"


def _f32(x: Any) -> jax.Array:
    return jnp.asarray(x, dtype=F32)


def _options(config_kwargs: dict[str, Any]) -> Options:
    return validate_config(**config_kwargs)


# -- level 1 ---------------------------------------------------------------------------------------------
def _loss_and_grads(q: jax.Array, d: jax.Array, scale: jax.Array, options: Options) -> Any:
    """(L, (dL/dq, dL/dd, dL/dscale)) by reverse-mode autodiff of the spec's loss."""
    return jax.value_and_grad(infonce_loss, argnums=(0, 1, 2))(q, d, scale, options)


# -- level 2: a bias-free linear encoder, plain or cached ---------------------------------------------------
def _embedding_grads(q: jax.Array, d: jax.Array, scale: jax.Array, options: Options) -> Any:
    return jax.value_and_grad(infonce_loss, argnums=(0, 1))(q, d, scale, options)


Pullback = Callable[[float], jax.Array]
#: A step: its loss (an array: it may be traced) and its backward as a function of the upstream.
Step = tuple[jax.Array, Pullback]


def _plain_step(
    grads: Callable[..., Any], weight: jax.Array, xq: jax.Array, xd: jax.Array, scale: float, options: Options
) -> Step:
    """The forward of one step (the encoder's VJP kept), and its backward as a function of the
    upstream multiplier."""
    (emb_q, emb_d), vjp = jax.vjp(lambda w: (xq @ w.T, xd @ w.T), weight)
    loss, (gq, gd) = grads(emb_q, emb_d, _f32(scale), options)

    def backward(upstream: float) -> jax.Array:
        return vjp((upstream * gq, upstream * gd))[0]

    return loss, backward


def _cached_step(
    grads: Callable[..., Any],
    weight: jax.Array,
    xq: jax.Array,
    xd: jax.Array,
    scale: float,
    options: Options,
    mini_batch_size: int,
) -> Step:
    """GradCache (spec §10): embed every mini-batch without a graph, take the loss and its gradient
    with respect to the embeddings, then pull each mini-batch's stored gradient back through one VJP
    of its own forward."""
    n = xq.shape[0]
    starts = range(0, n, mini_batch_size)
    columns = [xq, *xd]  # queries, then every document column
    frozen = jax.lax.stop_gradient(weight)
    embedded = [jnp.concatenate([x[s : s + mini_batch_size] @ frozen.T for s in starts]) for x in columns]
    loss, (gq, gd) = grads(embedded[0], jnp.stack(embedded[1:]), _f32(scale), options)
    stored = [gq, *gd]

    def backward(upstream: float) -> jax.Array:
        total = jnp.zeros_like(weight)
        for x, g in zip(columns, stored, strict=True):
            for s in starts:
                _, vjp = jax.vjp(lambda w, x=x, s=s: x[s : s + mini_batch_size] @ w.T, weight)
                total = total + vjp(upstream * g[s : s + mini_batch_size])[0]
        return total

    return loss, backward


def _dropout(x: jax.Array, p: float, key: jax.Array) -> jax.Array:
    """Inverted dropout: zero with probability ``p``, survivors scaled by ``1/(1-p)``."""
    if p == 0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - p, x.shape)
    return jnp.where(keep, x / (1.0 - p), 0.0)


# -- level 3: the W ranks on W devices ------------------------------------------------------------------------
def _gather_without_gradient(x: jax.Array, axis: int, axis_name: str | None) -> jax.Array:
    """The mutant's gather: the other devices' blocks arrive as constants (DP-3 broken)."""
    if axis_name is None:
        return x
    everything = jax.lax.stop_gradient(jax.lax.all_gather(x, axis_name, axis=axis, tiled=True))
    start = jax.lax.axis_index(axis_name) * x.shape[axis]
    return jax.lax.dynamic_update_slice_in_dim(everything, x, start, axis=axis)


def _mesh(w: int) -> Mesh:
    devices = jax.devices()
    if len(devices) < w:
        raise RuntimeError(
            f"W = {w} ranks need {w} devices, jax has {len(devices)}: XLA_FLAGS="
            f"--xla_force_host_platform_device_count={w} must be set before jax starts"
        )
    return Mesh(np.array(devices[:w]), (AXIS,))


def _process_mesh(w: int) -> Mesh:
    """One device of each of the W processes (``jax.distributed``), in process (= rank) order."""
    if jax.process_count() != w:
        raise RuntimeError(f"W = {w} ranks, but jax.distributed joined {jax.process_count()} processes")
    return Mesh(np.array([jax.local_devices(process_index=p)[0] for p in range(w)]), (AXIS,))


@cache
def _devices_embeddings_fn(mesh: Mesh, options: Options, gather: Callable[..., Any]) -> Callable[..., Any]:
    """Global (N, D) queries and (K, N, D) docs, sharded by rank -> per-rank L_r and local gradients."""

    def per_rank(q: jax.Array, d: jax.Array, scale: jax.Array) -> Any:
        loss, (gq, gd) = jax.value_and_grad(infonce_loss, argnums=(0, 1))(
            q, d, scale, options, axis_name=AXIS, gather=gather
        )
        return loss[None], gq, gd

    rows, cols = PartitionSpec(AXIS), PartitionSpec(None, AXIS)
    mapped = jax.shard_map(
        per_rank, mesh=mesh, in_specs=(rows, cols, PartitionSpec()), out_specs=(rows, rows, cols)
    )
    return jax.jit(mapped)


@cache
def _devices_encoder_fn(
    mesh: Mesh, options: Options, gather: Callable[..., Any], mini_batch_size: int | None
) -> Callable[..., Any]:
    """Per-rank weight copies (W, D, F), global inputs sharded by rank -> per-rank L_r and dL/dweight."""

    def per_rank(weight: jax.Array, xq: jax.Array, xd: jax.Array, scale: jax.Array) -> Any:
        weight = weight[0]  # this rank's own copy of the parameters, as under DDP

        def grads(q: jax.Array, d: jax.Array, s: jax.Array, o: Options) -> Any:
            return jax.value_and_grad(infonce_loss, argnums=(0, 1))(q, d, s, o, axis_name=AXIS, gather=gather)

        if mini_batch_size is None:
            loss, backward = _plain_step(grads, weight, xq, xd, scale, options)
        else:
            loss, backward = _cached_step(grads, weight, xq, xd, scale, options, mini_batch_size)
        return loss[None], backward(1.0)[None]

    rows, cols = PartitionSpec(AXIS), PartitionSpec(None, AXIS)
    mapped = jax.shard_map(
        per_rank, mesh=mesh, in_specs=(rows, rows, cols, PartitionSpec()), out_specs=(rows, rows)
    )
    return jax.jit(mapped)


class JaxAdapter:
    """The adapter; ``jit`` compiles each loss-and-gradient function once per shape and configuration."""

    def __init__(
        self,
        name: str = "jax-infonce",
        *,
        jit: bool = True,
        data_parallel: bool = False,
        collectives: str = "devices",
        gather: Callable[..., Any] | None = None,
    ) -> None:
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
        wrap = (lambda f: jax.jit(f, static_argnames="options")) if jit else (lambda f: f)
        self._loss_and_grads = wrap(_loss_and_grads)
        self._embedding_grads = wrap(_embedding_grads)
        self._gather = gather or gather_global

    # -- level 1 -----------------------------------------------------------------------------------------
    def embeddings(self, case: EmbeddingCase) -> LossGrads:
        options = _options(case.loss_kwargs())
        validate_batch(case.queries, case.docs)
        loss, (gq, gd, gs) = self._loss_and_grads(
            _f32(case.queries), _f32(case.docs), _f32(case.config.scale), options
        )
        return LossGrads(float(loss), np.asarray(gq), np.asarray(gd), float(gs))

    # -- level 2 -----------------------------------------------------------------------------------------
    def _step(
        self, weight: jax.Array, xq: Any, xd: Any, options: Options, scale: float, m: int | None
    ) -> Step:
        xq, xd = _f32(xq), _f32(xd)
        if m is None:
            return _plain_step(self._embedding_grads, weight, xq, xd, scale, options)
        return _cached_step(self._embedding_grads, weight, xq, xd, scale, options, m)

    def encoder(self, case: EncoderCase) -> EncoderGrads:
        options = _options(case.loss_kwargs())
        check_mini_batch_size(case.mini_batch_size)
        weight = _f32(case.weight)
        scale = case.config.scale
        # Every step's forward first, then every backward in order, accumulating (CACHE-4).
        steps = [
            self._step(weight, s.x_queries, s.x_docs, options, scale, case.mini_batch_size)
            for s in case.steps
        ]
        total = jnp.zeros_like(weight)
        for (_, backward), s in zip(steps, case.steps, strict=True):
            total = total + backward(s.upstream)
        return EncoderGrads([float(loss) for loss, _ in steps], np.asarray(total))

    def dropout_encoder(self, case: DropoutCase) -> EncoderGrads:
        options = _options(case.loss_kwargs())
        check_mini_batch_size(case.mini_batch_size)
        key = jax.random.key(case.seed)
        columns = [case.x_queries, *case.x_docs]
        # One key per input column; both forwards of a cached step use the same masks (CACHE-3).
        dropped = [_dropout(_f32(x), case.p, jax.random.fold_in(key, c)) for c, x in enumerate(columns)]
        loss, backward = self._step(
            _f32(case.weight),
            dropped[0],
            jnp.stack(dropped[1:]),
            options,
            case.config.scale,
            case.mini_batch_size,
        )
        return EncoderGrads([float(loss)], np.asarray(backward(case.upstream)))

    # -- level 3 (collectives="devices") -------------------------------------------------------------------
    def devices_embeddings(self, cases: Sequence[RankCase]) -> list[LossGrads]:
        check_equal_local_batches([(c.queries.shape, c.docs.shape) for c in cases])
        options = _options(cases[0].loss_kwargs())
        q = _f32(np.concatenate([c.queries for c in cases]))  # DP-1: rank order
        d = _f32(np.concatenate([c.docs for c in cases], axis=1))  # column by column
        fn = _devices_embeddings_fn(_mesh(len(cases)), options, self._gather)
        losses, gq, gd = fn(q, d, _f32(cases[0].config.scale))
        b = cases[0].queries.shape[0]
        gq, gd = np.asarray(gq), np.asarray(gd)
        return [
            LossGrads(float(losses[r]), gq[r * b : (r + 1) * b], gd[:, r * b : (r + 1) * b])
            for r in range(len(cases))
        ]

    def devices_encoder(self, cases: Sequence[RankEncoderCase]) -> list[EncoderGrads]:
        check_equal_local_batches([(c.x_queries.shape, c.x_docs.shape) for c in cases])
        options = _options(cases[0].loss_kwargs())
        check_mini_batch_size(cases[0].mini_batch_size)
        w = len(cases)
        weights = _f32(np.stack([c.weight for c in cases]))
        xq = _f32(np.concatenate([c.x_queries for c in cases]))
        xd = _f32(np.concatenate([c.x_docs for c in cases], axis=1))
        fn = _devices_encoder_fn(_mesh(w), options, self._gather, cases[0].mini_batch_size)
        losses, grads = fn(weights, xq, xd, _f32(cases[0].config.scale))
        grads = np.asarray(grads)
        return [EncoderGrads([float(losses[r])], grads[r]) for r in range(w)]

    # -- level 3 (collectives="rendezvous": this process is one rank) -------------------------------------
    def join(self, rendezvous: Rendezvous) -> None:
        """Start ``jax.distributed`` at the suite's rendezvous, before any computation of this process."""
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=rendezvous.coordinator,
            num_processes=rendezvous.world_size,
            process_id=rendezvous.rank,
            initialization_timeout=max(1, int(rendezvous.timeout)),
        )

    def leave(self) -> None:
        jax.distributed.shutdown()

    def _global(self, mesh: Mesh, local: np.ndarray, axis: int) -> jax.Array:
        """The global array whose block ``axis`` of this process is ``local`` (rank order, DP-1)."""
        shape = list(local.shape)
        shape[axis] *= mesh.size
        spec = PartitionSpec(*([None] * axis), AXIS)
        mine = jax.device_put(_f32(local), jax.local_devices()[0])
        return jax.make_array_from_single_device_arrays(tuple(shape), NamedSharding(mesh, spec), [mine])

    @staticmethod
    def _local(x: jax.Array) -> np.ndarray:
        """This process's block of a sharded result."""
        return np.asarray(x.addressable_shards[0].data)

    @staticmethod
    def _check_equal(shapes: tuple[tuple[int, ...], ...]) -> None:
        """DP-5 across processes: every rank learns every rank's local shapes, so all refuse alike."""
        mine = np.array([n for shape in shapes for n in shape])
        every = np.asarray(multihost_utils.process_allgather(mine))
        check_equal_local_batches([tuple(row) for row in every.tolist()])

    def rank_embeddings(self, case: RankCase) -> LossGrads:
        self._check_equal((case.queries.shape, case.docs.shape))
        options = _options(case.loss_kwargs())
        mesh = _process_mesh(case.world_size)
        q, d = self._global(mesh, case.queries, 0), self._global(mesh, case.docs, 1)
        fn = _devices_embeddings_fn(mesh, options, self._gather)
        losses, gq, gd = fn(q, d, _f32(case.config.scale))
        return LossGrads(float(self._local(losses)[0]), self._local(gq), self._local(gd))

    def rank_encoder(self, case: RankEncoderCase) -> EncoderGrads:
        self._check_equal((case.x_queries.shape, case.x_docs.shape))
        options = _options(case.loss_kwargs())
        check_mini_batch_size(case.mini_batch_size)
        mesh = _process_mesh(case.world_size)
        weights = self._global(mesh, case.weight[None], 0)
        xq, xd = self._global(mesh, case.x_queries, 0), self._global(mesh, case.x_docs, 1)
        fn = _devices_encoder_fn(mesh, options, self._gather, case.mini_batch_size)
        losses, grads = fn(weights, xq, xd, _f32(case.config.scale))
        return EncoderGrads([float(self._local(losses)[0])], self._local(grads)[0])


adapter = JaxAdapter()
eager = JaxAdapter("jax-infonce-eager", jit=False)
data_parallel = JaxAdapter("jax-infonce-data-parallel", data_parallel=True)
gather_without_gradient = JaxAdapter(
    "jax-infonce-gather-without-gradient", data_parallel=True, gather=_gather_without_gradient
)
processes = JaxAdapter("jax-infonce-processes", data_parallel=True, collectives="rendezvous")
processes_gather_without_gradient = JaxAdapter(
    "jax-infonce-processes-gather-without-gradient",
    data_parallel=True,
    collectives="rendezvous",
    gather=_gather_without_gradient,
)
