"""Chapter "reference equality": loss and every gradient equal the exact reference within the tolerance model.

One property per feature, so that a failure lands on the clause that owns it: the plain
``query_to_doc`` loss (QD-*, SIM-*, SCALE-1, LOSS-1, GRAD-1), each extra direction with its mask
(QQ-1/MASK-QQ-1, DQ-1, DD-1/MASK-DD-*), per-direction partitioning (PART-3), hardness (HARD-2 ..
HARD-5), dL/dscale (SCALE-2), and every claimed option at once (PART-2, DIR-1).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from hypothesis import assume

from infonce_spec.reference import Config, loss_and_grad

from ..compare import ConformanceFailure, check_close
from ..protocol import Capabilities
from ..strategies import draw_batch, draw_config, draw_shape
from ..tolerances import OUTPUT_ROUNDING, UNIT_ROUNDOFF, Bounds, embedding_bounds, finite_max
from .base import Context, Outputs, Property, claims

__all__ = ["assume_representable", "draw_embedding_case", "reference_check", "summed_over_queries"]


def assume_representable(result: Any, dtype: str) -> None:
    """Reject cases whose exact results are not representable in ``dtype`` (float16: > 65504)."""
    if dtype in ("float64", "float32", "bfloat16"):
        return
    top = finite_max(dtype) / 4
    assume(abs(result.loss) < top)
    assume(float(np.max(np.abs(result.grad_queries), initial=0.0)) < top)
    assume(float(np.max(np.abs(result.grad_docs), initial=0.0)) < top)


def draw_embedding_case(
    data: Any,
    ctx: Context,
    *,
    config: dict[str, Any] | None = None,
    corners: bool = True,
    max_n: int = 5,
    min_k: int = 1,
    max_k: int = 3,
    max_d: int = 8,
) -> dict[str, Any]:
    """A level-1 case: a claimed config (``config`` fixes fields), a shape and a rounded batch."""
    cfg: Config = draw_config(data, ctx.caps, **(config or {}))
    n, k, d = draw_shape(data, ctx.caps, max_n=max_n, min_k=min_k, max_k=max_k, max_d=max_d)
    q, docs = draw_batch(
        data,
        n,
        k,
        d,
        dtype=ctx.dtype,
        compute_dtype=ctx.compute_dtype,
        similarity=cfg.similarity,
        corners=corners,
    )
    if ctx.dtype == "float16":
        assume_representable(loss_and_grad(q, docs, cfg), ctx.dtype)
    return {"queries": q, "docs": docs, "config": cfg}


def summed_over_queries(out: Outputs, expected: Any, bounds: Bounds, dtype: str = "float64") -> bool:
    """LOSS-1 diagnosis: with N >= 2 the adapter's loss and both gradients are N times the reference's
    (within N times their bounds, plus the rounding of results in ``dtype``): the per-query losses are
    summed, not averaged."""
    n = int(np.asarray(expected.grad_queries).shape[0])
    if n < 2 or not np.isfinite(out.loss):
        return False
    pairs = (
        (out.loss, expected.loss, bounds.loss),
        (out.grad_queries, expected.grad_queries, bounds.grad_queries),
        (out.grad_docs, expected.grad_docs, bounds.grad_docs),
    )
    try:
        for computed, exact, bound in pairs:
            size = OUTPUT_ROUNDING * UNIT_ROUNDOFF[dtype] * np.abs(np.asarray(exact, dtype=np.float64))
            check_close(
                computed, n * np.asarray(exact), n * (np.asarray(bound) + size), quantity="", clause=""
            )
    except ConformanceFailure:
        return False
    return True


def reference_check(case: dict[str, Any], ctx: Context, clause: str, *, scale_grad: bool = False) -> None:
    """The adapter's loss and gradients against :func:`loss_and_grad` on the same inputs.

    A result that is N times the reference (loss and gradients, N >= 2) is filed under LOSS-1 (the
    mean over queries) whatever ``clause`` is."""
    q, d, config = case["queries"], case["docs"], case["config"]
    expected = loss_and_grad(q, d, config)
    bounds = embedding_bounds(q, d, config, ctx.compute_dtype)
    out = ctx.embeddings(q, d, config)
    try:
        ctx.compare(out, expected, bounds, clause, scale_grad=scale_grad)
    except ConformanceFailure as exc:
        if exc.clause == "LOSS-1" or not summed_over_queries(out, expected, bounds, ctx.dtype):
            raise
        n = q.shape[0]
        why = f"loss and gradients are {n} (= N) times the reference's: summed over queries, not averaged"
        raise ConformanceFailure("LOSS-1", f"{exc.detail}; {why}", mismatch=exc.mismatch) from None


class _ReferenceEquality(Property):
    """Reference equality on a family of configs fixed by ``fixed``."""

    fixed: ClassVar[dict[str, Any]] = {}
    needs_directions: ClassVar[tuple[str, ...]] = ()
    needs_partition: ClassVar[str | None] = None
    needs_hardness: ClassVar[bool] = False
    min_k: ClassVar[int] = 1

    def requires(self, caps: Capabilities) -> str | None:
        if self.needs_hardness and not caps.hardness_modes:
            return "a hardness mode"
        return claims(
            caps, directions=self.needs_directions, partition_mode=self.needs_partition, min_k=self.min_k
        )

    def draw(self, data: Any, ctx: Context) -> dict[str, Any]:
        return draw_embedding_case(data, ctx, config=dict(self.fixed), min_k=self.min_k)

    def check(self, case: dict[str, Any], ctx: Context) -> None:
        reference_check(case, ctx, self.clause)


class QueryToDoc(_ReferenceEquality):
    name = "reference/query_to_doc"
    clauses = ("QD-1", "QD-2", "SIM-1", "SIM-2", "SCALE-1", "LOSS-1", "GRAD-1")
    summary = "query_to_doc loss and gradients (both similarities, any scale) equal the reference"
    fixed: ClassVar[dict[str, Any]] = {
        "directions": ("query_to_doc",),
        "partition_mode": "joint",
        "hardness": False,
    }

    def checked_clauses(self, caps: Capabilities) -> tuple[str, ...]:
        """SIM-1 / SIM-2 only where cos / dot is claimed (the configs are drawn from the claims)."""
        needs = {"SIM-1": "cos", "SIM-2": "dot"}
        return tuple(c for c in self.clauses if c not in needs or needs[c] in caps.similarities)


class QueryToQuery(_ReferenceEquality):
    name = "reference/query_to_query"
    clauses = ("QQ-1", "MASK-QQ-1", "PART-2")
    summary = "query_to_query rows (self excluded) equal the reference"
    fixed: ClassVar[dict[str, Any]] = {
        "directions": ("query_to_doc", "query_to_query"),
        "partition_mode": "joint",
        "hardness": False,
    }
    needs_directions = ("query_to_query",)


class DocToQuery(_ReferenceEquality):
    name = "reference/doc_to_query"
    clauses = ("DQ-1",)
    summary = "doc_to_query rows (own query kept) equal the reference, joint and per_direction"
    fixed: ClassVar[dict[str, Any]] = {"directions": ("query_to_doc", "doc_to_query"), "hardness": False}
    needs_directions = ("doc_to_query",)


class DocToDoc(_ReferenceEquality):
    name = "reference/doc_to_doc"
    clauses = ("DD-1", "MASK-DD-1", "MASK-DD-2", "ROW-1")
    summary = "doc_to_doc rows (all own documents excluded, hard negatives never rows) equal the reference"
    fixed: ClassVar[dict[str, Any]] = {
        "directions": ("query_to_doc", "doc_to_doc"),
        "partition_mode": "joint",
        "hardness": False,
    }
    needs_directions = ("doc_to_doc",)


class PerDirection(_ReferenceEquality):
    name = "reference/per_direction"
    clauses = ("PART-3", "PART-4")
    summary = "per_direction partitioning (mean of per-direction log-partitions) equals the reference"
    fixed: ClassVar[dict[str, Any]] = {"partition_mode": "per_direction"}
    needs_partition = "per_direction"

    def draw(self, data: Any, ctx: Context) -> dict[str, Any]:
        from hypothesis import strategies as st

        options = [("query_to_doc",)]
        if "doc_to_query" in ctx.caps.directions:
            options.append(("query_to_doc", "doc_to_query"))
        directions = data.draw(st.sampled_from(options), label="directions")
        return draw_embedding_case(
            data, ctx, config={"partition_mode": "per_direction", "directions": directions}
        )


class Hardness(_ReferenceEquality):
    name = "reference/hardness"
    clauses = ("HARD-2", "HARD-3", "HARD-4", "HARD-5")
    summary = (
        "hardness-weighted logits (alpha*s, unscaled, stop-gradient, positive exempt) equal the reference"
    )
    fixed: ClassVar[dict[str, Any]] = {"hardness": True}
    needs_hardness = True

    def check(self, case: dict[str, Any], ctx: Context) -> None:
        """Loss wrong: HARD-2 unless the probes of :func:`.hardness.diagnose` name HARD-3 / HARD-4;
        loss right and a gradient wrong: HARD-5."""
        from .hardness import hardness_check

        hardness_check(case, ctx, self.clause)


class AllOptions(_ReferenceEquality):
    name = "reference/all_options"
    clauses = ("PART-2", "LOSS-1", "GRAD-1")
    summary = "every claimed combination of directions, partition, similarity, hardness equals the reference"


class GradScale(_ReferenceEquality):
    name = "reference/grad_scale"
    clauses = ("SCALE-2",)
    summary = "dL/dscale equals the reference"

    def requires(self, caps: Capabilities) -> str | None:
        return None if caps.grad_scale else "grad_scale (dL/dscale)"

    def check(self, case: dict[str, Any], ctx: Context) -> None:
        reference_check(case, ctx, self.clause, scale_grad=True)
