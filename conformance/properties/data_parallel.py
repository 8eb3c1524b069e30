"""Chapter "data parallel": W ranks equal one process on the concatenated batch (DP-1 .. DP-5).

Run once per world size (1 .. 4 by default) through the harness (:mod:`..distributed`). The global
batch is drawn, split as the spec lays it out (rank r owns rows ``[r B, (r+1) B)`` of the queries
and of every document column, DP-1), and each rank's loss ``L_r`` and ``W``-scaled local
gradients are compared with :func:`~infonce_spec.reference.rank_expectations`. K is drawn from
{2, 1, 3} and shrinks to 2: layout bugs of the column gather only show with hard negatives.
With an encoder, the rank-averaged weight gradient must be dL/dweight (DP-4); unequal local batches
must be refused on every rank (DP-5).

Attribution (:func:`loss_clause`): every rank's loss is compared before any gradient, because a
layout error on one rank also corrupts the gradients the gather sends to the others. If some
``L_r`` is wrong and all of them are off by one common factor (``L_r = c E_r`` within the bounds,
e.g. a ``loss * W``), the failure is the reduction, DP-2; if they are off in a rank-dependent way
(a wrong rank offset, columns interleaved by the gather), it is the layout, DP-1. Losses right and
gradients wrong is DP-3.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from infonce_spec.reference import linear_encoder_grad, rank_expectations

from ..compare import check_shape, fail
from ..distributed import RankError
from ..protocol import Capabilities, RankCase, RankEncoderCase
from ..strategies import draw_batch, draw_config
from ..tolerances import embedding_bounds, encoder_bounds
from .base import Context, Property, to_outputs
from .cached import draw_encoder_inputs

__all__ = ["DataParallelEmbeddings", "DataParallelEncoder", "UnequalLocalBatch", "loss_clause"]


def loss_clause(losses: np.ndarray, expected: np.ndarray, bound: float) -> tuple[str, str]:
    """``(clause, diagnosis)`` for per-rank losses that fail (see the module docstring).

    DP-2 when one factor ``c`` (least squares) explains every rank's loss within ``(1 + |c|) bound``
    (with W = 1 always: one rank cannot show a layout), DP-1 otherwise.
    """
    losses = np.asarray(losses, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    den = float(expected @ expected)
    if not np.all(np.isfinite(losses)) or den == 0.0:
        return "DP-2", "the rank losses L_r (DP-2)"
    c = float(losses @ expected) / den
    if np.all(np.abs(losses - c * expected) <= (1.0 + abs(c)) * bound):
        return "DP-2", f"every rank's L_r is {c:.6g} x its expected value: the reduction (DP-2)"
    return "DP-1", (
        "the ranks' L_r are off by different factors: the global layout (rank offset rB, per-column "
        "gather, DP-1)"
    )


def check_rank_losses(ctx: Context, losses: np.ndarray, expected: np.ndarray, bound: float) -> None:
    """All ranks' losses at once, filed by :func:`loss_clause` (before any gradient is looked at)."""
    losses = np.asarray(losses, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        ok = bool(np.all(np.abs(losses - expected) <= bound))
    clause, why = ("DP-2", "") if ok else loss_clause(losses, expected, bound)
    quantity = "rank losses L_r (index = rank)" + (f"; {why}" if why else "")
    ctx.close(losses, expected, bound, quantity=quantity, clause=clause)


def _draw_b_k(data: Any, ctx: Context) -> tuple[int, int]:
    b = data.draw(st.integers(1, 3), label="B (local batch)")
    ks = [k for k in (2, 1, 3) if ctx.caps.max_k is None or k <= ctx.caps.max_k]
    return b, data.draw(st.sampled_from(ks), label="K")


class DataParallelEmbeddings(Property):
    name = "data_parallel/embeddings"
    clauses = ("DP-1", "DP-2", "DP-3")
    summary = (
        "per-rank L_r (all ranks first: one common factor off DP-2, else DP-1) and W-scaled local "
        "gradients (DP-3) equal the single-process loss on the global batch"
    )
    level = "data_parallel"
    min_world_size = 1

    def requires(self, caps: Capabilities) -> str | None:
        return None if caps.data_parallel else "data_parallel"

    def draw(self, data: Any, ctx: Context) -> dict[str, Any]:
        config = draw_config(data, ctx.caps)
        b, k = _draw_b_k(data, ctx)
        d = data.draw(st.integers(1, 6), label="D")
        q, docs = draw_batch(
            data,
            ctx.world_size * b,
            k,
            d,
            dtype=ctx.dtype,
            compute_dtype=ctx.compute_dtype,
            similarity=config.similarity,
        )
        return {"queries": q, "docs": docs, "config": config, "world_size": ctx.world_size}

    def check(self, case: dict[str, Any], ctx: Context) -> None:
        q, d, config, w = case["queries"], case["docs"], case["config"], int(case["world_size"])
        b = q.shape[0] // w
        expected = rank_expectations(q, d, config, w)
        bounds = embedding_bounds(q, d, config, ctx.compute_dtype)
        cases = [
            RankCase(r, w, q[r * b : (r + 1) * b].copy(), d[:, r * b : (r + 1) * b].copy(), config)
            for r in range(w)
        ]
        raw = ctx.harness.run("rank_embeddings", cases)
        outs = [to_outputs(o, (b, q.shape[1]), (d.shape[0], b, d.shape[2]), False) for o in raw]
        check_rank_losses(ctx, [o.loss for o in outs], [e.loss for e in expected], bounds.loss)
        for r, (out, exp) in enumerate(zip(outs, expected, strict=True)):
            own = slice(r * b, (r + 1) * b)
            ctx.close(
                out.grad_queries,
                exp.grad_queries,
                w * bounds.grad_queries[own],
                quantity=f"rank {r} grad_queries (local, W-scaled)",
                clause="DP-3",
            )
            ctx.close(
                out.grad_docs,
                exp.grad_docs,
                w * bounds.grad_docs[:, own],
                quantity=f"rank {r} grad_docs (local, W-scaled)",
                clause="DP-3",
            )


class DataParallelEncoder(Property):
    name = "data_parallel/encoder"
    clauses = ("DP-4", "DP-2", "DP-1")
    summary = "rank-averaged linear-encoder weight gradients equal dL/dweight (cached: any mini_batch_size)"
    level = "data_parallel"
    min_world_size = 1
    weight = 0.7

    def requires(self, caps: Capabilities) -> str | None:
        if not caps.data_parallel:
            return "data_parallel"
        return None if caps.encoder else "encoder"

    def draw(self, data: Any, ctx: Context) -> dict[str, Any]:
        config = draw_config(data, ctx.caps)
        b, k = _draw_b_k(data, ctx)
        case: dict[str, Any] = {"config": config, "world_size": ctx.world_size}
        case.update(draw_encoder_inputs(data, ctx, ctx.world_size * b, k, config))
        case["mini_batch_size"] = (
            data.draw(st.integers(1, b + 1), label="mini_batch_size") if ctx.caps.cached else None
        )
        return case

    def check(self, case: dict[str, Any], ctx: Context) -> None:
        xq, xd, wt, config, w = (
            case["x_queries"],
            case["x_docs"],
            case["weight"],
            case["config"],
            int(case["world_size"]),
        )
        b = xq.shape[0] // w
        expected = linear_encoder_grad(xq, xd, wt, config)
        bounds, g_bound = encoder_bounds(xq, xd, wt, config, ctx.compute_dtype, encoder_dtype=ctx.dtype)
        cases = [
            RankEncoderCase(
                r,
                w,
                wt.copy(),
                xq[r * b : (r + 1) * b].copy(),
                xd[:, r * b : (r + 1) * b].copy(),
                config,
                case["mini_batch_size"],
            )
            for r in range(w)
        ]
        outs = ctx.harness.run("rank_encoder", cases)
        per_query = np.asarray(expected.embeddings.per_query_loss)
        losses = [
            check_shape(list(out.losses), (1,), f"rank {r} losses", "DP-2")[0] for r, out in enumerate(outs)
        ]
        expected_losses = [float(np.mean(per_query[r * b : (r + 1) * b])) for r in range(w)]
        check_rank_losses(ctx, losses, expected_losses, bounds.loss)
        grads = [
            check_shape(out.grad_weight, wt.shape, f"rank {r} grad_weight", "DP-4")
            for r, out in enumerate(outs)
        ]
        ctx.close(
            np.mean(grads, axis=0),
            expected.grad_weight,
            g_bound,
            quantity="grad_weight averaged over ranks",
            clause="DP-4",
        )


class UnequalLocalBatch(Property):
    name = "data_parallel/unequal_batch"
    clauses = ("DP-5",)
    summary = "unequal local batch sizes raise ValueError/TypeError on every rank (no hang)"
    level = "data_parallel"
    min_world_size = 2
    weight = 0.2

    def requires(self, caps: Capabilities) -> str | None:
        if not caps.data_parallel:
            return "data_parallel"
        return None if caps.validates_inputs else "validates_inputs"

    def draw(self, data: Any, ctx: Context) -> dict[str, Any]:
        config = draw_config(data, ctx.caps)
        b, k = _draw_b_k(data, ctx)
        w = ctx.world_size
        assume(w >= 2)
        q, docs = draw_batch(
            data, w * b + 1, k, 3, dtype=ctx.dtype, similarity=config.similarity, corners=False
        )
        return {"queries": q, "docs": docs, "config": config, "world_size": w}

    def check(self, case: dict[str, Any], ctx: Context) -> None:
        q, d, config, w = case["queries"], case["docs"], case["config"], int(case["world_size"])
        b = (q.shape[0] - 1) // w
        bounds = [(r * b, (r + 1) * b + (1 if r == w - 1 else 0)) for r in range(w)]
        cases = [RankCase(r, w, q[s:e].copy(), d[:, s:e].copy(), config) for r, (s, e) in enumerate(bounds)]
        outs = ctx.harness.run("rank_embeddings", cases, allow_errors=True)
        sizes = [e - s for s, e in bounds]
        for r, out in enumerate(outs):
            if not isinstance(out, RankError):
                raise fail(
                    self.clause, f"local batch sizes {sizes}: rank {r} returned a loss instead of raising"
                )
            if not out.value_or_type_error:
                raise fail(
                    self.clause,
                    f"local batch sizes {sizes}: rank {r} raised {out.type_name}: {out.message}; "
                    "expected ValueError or TypeError",
                )
