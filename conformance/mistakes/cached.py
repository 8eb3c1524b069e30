"""GradCache mistakes: what a faulty cached implementation returns for a linear encoder (CACHE-1 .. CACHE-4).

An encoder case is a bias-free linear encoder ``weight`` (D, F), one or more steps ``(x_queries (N, F),
x_docs (K, N, F), upstream c)`` -- every forward first, then ``(loss_i * c_i).backward()`` in order --
and a ``mini_batch_size`` m. The spec: each step reports its L_i, and the weight gradient is
``Σ_i c_i dL_i/dweight`` whatever m (CACHE-1 .. CACHE-4). The loss stage of GradCache splits the N
queries into chunks of m rows and backpropagates each chunk's share of L to the cached embedding
gradients; the backward hook sends ``c_i`` times them into the encoder. A faulty cache changes one
of these steps, and the outputs follow from the emulation with per-query weights and the chain rule
through the encoder, ``dweight = G_q^T x_q + Σ_k G_d[k]^T x_d[k]`` (:class:`CacheEmulation`):

* ``chunk="mean"``: each chunk contributes ``mean(l) / n_chunks`` (reported and backpropagated);
* ``backpropagated="sum"``: the loss stage backpropagates ``Σ l`` instead of ``Σ l / N`` (B times the
  cached gradients; the reported loss is right);
* ``upstream="ignored"``: the hook sends the cached gradients without multiplying by ``c_i``;
* ``cache="last"``: the cache lives in one shared place, so every backward uses the last forward's
  inputs and cached gradients.

A dropout mask drawn afresh (CACHE-3) has no closed form: the masks are the framework's random draws.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from infonce_spec.reference import Config, linear_encoder_grad

from ..tolerances import UNIT_ROUNDOFF, encoder_bounds
from .agreement import values_close
from .emulation import Emulation, emulate
from .higher import HigherMistake

__all__ = [
    "CACHE_MISTAKES",
    "CacheEmulation",
    "CacheMistake",
    "EncoderObservation",
    "EncoderOutputs",
    "cached_outputs",
]

Step = tuple[np.ndarray, np.ndarray, float]


class EncoderOutputs(NamedTuple):
    """What an encoder call returns: one loss per step and the accumulated dL/dweight (D, F)."""

    losses: np.ndarray
    grad_weight: np.ndarray


class EncoderBounds(NamedTuple):
    """Allowed absolute errors: per step's loss, and every element of dL/dweight."""

    losses: np.ndarray
    grad_weight: float


@dataclass(frozen=True)
class EncoderObservation:
    """One cached encoder case -- ``weight``, ``steps`` ``(x_queries, x_docs, upstream)``, ``config``,
    ``mini_batch_size`` -- and what the adapter's cached path returned (``outputs``: ``losses``,
    ``grad_weight``)."""

    weight: np.ndarray
    steps: tuple[Step, ...]
    config: Config
    mini_batch_size: int | None
    outputs: Any
    kind: str = field(default="encoder", init=False)

    def agrees(self, predicted: EncoderOutputs, bounds: EncoderBounds, dtype: str) -> bool:
        """Whether the adapter's losses and weight gradient agree with ``predicted`` within ``bounds``."""
        u = UNIT_ROUNDOFF[dtype]
        return values_close(predicted.losses, self.outputs.losses, bounds.losses, u) and values_close(
            predicted.grad_weight, self.outputs.grad_weight, bounds.grad_weight, u
        )

    def shows(self, predicted: EncoderOutputs, dtype: str) -> bool:
        """Whether ``predicted`` differs from the spec's outputs (:func:`linear_encoder_grad`, step by
        step) beyond the tolerance of an implementation in ``dtype``."""
        expected = cached_outputs(self, CacheEmulation(), exact=True)
        bounds = _bounds(self, CacheEmulation(), dtype)
        u = UNIT_ROUNDOFF["float64"]
        return not (
            values_close(expected.losses, predicted.losses, bounds.losses, u)
            and values_close(expected.grad_weight, predicted.grad_weight, bounds.grad_weight, u)
        )


@dataclass(frozen=True)
class CacheEmulation:
    """The switches of :func:`cached_outputs` (module docstring); the defaults are the spec's."""

    chunk: str = "sum"
    backpropagated: str = "loss"
    upstream: str = "applied"
    cache: str = "own"


def _weights(n: int, m: int | None, e: CacheEmulation) -> tuple[np.ndarray, np.ndarray]:
    """Per query, the weight of its l_g in the reported loss and in what the loss stage backpropagates."""
    reported = np.full(n, 1.0 / n)
    if e.chunk == "mean" and m is not None:
        n_chunks = math.ceil(n / m)
        for start in range(0, n, m):
            rows = slice(start, min(start + m, n))
            reported[rows] = 1.0 / ((rows.stop - rows.start) * n_chunks)
    backpropagated = np.ones(n) if e.backpropagated == "sum" else reported
    return reported, backpropagated


def _chain(xq: np.ndarray, xd: np.ndarray, gq: np.ndarray, gd: np.ndarray) -> np.ndarray:
    """dL/dweight of the linear encoder from the embedding gradients (the chain rule)."""
    k, n, f = xd.shape
    return gq.T @ xq + gd.reshape(k * n, -1).T @ xd.reshape(k * n, f)


def _step(
    step: Step, weight: np.ndarray, config: Config, m: int | None, e: CacheEmulation, exact: bool
) -> tuple[float, np.ndarray]:
    xq, xd, _ = step
    if exact:
        r = linear_encoder_grad(xq, xd, weight, config)
        return float(r.loss), np.asarray(r.grad_weight, dtype=np.float64)
    q, d = xq @ weight.T, xd @ weight.T
    reported, backpropagated = _weights(q.shape[0], m, e)
    loss = emulate(q, d, config, Emulation(query_weights=tuple(reported))).loss
    grads = emulate(q, d, config, Emulation(query_weights=tuple(backpropagated)))
    return loss, _chain(xq, xd, grads.grad_queries, grads.grad_docs)


def _as_float(ob: EncoderObservation) -> tuple[np.ndarray, list[Step]]:
    w = np.asarray(ob.weight, dtype=np.float64)
    steps = [
        (np.asarray(xq, dtype=np.float64), np.asarray(xd, dtype=np.float64), float(c))
        for xq, xd, c in ob.steps
    ]
    return w, steps


def cached_outputs(ob: EncoderObservation, e: CacheEmulation, *, exact: bool = False) -> EncoderOutputs:
    """The losses and the weight gradient of the cached implementation with the switches ``e`` on the
    case of ``ob`` (``exact``: the spec's, from :func:`linear_encoder_grad`)."""
    w, steps = _as_float(ob)
    results = [_step(s, w, ob.config, ob.mini_batch_size, e, exact) for s in steps]
    grad = np.zeros_like(w)
    for i, (_, _, c) in enumerate(steps):
        used = len(steps) - 1 if e.cache == "last" else i
        grad = grad + (1.0 if e.upstream == "ignored" else c) * results[used][1]
    return EncoderOutputs(np.asarray([loss for loss, _ in results]), grad)


def _bounds(ob: EncoderObservation, e: CacheEmulation, dtype: str) -> EncoderBounds:
    """The tolerance of an implementation of ``e`` in ``dtype``: :func:`encoder_bounds` of each step,
    times the weight a query's loss carries at most (relative to 1/N) in what it reports and in what
    it backpropagates, the upstream it applies, and the step whose cache it uses."""
    w, steps = _as_float(ob)
    losses, grads = [], []
    for xq, xd, _ in steps:
        bounds, g_bound = encoder_bounds(xq, xd, w, ob.config, dtype)
        n = xq.shape[0]
        reported, backpropagated = _weights(n, ob.mini_batch_size, e)
        losses.append(bounds.loss * n * float(reported.max()))
        grads.append(g_bound * n * float(backpropagated.max()))
    grad = 0.0
    for i, (_, _, c) in enumerate(steps):
        used = len(steps) - 1 if e.cache == "last" else i
        grad += (1.0 if e.upstream == "ignored" else abs(c)) * grads[used]
    return EncoderBounds(np.asarray(losses), grad)


@dataclass(frozen=True)
class CacheMistake(HigherMistake):
    """A GradCache mistake, computed by :func:`cached_outputs` with ``knobs`` (:class:`CacheEmulation`);
    it applies to cached cases (``mini_batch_size`` set) where ``applies_to(observation)`` holds."""

    applies_to: Callable[[EncoderObservation], bool] = lambda ob: True
    kind: str = field(default="encoder", init=False)

    @property
    def emulation(self) -> CacheEmulation:
        return CacheEmulation(**self.knobs)

    def applies(self, ob: EncoderObservation) -> bool:
        return ob.mini_batch_size is not None and bool(self.applies_to(ob))

    def predict(
        self, ob: EncoderObservation, dtype: str, **params: float
    ) -> tuple[EncoderOutputs, EncoderBounds]:
        """The losses and weight gradient on ``ob`` and the tolerance of an implementation in ``dtype``."""
        return cached_outputs(ob, self.emulation), _bounds(ob, self.emulation, dtype)


CACHE_MISTAKES: tuple[CacheMistake, ...] = (
    CacheMistake(
        "cache_chunk_mean", "CACHE-1",
        "each loss-stage chunk contributes mean(l) / n_chunks instead of sum(l) / N: the loss and the "
        "gradients weigh the queries of a short last chunk more (wrong when mini_batch_size does not divide N)",
        "a chunked loss averaged per chunk, then over the chunks", ("cache_chunk_mean",),
        {"chunk": "mean"},
    ),
    CacheMistake(
        "cache_grad_times_batch", "CACHE-1",
        "the loss stage backpropagates sum(l) instead of sum(l) / N: the loss is right, the weight gradient "
        "is N times the spec's",
        "a cached loss stage that divides the reported loss by the batch size but not the backpropagated one",
        ("cache_grad_times_batch",),
        {"backpropagated": "sum"},
    ),
    CacheMistake(
        "cache_ignores_upstream", "CACHE-2",
        "the backward hook sends the cached gradients into the encoder without multiplying by grad_output: "
        "the weight gradient is that of upstream 1 whatever the upstream",
        "sentence-transformers gradcache `_backward_hook` (scales every mini-batch by grad_output for fp16 "
        "scalers and gradient accumulation)", ("cache_ignores_upstream",),
        {"upstream": "ignored"},
    ),
    CacheMistake(
        "cache_on_module", "CACHE-4",
        "the cache lives in one shared place: with two forwards before their backwards, both backwards use "
        "the last forward's inputs and cached gradients ((c1 + c2) dL_2/dweight instead of c1 dL_1/dweight + "
        "c2 dL_2/dweight)",
        "sentence-transformers CachedMultipleNegativesRankingLoss before its hook took the cache as an "
        "argument (gradcache.py `_backward_hook` docstring)", ("cache_on_module",),
        {"cache": "last"}, lambda ob: len(ob.steps) > 1,
    ),
)  # fmt: skip
