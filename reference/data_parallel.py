"""What each rank of a data-parallel run must report (clauses DP-1 .. DP-3).

With world size ``W`` and local batch ``B = N / W``, rank ``r`` owns queries ``[r B, (r+1) B)``
and, in every document column ``k``, documents ``d[k, r B : (r+1) B]`` (DP-1: columns gathered one
by one, so the global layout stays column-blocked). It reports ``L_r``, the mean of its own
``l_g`` (DP-2; the mean over ranks is ``L``), and gradients with respect to its *local*
embeddings equal to ``W * dL/d(local)`` (DP-3: what an autograd all-gather with a reduce-scatter
*sum* backward produces; averaging parameter gradients over ranks then gives ``dL/dtheta``).
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral
from typing import Any

from infonce_spec.errors import SpecTypeError, SpecViolation

from .api import loss_and_grad
from .config import Config

__all__ = ["RankExpectation", "rank_expectations", "rank_slice"]


@dataclass(frozen=True)
class RankExpectation:
    """The per-rank outcome: ``loss`` = L_r, ``grad_queries`` (B, D), ``grad_docs`` (K, B, D), W-scaled."""

    rank: int
    world_size: int
    loss: float
    per_query_loss: Any
    grad_queries: Any
    grad_docs: Any


def rank_slice(n: int, world_size: int, rank: int) -> slice:
    """The global query indices rank ``rank`` owns (DP-1)."""
    b = n // world_size
    return slice(rank * b, (rank + 1) * b)


def rank_expectations(queries: Any, docs: Any, config: Config, world_size: int) -> list[RankExpectation]:
    """Expected loss and W-scaled local gradients of every rank for the global batch (DP-1 .. DP-3)."""
    if isinstance(world_size, bool) or not isinstance(world_size, Integral):
        raise SpecTypeError("DP-1", f"world_size must be an integer, got {world_size!r}")
    world_size = int(world_size)
    if world_size < 1:
        raise SpecViolation("DP-1", f"world_size must be >= 1, got {world_size}")
    result = loss_and_grad(queries, docs, config)
    n = int(result.grad_queries.shape[0])
    if n % world_size:
        raise SpecViolation(
            "DP-5",
            f"N = {n} queries cannot be split into {world_size} equal local batches (B must be equal on every rank)",
        )
    out = []
    for rank in range(world_size):
        own = rank_slice(n, world_size, rank)
        per_query = result.per_query_loss[own]
        out.append(
            RankExpectation(
                rank=rank,
                world_size=world_size,
                loss=float(sum(float(v) for v in per_query) / per_query.shape[0]),
                per_query_loss=per_query,
                grad_queries=world_size * result.grad_queries[own, :],
                grad_docs=world_size * result.grad_docs[:, own, :],
            )
        )
    return out
