"""Chapter "hardness": the hardness term h = alpha * stopgrad(s) and where it goes (HARD-2 .. HARD-5).

Every hardness check shares one attribution rule, :func:`hardness_check`:

* the loss within its bound but a gradient not, while the same case without hardness is right: the
  forward is right, so the gradient flows through ``h`` -- HARD-5 (no stop-gradient);
* the loss N times the reference's (and the gradients): LOSS-1 (as every reference comparison);
* the loss wrong: :func:`~.checks.diagnose_hardness` runs the adapter on probes cut from the case, each against the
  reference, to name the clause (a probe counts only if it is wrong with hardness and right without,
  and nothing is diagnosed if the case is wrong without hardness too):

  1. *positive probe* (per query ``g``): query ``g`` alone (N = 1) with its positive and hard
     negatives ``(-q[1], q[0], 0, ...)`` / ``-(...)``, exactly orthogonal to ``q_g`` (zero for D = 1):
     every hard negative has ``s = 0`` and so ``h = 0`` whatever the mode, the value formula or the
     scale, so only the positive can carry ``h`` -> HARD-4;
  2. *value probe*: query ``g`` alone with its own documents, mode ``hard_negatives`` or
     ``all_negatives`` (at N = 1 both select exactly the own hard negatives) -> HARD-2 (the value
     ``alpha * s``, unscaled);
  3. both probes informative (K >= 2) and right, N >= 2: the error needs other queries' documents,
     i.e. which entries a mode selects -> HARD-3;
  4. otherwise the property's own clause.

Properties: ``hardness/positive_exempt`` (HARD-4: N = 1, the positive probe as drawn input;
with K = 1 and only ``query_to_doc`` the loss is 0 for any h, so ``doc_to_query`` or K >= 2 makes it
visible) and ``hardness/selection`` (HARD-3: N >= 2, K >= 2, every claimed mode against the
reference). ``reference/hardness`` uses the same check with HARD-2 as its default.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import assume

from infonce_spec.reference import Config, loss_and_grad

from ..compare import ConformanceFailure, PremiseFailure
from ..protocol import Capabilities
from ..strategies import draw_batch, draw_config, draw_shape
from ..tolerances import cos_eps_ambiguous, embedding_bounds
from .base import Context, Property, claims
from .checks import (
    adapter_is_right,
    blame,
    check_ladder,
    diagnose_hardness,
    draw_embedding_case,
    positive_probe,
    summed_over_queries,
)

__all__ = ["PositiveExempt", "Selection", "hardness_check"]


def _without_hardness(
    ctx: Context, q: np.ndarray, d: np.ndarray, config: Config, exc: ConformanceFailure
) -> None:
    """The premise of every hardness verdict: the same case without hardness is right. If it is not,
    raise :class:`PremiseFailure` with the clause the ladder of :mod:`.checks` names."""
    plain = config.replace(hardness_mode=None, hardness_strength=0.0)
    if not adapter_is_right(ctx, q, d, plain)[0]:
        clause, why = blame(ctx, q, d, plain)
        raise PremiseFailure(
            clause, f"the same case without hardness is wrong: {why}", exc.detail, mismatch=exc.mismatch
        ) from None


def hardness_check(case: dict[str, Any], ctx: Context, default: str) -> None:
    """The reference comparison with the hardness attribution: first the premise (the same case
    without hardness, and every simpler variant but the hardness one, are right), then loss wrong:
    :func:`~.checks.diagnose_hardness`; loss right, a gradient wrong: HARD-5."""
    q, d, config = case["queries"], case["docs"], case["config"]
    expected = loss_and_grad(q, d, config)
    bounds = embedding_bounds(q, d, config, ctx.compute_dtype)
    out = ctx.embeddings(q, d, config)
    try:
        ctx.close(out.loss, expected.loss, bounds.loss, quantity="loss", clause=default)
    except ConformanceFailure as exc:
        if summed_over_queries(out, expected, bounds, ctx.dtype):
            why = "loss and gradients are N times the reference's: summed over queries, not averaged"
            raise ConformanceFailure("LOSS-1", f"{exc.detail}; {why}", mismatch=exc.mismatch) from None
        _premise(ctx, q, d, config, exc)
        clause, why = diagnose_hardness(case, ctx, default)
        if not why:
            raise
        raise ConformanceFailure(clause, f"{exc.detail}; diagnosis: {why}", mismatch=exc.mismatch) from None
    clause = "HARD-5" if config.hardness_active else default
    try:
        ctx.compare(out, expected, bounds, clause)
    except ConformanceFailure as exc:
        _premise(ctx, q, d, config, exc)
        if clause != "HARD-5" or exc.clause == "SCALE-2":  # dL/dscale alone: SCALE-2 (Context.compare)
            raise
        why = "the loss is within its bound, the gradient is not: a gradient flows through h"
        raise ConformanceFailure(clause, f"{exc.detail}; {why}", mismatch=exc.mismatch) from None


def _premise(ctx: Context, q: np.ndarray, d: np.ndarray, config: Config, exc: ConformanceFailure) -> None:
    """Every simpler variant but the hardness one is right, and so is the case without hardness."""
    check_ladder(ctx, q, d, config, exc, owns=("hardness",))
    if config.hardness_active:
        _without_hardness(ctx, q, d, config, exc)


def _needs_hardness(caps: Capabilities, min_k: int) -> str | None:
    if not caps.hardness_modes:
        return "a hardness mode"
    return claims(caps, min_k=min_k)


class PositiveExempt(Property):
    name = "hardness/positive_exempt"
    clauses = ("HARD-4", "HARD-5")
    summary = (
        "one query, hard negatives orthogonal to it (h = 0 on them): every mode and strength equals "
        "no hardness -- the positive never carries h"
    )

    def requires(self, caps: Capabilities) -> str | None:
        if caps.max_k == 1 and "doc_to_query" not in caps.directions:
            return "K >= 2 or doc_to_query (one query, K = 1, query_to_doc only: the loss is 0 for any h)"
        return _needs_hardness(caps, 1)

    def draw(self, data: Any, ctx: Context) -> dict[str, Any]:
        config = draw_config(data, ctx.caps, hardness=True)
        _, k, dim = draw_shape(data, ctx.caps, max_n=1, min_k=1 if "doc_to_query" in config.directions else 2)
        q, docs = draw_batch(
            data, 1, k, dim, dtype=ctx.dtype, compute_dtype=ctx.compute_dtype, similarity=config.similarity
        )
        docs = positive_probe(q[0], docs, ctx.dtype)
        if config.similarity == "cos":
            assume(not cos_eps_ambiguous(docs, ctx.compute_dtype))
        return {"queries": q, "docs": docs, "config": config}

    def check(self, case: dict[str, Any], ctx: Context) -> None:
        hardness_check(case, ctx, self.clause)


class Selection(Property):
    name = "hardness/selection"
    clauses = ("HARD-3", "HARD-5")
    summary = "N >= 2, K >= 2: each claimed hardness mode penalises exactly its entries (= reference)"

    def requires(self, caps: Capabilities) -> str | None:
        return _needs_hardness(caps, 2)

    def draw(self, data: Any, ctx: Context) -> dict[str, Any]:
        case = draw_embedding_case(data, ctx, config={"hardness": True}, min_k=2)
        assume(case["queries"].shape[0] >= 2)
        return case

    def check(self, case: dict[str, Any], ctx: Context) -> None:
        hardness_check(case, ctx, self.clause)
