"""Chapter "invariances": metamorphic relations an implementation must satisfy without a reference.

Each compares the adapter with itself on two related inputs; the bound is the sum of the two
inputs' tolerance bounds (each result is within its own bound of the exact value).

* batch permutation equivariance (LOSS-1, LAYOUT-3): permuting the batch permutes the gradients;
* hard-negative column order (LAYOUT-2, LAYOUT-3): permuting ``docs[1:]`` permutes their gradients;
* cos rescaling (SIM-1): ``x -> c x`` (c > 0) leaves the loss and scales the gradient by ``1/c``;
* dot/scale identity (SCALE-1, SIM-2): ``dot`` with ``scale s`` on ``x`` equals ``dot`` with scale 1
  on ``sqrt(s) x`` (hardness ``alpha/s``), gradients ``g(x) = sqrt(s) g'(sqrt(s) x)``;
* non-negativity (LOSS-2): joint and symmetric (per_direction query_to_doc + doc_to_query) losses;
* direction order (DIR-2) and zero hardness (HARD-6): equal to the canonical reference.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from infonce_spec.reference import Config, loss_and_grad

from ..cases import config_with_directions
from ..compare import ConformanceFailure, PremiseFailure, fail
from ..protocol import Capabilities
from ..tolerances import UNIT_ROUNDOFF, Bounds, embedding_bounds, round_to_dtype
from .base import Context, Outputs, Property, claims
from .checks import adapter_is_right, check_premise, draw_embedding_case, isolate

SAME = "same adapter on the original input"


def _compare_same(
    ctx: Context, a: Outputs, b_loss: float, b_gq: np.ndarray, b_gd: np.ndarray, bounds: Any, clause: str
) -> None:
    ctx.close(a.loss, b_loss, bounds.loss, quantity="loss", clause=clause, what=SAME)
    ctx.close(a.grad_queries, b_gq, bounds.grad_queries, quantity="grad_queries", clause=clause, what=SAME)
    ctx.close(a.grad_docs, b_gd, bounds.grad_docs, quantity="grad_docs", clause=clause, what=SAME)


def _compare_rescaled(
    ctx: Context,
    other: Outputs,
    base: Outputs,
    bounds: tuple[Bounds, Bounds],
    factors: tuple[Any, Any],
    *,
    name: str,
    argument: str,
    clause: str,
) -> None:
    """``base`` (the adapter on x) against ``other`` (on the rescaled input ``argument``): the same
    loss, and gradients equal to ``other``'s times ``factors`` (queries, docs), named ``name``; each
    within the first bound plus the second one rescaled alike."""
    b1, b2 = bounds
    what = f"the same adapter on x, against it on {argument}"
    ctx.close(
        other.loss, base.loss, b1.loss + b2.loss, quantity=f"loss({argument})", clause=clause, what=what
    )
    for field, factor in zip(("grad_queries", "grad_docs"), factors, strict=True):
        ctx.close(
            factor * getattr(other, field),
            getattr(base, field),
            getattr(b1, field) + factor * getattr(b2, field),
            quantity=f"{name} * {field}({argument})",
            clause=clause,
            what=what,
        )


class _Metamorphic(Property):
    """A relation between the adapter's results on two related inputs. It presupposes finite results:
    if the adapter's result on the original case is not finite (where the reference's is), the
    failure is the original case's, filed by the premise ladder (:func:`~.checks.check_premise`)."""

    def relation(self, case: dict[str, Any], ctx: Context) -> None:
        raise NotImplementedError

    def check(self, case: dict[str, Any], ctx: Context) -> None:
        try:
            self.relation(case, ctx)
        except ConformanceFailure as exc:
            q, d, config = case["queries"], case["docs"], case["config"]
            out = ctx.embeddings(q, d, config)
            values = (out.loss, out.grad_queries, out.grad_docs)
            if not all(bool(np.all(np.isfinite(v))) for v in values):
                check_premise(ctx, q, d, config, "the original case, with finite results", exc)
            raise


class BatchPermutation(_Metamorphic):
    name = "invariance/batch_permutation"
    clauses = ("LOSS-1", "LAYOUT-3")
    summary = "permuting the batch (queries and every doc column alike) permutes the gradients, keeps L"

    def draw(self, data: Any, ctx: Context) -> dict[str, Any]:
        case = draw_embedding_case(data, ctx)
        n = case["queries"].shape[0]
        case["permutation"] = np.asarray(data.draw(st.permutations(range(n)), label="permutation"))
        return case

    def relation(self, case: dict[str, Any], ctx: Context) -> None:
        q, d, config, p = case["queries"], case["docs"], case["config"], case["permutation"]
        base = ctx.embeddings(q, d, config)
        perm = ctx.embeddings(q[p], d[:, p], config)
        b = embedding_bounds(q, d, config, ctx.compute_dtype)
        bounds = Bounds(2 * b.loss, 2 * b.grad_queries[p], 2 * b.grad_docs[:, p], 2 * b.grad_scale, b.logit)
        _compare_same(ctx, perm, base.loss, base.grad_queries[p], base.grad_docs[:, p], bounds, self.clause)


class HardNegativeOrder(_Metamorphic):
    name = "invariance/hard_negative_order"
    clauses = ("LAYOUT-2", "LAYOUT-3")
    summary = "permuting the hard-negative columns docs[1:] permutes their gradients, keeps L"

    def requires(self, caps: Capabilities) -> str | None:
        return claims(caps, min_k=3)

    def draw(self, data: Any, ctx: Context) -> dict[str, Any]:
        case = draw_embedding_case(data, ctx, min_k=3, max_k=4)
        k = case["docs"].shape[0]
        order = data.draw(st.permutations(range(1, k)), label="hard_negative_order")
        assume(list(order) != list(range(1, k)))
        case["columns"] = np.asarray([0, *order])
        return case

    def relation(self, case: dict[str, Any], ctx: Context) -> None:
        q, d, config, cols = case["queries"], case["docs"], case["config"], case["columns"]
        base = ctx.embeddings(q, d, config)
        perm = ctx.embeddings(q, d[cols], config)
        b = embedding_bounds(q, d, config, ctx.compute_dtype)
        bounds = Bounds(2 * b.loss, 2 * b.grad_queries, 2 * b.grad_docs[cols], 2 * b.grad_scale, b.logit)
        _compare_same(ctx, perm, base.loss, base.grad_queries, base.grad_docs[cols], bounds, self.clause)


class CosRescaling(_Metamorphic):
    name = "invariance/cos_rescaling"
    clauses = ("SIM-1",)
    summary = "cos: scaling any embedding by c > 0 keeps L and divides its gradient by c"

    def requires(self, caps: Capabilities) -> str | None:
        return claims(caps, similarity="cos")

    def draw(self, data: Any, ctx: Context) -> dict[str, Any]:
        case = draw_embedding_case(data, ctx, config={"similarity": "cos"}, corners=False)
        q, d = case["queries"], case["docs"]
        rows = q.shape[0] * (d.shape[0] + 1)
        factor = st.one_of(st.sampled_from([2.0, 0.5, 1024.0, 2.0**-10]), st.floats(1e-3, 1e3))
        c = np.asarray(data.draw(st.lists(factor, min_size=rows, max_size=rows), label="row_factors"))
        x = np.concatenate([q, d.reshape(-1, q.shape[1])])
        norms = np.linalg.norm(x, axis=1)
        # Stated condition: every row stays far above the cos eps before and after scaling.
        assume(bool(np.all(norms >= 1e-6)) and bool(np.all(norms * c >= 1e-6)))
        case["row_factors"] = c
        return case

    def relation(self, case: dict[str, Any], ctx: Context) -> None:
        q, d, config, c = case["queries"], case["docs"], case["config"], case["row_factors"]
        n = q.shape[0]
        cq, cd = c[:n, None], c[n:].reshape(d.shape[0], n, 1)
        q2, d2 = round_to_dtype(q * cq, ctx.dtype), round_to_dtype(d * cd, ctx.dtype)
        base = ctx.embeddings(q, d, config)
        scaled = ctx.embeddings(q2, d2, config)
        b1 = embedding_bounds(q, d, config, ctx.compute_dtype)
        b2 = embedding_bounds(q2, d2, config, ctx.compute_dtype, input_rel_err=UNIT_ROUNDOFF[ctx.dtype])
        _compare_rescaled(ctx, scaled, base, (b1, b2), (cq, cd), name="c", argument="c x", clause=self.clause)


def _computes_cos(ctx: Context, q: np.ndarray, d: np.ndarray, config: Config) -> bool:
    """Whether the adapter's ``dot`` result on the case is the reference's ``cos`` result, on a case
    where the two differ (its embeddings are normalised: SIM-2)."""
    as_cos = dataclasses.replace(config, similarity="cos")
    return (
        adapter_is_right(ctx, q, d, config, expected_config=as_cos)[0]
        and not adapter_is_right(ctx, q, d, config)[0]
    )


class DotScaleIdentity(_Metamorphic):
    name = "invariance/dot_scale_identity"
    #: SCALE-1 first: the identity pins how the scale enters the logits (scale * s, not s / scale).
    clauses = ("SCALE-1", "SIM-2")
    summary = "dot: scale s on x equals scale 1 on sqrt(s) x (hardness alpha/s); g(x) = sqrt(s) g'(sqrt(s) x)"

    def requires(self, caps: Capabilities) -> str | None:
        return claims(caps, similarity="dot")

    def draw(self, data: Any, ctx: Context) -> dict[str, Any]:
        return draw_embedding_case(data, ctx, config={"similarity": "dot"})

    def relation(self, case: dict[str, Any], ctx: Context) -> None:
        q, d, config = case["queries"], case["docs"], case["config"]
        s = config.scale
        r = math.sqrt(s)
        unit = config.replace(scale=1.0, hardness_strength=config.hardness_strength / s)
        q2, d2 = round_to_dtype(q * r, ctx.dtype), round_to_dtype(d * r, ctx.dtype)
        try:
            self._identity(ctx, q, d, q2, d2, config, unit)
        except ConformanceFailure as exc:
            if _computes_cos(ctx, q, d, config) or _computes_cos(ctx, q2, d2, unit):
                raise ConformanceFailure(
                    "SIM-2",
                    f"{exc.detail}; the adapter's dot results are the reference's cos results on the same "
                    "case: the embeddings are normalised (dot is a . b, SIM-2)",
                    mismatch=exc.mismatch,
                ) from None
            if not config.hardness_active:
                raise
            plain, plain_unit = (
                dataclasses.replace(c, hardness_mode=None, hardness_strength=0.0) for c in (config, unit)
            )
            try:
                self._identity(ctx, q, d, q2, d2, plain, plain_unit)
            except ConformanceFailure:
                raise exc from None
            raise ConformanceFailure(
                "HARD-2",
                f"{exc.detail}; the identity holds without hardness: the hardness term scales with `scale` "
                "(it must be alpha * s, added to scale * s, not multiplied by scale)",
                mismatch=exc.mismatch,
            ) from None

    def _identity(
        self,
        ctx: Context,
        q: np.ndarray,
        d: np.ndarray,
        q2: np.ndarray,
        d2: np.ndarray,
        config: Config,
        unit: Config,
    ) -> None:
        base = ctx.embeddings(q, d, config)
        other = ctx.embeddings(q2, d2, unit)
        b1 = embedding_bounds(q, d, config, ctx.compute_dtype)
        b2 = embedding_bounds(q2, d2, unit, ctx.compute_dtype, input_rel_err=UNIT_ROUNDOFF[ctx.dtype])
        _compare_rescaled(
            ctx,
            other,
            base,
            (b1, b2),
            (r := math.sqrt(config.scale), r),
            name="sqrt(s)",
            argument="scale 1, sqrt(s) x",
            clause=self.clause,
        )


class NonNegative(Property):
    name = "invariance/nonnegative_loss"
    clauses = ("LOSS-2",)
    summary = "joint and symmetric (per_direction query_to_doc+doc_to_query) losses are >= 0"

    def draw(self, data: Any, ctx: Context) -> dict[str, Any]:
        case = draw_embedding_case(data, ctx)
        config: Config = case["config"]
        assume(
            config.partition_mode in ("joint", "per_anchor")  # per_anchor: PART-6, a positive per group
            or set(config.directions) == {"query_to_doc", "doc_to_query"}
            or config.directions == ("query_to_doc",)
        )
        if data.draw(st.booleans(), label="aligned_positives"):
            case["docs"][0] = case["queries"]  # the loss approaches its infimum 0 from above
        return case

    def check(self, case: dict[str, Any], ctx: Context) -> None:
        q, d, config = case["queries"], case["docs"], case["config"]
        out = ctx.embeddings(q, d, config)
        bound = embedding_bounds(q, d, config, ctx.compute_dtype).loss
        try:
            ctx.close(
                max(0.0, -out.loss),
                0.0,
                bound,
                quantity="negative part of the loss",
                clause=self.clause,
                what="0 (the loss must be >= 0)",
            )
            if not np.isfinite(out.loss):
                raise fail(self.clause, f"loss is {out.loss}")
        except ConformanceFailure as exc:
            found = isolate(ctx, q, d, config)
            if found is not None:
                variant, clause = found
                raise PremiseFailure(clause, variant.why, exc.detail, mismatch=exc.mismatch) from None
            raise


def _equals_canonical(ctx: Context, case: dict[str, Any], out: Outputs, clause: str, canonical: str) -> None:
    """``out`` (the adapter on a spelling of ``case["config"]``) equals the reference on the canonical
    config; premise: the adapter itself is right on the canonical config."""
    q, d, config = case["queries"], case["docs"], case["config"]
    expected = loss_and_grad(q, d, config)
    bounds = embedding_bounds(q, d, config, ctx.compute_dtype)
    try:
        ctx.compare(out, expected, bounds, clause, what=f"reference ({canonical})", scale_clause=clause)
    except ConformanceFailure as exc:
        check_premise(ctx, q, d, config, f"the same case with {canonical}", exc)
        if exc.mismatch is not None and exc.mismatch.quantity == "grad_scale":
            # only dL/dscale differs: the property's own clause only once SCALE-2 holds on the canonical case
            ctx.compare(
                ctx.embeddings(q, d, config), expected, bounds, clause, what=f"reference ({canonical})"
            )
        raise


class DirectionOrder(Property):
    name = "invariance/direction_order"
    clauses = ("DIR-2",)
    summary = "the order and repetition of `directions` do not change the loss"

    def draw(self, data: Any, ctx: Context) -> dict[str, Any]:
        case = draw_embedding_case(data, ctx)
        dirs = case["config"].directions
        order = list(data.draw(st.permutations(dirs), label="direction_order"))
        repeats = data.draw(
            st.lists(st.sampled_from(dirs), min_size=1 if len(dirs) == 1 else 0, max_size=2),
            label="repeated_directions",
        )
        given = tuple(order + repeats)
        assume(given != tuple(dirs))
        case["given_directions"] = given
        return case

    def check(self, case: dict[str, Any], ctx: Context) -> None:
        q, d, config = case["queries"], case["docs"], case["config"]
        out = ctx.embeddings(q, d, config_with_directions(config, case["given_directions"]))
        _equals_canonical(ctx, case, out, self.clause, "its directions in canonical order")


class ZeroHardness(Property):
    name = "invariance/zero_hardness"
    clauses = ("HARD-6",)
    summary = "hardness strength 0 (any mode) or mode None (any strength) equals no hardness"

    def draw(self, data: Any, ctx: Context) -> dict[str, Any]:
        case = draw_embedding_case(data, ctx, config={"hardness": False})
        options: list[tuple[str | None, float]] = [(m, 0.0) for m in sorted(ctx.caps.hardness_modes)]
        options.append((None, 2.0))
        mode, strength = data.draw(st.sampled_from(options), label="hardness_variant")
        case["variant"] = case["config"].replace(hardness_mode=mode, hardness_strength=strength)
        return case

    def check(self, case: dict[str, Any], ctx: Context) -> None:
        q, d = case["queries"], case["docs"]
        _equals_canonical(ctx, case, ctx.embeddings(q, d, case["variant"]), self.clause, "hardness_mode=None")


__all__ = [
    "BatchPermutation",
    "CosRescaling",
    "DirectionOrder",
    "DotScaleIdentity",
    "HardNegativeOrder",
    "NonNegative",
    "ZeroHardness",
]
