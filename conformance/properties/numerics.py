"""Chapter "numerics": large logits stay finite and exact (NUM-1); the cos eps regime (SIM-1, GRAD-3).

* large logits: cos with scale 100 .. 1e3; dot with embeddings of norm up to ~1e3 and scale up to
  1e3 (logits up to ~1e9): finite outputs for finite inputs, equal to the reference;
* cos eps: at least one embedding is zero, below the eps 1e-12 or just around it; the value uses
  ``x / max(||x||, 1e-12)`` (a wrong or non-finite loss is filed SIM-1) and the gradient below the
  eps is that of ``x / 1e-12`` (the loss right, a gradient wrong: GRAD-3).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from infonce_spec.reference import Config, loss_and_grad

from ..compare import ConformanceFailure
from ..protocol import Capabilities
from ..strategies import draw_config, draw_embeddings, draw_shape
from ..tolerances import cos_eps_ambiguous, embedding_bounds, round_to_dtype
from .base import Context, Property, claims
from .checks import (
    GENERIC_D,
    assume_representable,
    check_premise,
    generic_like,
    moderate_case,
    summed_over_queries,
    unit_case,
)

__all__ = ["CosEps", "LargeLogits", "unit_case"]


#: Target norms of the cos-eps rows: zero, far below, just below, just above, far above 1e-12.
EPS_NORMS = (0.0, 1e-14, 5e-13, 2e-12, 1e-9)


def _case(x: np.ndarray, n: int, k: int, d: int, config: Config, ctx: Context) -> dict[str, Any]:
    """The case made of the ``N (K + 1) x D`` rows ``x``: rounded to the adapter's dtype, rows whose
    cos eps branch the loss stage's precision cannot tell rejected, split into queries and docs, and
    results that float16 cannot hold rejected."""
    x = round_to_dtype(x, ctx.dtype)
    if config.similarity == "cos":
        assume(not cos_eps_ambiguous(x, ctx.compute_dtype))
    q, docs = x[:n], x[n:].reshape(k, n, d)
    if ctx.dtype == "float16":
        assume_representable(loss_and_grad(q, docs, config), ctx.dtype)
    return {"queries": q, "docs": docs, "config": config}


class LargeLogits(Property):
    name = "numerics/large_logits"
    clauses = ("NUM-1",)
    summary = "large logits (cos scale up to 1e3; dot with norms up to 1e3) give finite, exact results"

    def draw(self, data: Any, ctx: Context) -> dict[str, Any]:
        config = draw_config(
            data, ctx.caps, scale=st.one_of(st.sampled_from([1e3, 100.0]), st.floats(100.0, 1e3))
        )
        n, k, d = draw_shape(data, ctx.caps)
        x = draw_embeddings(data, n * (k + 1), d, label="embeddings")
        if config.similarity == "dot":
            x = x * data.draw(st.sampled_from([1e3, 10.0, 1e2]), label="norm_factor")
        return _case(x, n, k, d, config, ctx)

    def check(self, case: dict[str, Any], ctx: Context) -> None:
        """Premise: the same case at moderate logits (scale 1; dot: embeddings shrunk so that every
        |s| <= 4) is right -- else the error is not about large logits."""
        q, d, config = case["queries"], case["docs"], case["config"]
        expected = loss_and_grad(q, d, config)
        bounds = embedding_bounds(q, d, config, ctx.compute_dtype)
        out = ctx.embeddings(q, d, config)
        try:
            ctx.compare(out, expected, bounds, self.clause)
        except ConformanceFailure as exc:
            if summed_over_queries(out, expected, bounds, ctx.dtype):
                raise ConformanceFailure("LOSS-1", exc.detail, mismatch=exc.mismatch) from None
            qm, dm, moderate = moderate_case(q, d, config, ctx.dtype)
            check_premise(ctx, qm, dm, moderate, "the same case at moderate logits", exc)
            raise


class CosEps(Property):
    name = "numerics/cos_eps"
    clauses = ("GRAD-3", "SIM-1")
    summary = "zero and sub-eps embeddings: value x/max(||x||,1e-12), gradient of x/1e-12 below the eps"

    def requires(self, caps: Capabilities) -> str | None:
        return claims(caps, similarity="cos")

    def draw(self, data: Any, ctx: Context) -> dict[str, Any]:
        config = draw_config(data, ctx.caps, similarity="cos")
        n, k, d = draw_shape(data, ctx.caps)
        rows = n * (k + 1)
        x = draw_embeddings(data, rows, d, corners=False, label="embeddings")
        picks = data.draw(
            st.lists(st.tuples(st.integers(0, rows - 1), st.sampled_from(EPS_NORMS)), min_size=1, max_size=3),
            label="eps_rows (row, norm)",
        )
        for row, norm in picks:
            length = float(np.linalg.norm(x[row]))
            x[row] = 0.0 if norm == 0.0 or length == 0.0 else x[row] * (norm / length)
        return _case(x, n, k, d, config, ctx)

    def check(self, case: dict[str, Any], ctx: Context) -> None:
        """The value (loss, NaN included) is that of ``x / max(||x||, 1e-12)``: SIM-1; the loss right
        and a gradient wrong: the eps branch of the gradient, GRAD-3."""
        q, d, config = case["queries"], case["docs"], case["config"]
        expected = loss_and_grad(q, d, config)
        bounds = embedding_bounds(q, d, config, ctx.compute_dtype)
        out = ctx.embeddings(q, d, config)
        try:
            ctx.close(out.loss, expected.loss, bounds.loss, quantity="loss", clause="SIM-1")
            ctx.compare(out, expected, bounds, "GRAD-3")
        except ConformanceFailure as exc:
            if summed_over_queries(out, expected, bounds, ctx.dtype):
                raise ConformanceFailure("LOSS-1", exc.detail, mismatch=exc.mismatch) from None
            qm, dm = unit_case(q, ctx.dtype), unit_case(d, ctx.dtype)
            check_premise(ctx, qm, dm, config, "the same case with its eps rows at norm 1", exc)
            if q.shape[1] < GENERIC_D and exc.clause == "GRAD-3":
                # at D = 1 every cos gradient is 0 at a unit row: the unit version hides any gradient
                # error, so a generic batch of the same configuration is the premise
                gq, gd = generic_like(q, d, ctx.dtype)
                check_premise(ctx, gq, gd, config, "a generic batch of the same configuration (D = 4)", exc)
            raise
