"""Chapter "data parallel": W ranks equal one process on the concatenated batch (DP-1 .. DP-5).

Run once per world size (1 .. 4 by default) through the harness (:mod:`..distributed`). The global
batch is drawn, split as the spec lays it out (rank r owns rows ``[r B, (r+1) B)`` of the queries
and of every document column, DP-1), and each rank's loss ``L_r`` (DP-2) and ``W``-scaled local
gradients (DP-3) are compared with :func:`~infonce_spec.reference.rank_expectations`. K is drawn
from {2, 1, 3} and shrinks to 2: layout bugs of the column gather only show with hard negatives.
With an encoder, the rank-averaged weight gradient must be dL/dweight (DP-4); unequal local batches
must be refused on every rank (DP-5).
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

__all__ = ["DataParallelEmbeddings", "DataParallelEncoder", "UnequalLocalBatch"]


def _draw_b_k(data: Any, ctx: Context) -> tuple[int, int]:
    b = data.draw(st.integers(1, 3), label="B (local batch)")
    ks = [k for k in (2, 1, 3) if ctx.caps.max_k is None or k <= ctx.caps.max_k]
    return b, data.draw(st.sampled_from(ks), label="K")


class DataParallelEmbeddings(Property):
    name = "data_parallel/embeddings"
    clauses = ("DP-1", "DP-2", "DP-3")
    summary = "per-rank L_r and W-scaled local gradients equal the single-process loss on the global batch"
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
        outs = ctx.harness.run("rank_embeddings", cases)
        for r, (raw, exp) in enumerate(zip(outs, expected, strict=True)):
            own = slice(r * b, (r + 1) * b)
            out = to_outputs(raw, (b, q.shape[1]), (d.shape[0], b, d.shape[2]), False)
            ctx.close(out.loss, exp.loss, bounds.loss, quantity=f"rank {r} loss L_r", clause="DP-2")
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
    clauses = ("DP-4", "DP-2")
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
        grads = []
        for r, out in enumerate(outs):
            losses = check_shape(list(out.losses), (1,), f"rank {r} losses", "DP-2")
            ctx.close(
                losses[0],
                float(np.mean(per_query[r * b : (r + 1) * b])),
                bounds.loss,
                quantity=f"rank {r} loss L_r",
                clause="DP-2",
            )
            grads.append(check_shape(out.grad_weight, wt.shape, f"rank {r} grad_weight", "DP-4"))
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
