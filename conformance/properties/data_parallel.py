"""Chapter "data parallel": W ranks equal one process on the concatenated batch (DP-1 .. DP-5).

Run once per world size (1 .. 4 by default) through the harness (:mod:`..harnesses`). The global
batch is drawn, split as the spec lays it out (rank r owns rows ``[r B, (r+1) B)`` of the queries
and of every document column, DP-1), and each rank's loss ``L_r`` and ``W``-scaled local
gradients are compared with :func:`~infonce_spec.reference.rank_expectations`. K is drawn from
{2, 1, 3} and shrinks to 2: layout bugs of the column gather only show with hard negatives.
With an encoder, the rank-averaged weight gradient must be dL/dweight (DP-4); unequal local batches
must be refused on every rank (DP-5).

Attribution: every rank's loss is judged before any gradient, because a layout error on one rank
also corrupts the gradients the gather sends to the others. Losses equal to each rank's L_r, or
all equal to the global L (DP-2 allows both; the second is noted), pass. Otherwise, if all of them
are off by one common factor (``L_r = c E_r`` within the bounds, e.g. a ``loss * W``), the failure
is the reduction, DP-2; if they are off in a rank-dependent way (a wrong rank offset, columns
interleaved by the gather), it is the layout, DP-1. The gradients (DP-3; DP-4 for the encoder) are
checked whatever the losses' verdict, and both verdicts are reported. Before either is blamed, the
premise: the same global batch in one process (W = 1, the adapter's level 1) is right -- otherwise
the error is not about data parallelism at all.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from infonce_spec.reference import linear_encoder_grad, rank_expectations

from ..compare import ConformanceFailure, PremiseFailure, fail
from ..harnesses import RankError
from ..mistakes import RankObservation
from ..protocol import Capabilities, RankCase, RankEncoderCase
from ..strategies import draw_batch, draw_config
from ..tolerances import embedding_bounds, encoder_bounds, round_to_dtype
from .base import Context, Property, output_array, to_outputs
from .cached import check_steps, draw_encoder_inputs
from .checks import check_premise, generic_batch

__all__ = [
    "DataParallelEmbeddings",
    "DataParallelEncoder",
    "UnequalLocalBatch",
    "loss_clause",
    "rank_loss_failure",
]


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


def rank_loss_failure(
    ctx: Context, losses: np.ndarray, expected: np.ndarray, bound: float
) -> ConformanceFailure | None:
    """The verdict on all ranks' reported losses at once (before any gradient is looked at).

    DP-2 accepts two forms: every rank reports its own L_r (recommended), or every rank reports the
    global L (the mean of the L_r) -- noted in the report. Otherwise the failure is filed by
    :func:`loss_clause`: one common factor is the reduction (DP-2), rank-dependent errors the layout
    (DP-1).
    """
    losses = np.asarray(losses, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        if bool(np.all(np.abs(losses - expected) <= bound)):
            ctx.close(losses, expected, bound, quantity="rank losses L_r (index = rank)", clause="DP-2")
            return None
        total = float(np.mean(expected))
        if len(losses) > 1 and bool(np.all(np.abs(losses - total) <= bound)):
            ctx.notes.append(
                "DP-2: every rank reports the global loss L (allowed; each rank's own L_r is recommended)"
            )
            return None
    clause, why = loss_clause(losses, expected, bound)
    try:
        ctx.close(losses, expected, bound, quantity=f"rank losses L_r (index = rank); {why}", clause=clause)
    except ConformanceFailure as exc:
        return exc
    return None


def _verdict(
    ctx: Context, q: np.ndarray, d: np.ndarray, config: Any, failures: list[ConformanceFailure]
) -> None:
    """Raise the rank verdicts found on one case: first the premise (the same global batch in one
    process, W = 1, is right), then the losses' verdict with the gradients' as ``also``."""
    failures = [f for f in failures if f is not None]
    if not failures:
        return
    first = failures[0]
    check_premise(ctx, q, d, config, "the same global batch in one process (W = 1)", first)
    if first.clause == "DP-3":
        check_layout(ctx, q.shape, d.shape, config, first)
    raise ConformanceFailure(first.clause, first.detail, mismatch=first.mismatch, also=tuple(failures[1:]))


def check_layout(
    ctx: Context, q_shape: tuple[int, ...], d_shape: tuple[int, ...], config: Any, failure: ConformanceFailure
) -> None:
    """The premise of a gradient verdict (DP-3 presupposes DP-1 and DP-2): the rank losses are right
    on a :func:`generic_batch` of the same shapes. A shrunk case can hide a layout error from the
    losses (rows of zeros or duplicates make a wrong positive column score like the right one) and
    leave it visible in the gradients only; then the losses on a generic batch show it, and the
    failure is filed under :func:`loss_clause`'s clause as a premise failure."""
    gq, gd = generic_batch(q_shape, d_shape, ctx.dtype)
    w = ctx.world_size
    outs, expected, bounds = _rank_run(ctx, gq, gd, config, w)
    losses = np.asarray([o.loss for o in outs], dtype=np.float64)
    want = np.asarray([e.loss for e in expected], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        if bool(np.all(np.abs(losses - want) <= bounds.loss)):
            return
        if len(losses) > 1 and bool(np.all(np.abs(losses - float(np.mean(want))) <= bounds.loss)):
            return  # every rank reports the global L (DP-2 allows it)
    clause, why = loss_clause(losses, want, bounds.loss)
    premise = f"the rank losses on a generic batch of the same shapes (no two rows alike): {why}"
    exc = PremiseFailure(clause, premise, failure.detail, mismatch=failure.mismatch)
    exc.observed = RankObservation(gq, gd, config, w, tuple(outs))  # what the known mistakes are tried on
    raise exc from None


def _rank_run(
    ctx: Context, q: np.ndarray, d: np.ndarray, config: Any, w: int
) -> tuple[list[Any], list[Any], Any]:
    """Every rank's ``rank_embeddings`` on its slice of the global batch (DP-1's layout): the
    outputs, :func:`rank_expectations` and the error bounds."""
    b = q.shape[0] // w
    expected = rank_expectations(q, d, config, w)
    bounds = embedding_bounds(q, d, config, ctx.compute_dtype)
    cases = [
        RankCase(r, w, q[r * b : (r + 1) * b].copy(), d[:, r * b : (r + 1) * b].copy(), config)
        for r in range(w)
    ]
    raw = ctx.harness.run("rank_embeddings", cases)
    outs = [
        to_outputs(o, (b, q.shape[1]), (d.shape[0], b, d.shape[2]), False, call="rank_embeddings")
        for o in raw
    ]
    return outs, expected, bounds


def _grad_failure(
    ctx: Context, pairs: list[tuple[Any, Any, Any, str]], clause: str
) -> ConformanceFailure | None:
    try:
        for computed, expected, bound, quantity in pairs:
            ctx.close(computed, expected, bound, quantity=quantity, clause=clause)
    except ConformanceFailure as exc:
        return exc
    return None


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
        outs, expected, bounds = _rank_run(ctx, q, d, config, w)
        losses = rank_loss_failure(ctx, [o.loss for o in outs], [e.loss for e in expected], bounds.loss)
        pairs = []
        for r, (out, exp) in enumerate(zip(outs, expected, strict=True)):
            own = slice(r * b, (r + 1) * b)
            pairs.append(
                (
                    out.grad_queries,
                    exp.grad_queries,
                    w * bounds.grad_queries[own],
                    f"rank {r} grad_queries (local, W-scaled)",
                )
            )
            pairs.append(
                (
                    out.grad_docs,
                    exp.grad_docs,
                    w * bounds.grad_docs[:, own],
                    f"rank {r} grad_docs (local, W-scaled)",
                )
            )
        try:
            _verdict(ctx, q, d, config, [losses, _grad_failure(ctx, pairs, "DP-3")])
        except PremiseFailure:
            raise  # evidence about another case (W = 1, or a generic batch that carries its own)
        except ConformanceFailure as exc:
            exc.observed = RankObservation(q, d, config, w, tuple(outs))  # for the known mistakes
            raise


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
            output_array(list(out.losses), (1,), f"rank {r} losses", "DP-2", "rank_encoder")[0]
            for r, out in enumerate(outs)
        ]
        expected_losses = [float(np.mean(per_query[r * b : (r + 1) * b])) for r in range(w)]
        loss_failure = rank_loss_failure(ctx, losses, expected_losses, bounds.loss)
        grads = [
            output_array(out.grad_weight, wt.shape, f"rank {r} grad_weight", "DP-4", "rank_encoder")
            for r, out in enumerate(outs)
        ]
        grad_failure = _grad_failure(
            ctx,
            [(np.mean(grads, axis=0), expected.grad_weight, g_bound, "grad_weight averaged over ranks")],
            "DP-4",
        )
        q = round_to_dtype(xq @ wt.T, ctx.dtype)
        d = round_to_dtype(xd @ wt.T, ctx.dtype)
        first = loss_failure or grad_failure
        if first is not None and case["mini_batch_size"] is not None:
            # a cached rank step presupposes the cached step in one process (CACHE-1): first the
            # loss stage at level 1, then the same global batch through the cached encoder
            check_premise(ctx, q, d, config, "the same global batch in one process (W = 1)", first)
            # (and a local batch of B rows, whose chunks fall as the ranks' do)
            m = case["mini_batch_size"]
            for rows, what in (
                (slice(None), "the same global batch"),
                (slice(0, b), f"rank 0's local batch ({b} rows)"),
            ):
                one = {
                    "x_queries": xq[rows],
                    "x_docs": xd[:, rows],
                    "weight": wt,
                    "config": config,
                    "mini_batch_size": m,
                }
                try:
                    check_steps(ctx, one, [1.0], "CACHE-1")
                except ConformanceFailure:
                    why = f"{what} through the cached encoder in one process (W = 1) is wrong"
                    raise PremiseFailure("CACHE-1", why, first.detail, mismatch=first.mismatch) from None
        _verdict(ctx, q, d, config, [loss_failure, grad_failure])


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
