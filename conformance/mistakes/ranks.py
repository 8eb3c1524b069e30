"""Data-parallel mistakes: what each rank of a faulty implementation returns (DP-1 .. DP-3).

The spec (DP-1 .. DP-3, :func:`infonce_spec.reference.rank_expectations`): with ``W`` ranks and local
batches ``B = N / W``, rank ``r`` owns queries ``[r B, (r+1) B)`` and the same rows of every document
column; it reports ``L_r``, the mean of its own ``l_g``, and ``W dL/d(local)`` -- the sum over the
ranks of ``dL_r'/d(its local rows)`` that an all-gather with a reduce-scatter *sum* backward gives.

A faulty implementation changes one of these steps, and each rank's outputs follow in closed form
from the emulation of the global batch with per-query weights (:class:`RankEmulation`):

* ``layout="rank_major"``: the document columns are concatenated on each rank before one gather, so
  the gathered (K N, D) table is rank-major and is read as if it were column-major;
* ``offset="rank"``: rank r's queries are taken at global rows ``[r, r + B)`` instead of ``[r B, ...)``;
* ``gradient="own"``: the gather passes no gradient between ranks: rank r's local gradient is
  ``dL_r/d(local)`` alone (a gather without autograd that puts the local tensor back in its slot,
  or an autograd gather whose backward returns the local slice without the all-reduce);
* ``loss_factor="world"``: the rank loss is multiplied by W (and so is every gradient).

Every output is the emulation's, so it is exact to float64 rounding like :mod:`.emulation`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from infonce_spec.reference import Config, rank_expectations

from ..tolerances import Bounds, embedding_bounds
from .agreement import outputs_agree
from .emulation import Emulation, Outputs, emulate
from .higher import HigherMistake

__all__ = ["RANK_MISTAKES", "RankEmulation", "RankMistake", "RankObservation", "RankOutputs", "rank_outputs"]


class RankOutputs(NamedTuple):
    """What one rank returns: ``L_r``, dL/d(local queries) (B, D), dL/d(local docs) (K, B, D)."""

    loss: float
    grad_queries: np.ndarray
    grad_docs: np.ndarray


@dataclass(frozen=True)
class RankObservation:
    """One data-parallel case -- the global batch ``queries`` (N, D), ``docs`` (K, N, D), ``config`` and
    ``world_size`` -- and what every rank returned on its slice (``outputs``, in rank order; each with
    ``loss``, ``grad_queries``, ``grad_docs``)."""

    queries: np.ndarray
    docs: np.ndarray
    config: Config
    world_size: int
    outputs: Sequence[Any]
    kind: str = field(default="ranks", init=False)

    def agrees(self, predicted: Sequence[Any], bounds: Sequence[Bounds], dtype: str) -> bool:
        """Whether every rank's outputs agree with ``predicted`` within ``bounds``."""
        return _agree(predicted, self.outputs, bounds, dtype)

    def shows(self, predicted: Sequence[Any], dtype: str) -> bool:
        """Whether ``predicted`` differs from the spec's rank outputs beyond the tolerance the
        data-parallel properties allow an implementation in ``dtype`` (the loss bound for L_r, ``W``
        times the row bounds for the local gradients)."""
        w = int(self.world_size)
        expected = [
            RankOutputs(x.loss, x.grad_queries, x.grad_docs)
            for x in rank_expectations(self.queries, self.docs, self.config, w)
        ]
        bounds = _rank_bounds(self.queries, self.docs, self.config, w, dtype, RankEmulation())
        return not _agree(expected, predicted, bounds, "float64")


@dataclass(frozen=True)
class RankEmulation:
    """The switches of :func:`rank_outputs` (module docstring); the defaults are the spec's."""

    layout: str = "columns"
    offset: str = "rank_times_batch"
    gradient: str = "all"
    loss_factor: str = "one"


def _rank_major(k: int, n: int, w: int) -> np.ndarray:
    """``src`` with ``seen[i] = true[src[i]]`` over the flat (K N) document rows: the gathered table of
    columns concatenated before the gather (rank r's block holds its d[0], d[1], ... one after another)."""
    b = n // w
    r, k_, i = np.meshgrid(np.arange(w), np.arange(k), np.arange(b), indexing="ij")
    return (k_ * n + r * b + i).reshape(-1)


def _rows(e: RankEmulation, rank: int, b: int) -> slice:
    first = rank if e.offset == "rank" else rank * b
    return slice(first, first + b)


def _seen_docs(docs: np.ndarray, w: int, e: RankEmulation) -> tuple[np.ndarray, np.ndarray | None]:
    """The gathered document table the faulty code reads, and the permutation it came from."""
    k, n, dim = docs.shape
    if e.layout != "rank_major" or w == 1:
        return docs, None
    src = _rank_major(k, n, w)
    return docs.reshape(k * n, dim)[src].reshape(k, n, dim), src


def _unseen(grad: np.ndarray, src: np.ndarray | None) -> np.ndarray:
    """A per-row array over the seen document table back on the true layout."""
    if src is None:
        return grad
    k, n = grad.shape[:2]
    flat = grad.reshape(k * n, -1)
    out = np.empty_like(flat)
    out[src] = flat
    return out.reshape(grad.shape)


def rank_outputs(
    queries: Any, docs: Any, config: Config, world_size: int, e: RankEmulation = RankEmulation()
) -> list[RankOutputs]:
    """Every rank's outputs on the global batch, as the implementation with the switches ``e`` returns them."""
    q = np.asarray(queries, dtype=np.float64)
    d = np.asarray(docs, dtype=np.float64).reshape(-1, *q.shape)
    w, n = int(world_size), q.shape[0]
    b = n // w
    seen, src = _seen_docs(d, w, e)
    factor = float(w) if e.loss_factor == "world" else 1.0
    shares: list[Outputs] = []
    for r in range(w):
        weights = np.zeros(n)
        weights[_rows(e, r, b)] = 1.0 / b
        shares.append(emulate(q, seen, config, Emulation(query_weights=tuple(weights))))
    total_q = sum(s.grad_queries for s in shares)
    total_d = sum(s.grad_docs for s in shares)
    out = []
    for r, share in enumerate(shares):
        gq, gd = (share.grad_queries, share.grad_docs) if e.gradient == "own" else (total_q, total_d)
        own = slice(r * b, (r + 1) * b)
        out.append(RankOutputs(factor * share.loss, factor * gq[own], factor * _unseen(gd, src)[:, own]))
    return out


def _rank_bounds(
    queries: np.ndarray, docs: np.ndarray, config: Config, w: int, dtype: str, e: RankEmulation
) -> list[Bounds]:
    """Per rank, the tolerance of an implementation of ``e`` in ``dtype``: the embedding bounds of the
    batch it actually reads, its loss bound for L_r and ``W`` times its row bounds for the local
    gradients (as the data-parallel properties allow), times the weight a query's loss carries at most
    (a rank offset can count one query on several ranks) and the loss factor."""
    n = queries.shape[0]
    b = n // w
    seen, src = _seen_docs(docs, w, e)
    base = embedding_bounds(queries, seen, config, dtype)
    counts = np.zeros(n)
    for r in range(w):
        counts[_rows(e, r, b)] += 1.0
    factor = float(w) if e.loss_factor == "world" else 1.0
    grad_factor = factor * w * (1.0 if e.gradient == "own" else float(counts.max()))
    out = []
    for r in range(w):
        own = slice(r * b, (r + 1) * b)
        out.append(
            Bounds(
                base.loss * factor,
                base.grad_queries[own] * grad_factor,
                _unseen(base.grad_docs, src)[:, own] * grad_factor,
                0.0,
                base.logit,
            )
        )
    return out


def _agree(predicted: Sequence[Any], got: Sequence[Any], bounds: Sequence[Bounds], dtype: str) -> bool:
    """Rank by rank: the loss and the local gradients (dL/dscale is not a rank output)."""
    if len(predicted) != len(got):
        return False
    return all(
        outputs_agree(p, RankOutputs(g.loss, g.grad_queries, g.grad_docs), b, dtype)
        for p, g, b in zip(predicted, got, bounds, strict=True)
    )


@dataclass(frozen=True)
class RankMistake(HigherMistake):
    """A data-parallel mistake, computed by :func:`rank_outputs` with ``knobs`` (:class:`RankEmulation`);
    ``applies_to(config, world_size, batch, k)`` says where it can show."""

    applies_to: Callable[[Config, int, int, int], bool]
    kind: str = field(default="ranks", init=False)

    @property
    def emulation(self) -> RankEmulation:
        return RankEmulation(**self.knobs)

    def applies(self, ob: RankObservation) -> bool:
        w = int(ob.world_size)
        return bool(self.applies_to(ob.config, w, ob.queries.shape[0] // w, ob.docs.shape[0]))

    def predict(
        self, ob: RankObservation, dtype: str, **params: float
    ) -> tuple[list[RankOutputs], list[Bounds]]:
        """Every rank's outputs on ``ob`` and the tolerance of an implementation of it in ``dtype``."""
        e = self.emulation
        predicted = rank_outputs(ob.queries, ob.docs, ob.config, ob.world_size, e)
        return predicted, _rank_bounds(ob.queries, ob.docs, ob.config, int(ob.world_size), dtype, e)


def _more_ranks(config: Config, w: int, b: int, k: int) -> bool:
    return w > 1


def _hard_negatives(config: Config, w: int, b: int, k: int) -> bool:
    return w > 1 and k > 1


def _batch_above_one(config: Config, w: int, b: int, k: int) -> bool:
    return w > 1 and b > 1


RANK_MISTAKES: tuple[RankMistake, ...] = (
    RankMistake(
        "dp_concat_columns_then_gather", "DP-1",
        "the document columns are concatenated on each rank before one gather: the gathered table is "
        "rank-major (rank 0's d[0], d[1], ..., then rank 1's) but read as column-major, so on rank > 0 "
        "a query's positive is another rank's document or a hard negative",
        "sentence-transformers PR #3442 (reported there, fixed in #3453)", ("dp_concat_columns_then_gather",),
        {"layout": "rank_major"}, _hard_negatives,
    ),
    RankMistake(
        "dp_gather_local_gradient_only", "DP-3",
        "the gather passes no gradient between ranks: each rank's local gradient is dL_r/d(local) alone, "
        "not the sum over the ranks' losses (W dL/d(local)); the losses are right",
        "mlfoundations/open_clip #616; sentence-transformers util.all_gather(with_grad=False) (a gather "
        "without autograd, the local slice put back); SimCLR GatherLayer (Spijkervet/SimCLR gather.py); "
        "lightly-ai/lightly #1528, fixed in #1531 (an autograd gather whose backward returns the local "
        "slice without the all-reduce)",
        ("dp_gather_no_grad_local_slice", "dp_gather_backward_local_slice"),
        {"gradient": "own"}, _more_ranks,
    ),
    RankMistake(
        "dp_rank_offset", "DP-1",
        "the local queries' global offset is the rank, not rank * B: rank r computes the losses of the "
        "queries [r, r + B) of the global batch",
        "the local queries' offset written as the rank (right only for B = 1)", ("dp_rank_offset",),
        {"offset": "rank"}, _batch_above_one,
    ),
    RankMistake(
        "dp_loss_times_world", "DP-2",
        "every rank's loss is W * L_r (and its gradients W times the spec's): a `loss * world_size` "
        "compensation on top of a gather that already carries the gradient",
        "the `loss * world_size` compensation of no-grad gathers (open_clip #616 discussion) kept with a "
        "grad gather", ("dp_loss_times_world",),
        {"loss_factor": "world"}, _more_ranks,
    ),
)  # fmt: skip
