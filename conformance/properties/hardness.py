"""Chapter "hardness": the hardness term h = alpha * stopgrad(s) and where it goes (HARD-2 .. HARD-5).

Every hardness check shares one attribution rule, :func:`hardness_check`:

* the loss within its bound but a gradient not, while the same case without hardness is right: the
  forward is right, so the gradient flows through ``h`` -- HARD-5 (no stop-gradient);
* the loss N times the reference's (and the gradients): LOSS-1 (as every reference comparison);
* the loss wrong: :func:`diagnose` runs the adapter on probes cut from the case, each against the
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
from ..tolerances import cos_eps_ambiguous, embedding_bounds, round_to_dtype
from .base import Context, Property, claims
from .checks import adapter_is_right, blame, draw_embedding_case, isolate, summed_over_queries

__all__ = ["PositiveExempt", "Selection", "diagnose", "hardness_check", "positive_probe"]

#: At N = 1 these modes select exactly the query's own hard negatives (HARD-3), K >= 2.
OWN_HARD_NEGATIVE_MODES = ("hard_negatives", "all_negatives")


def positive_probe(query: np.ndarray, docs: np.ndarray, dtype: str) -> np.ndarray:
    """Docs (K, 1, D) of one query: its positive kept, hard negatives orthogonal to it.

    ``(-q[1], q[0], 0, ...)`` has an exactly zero dot product with ``q`` (the two products are the
    same rounded number); the columns alternate its sign. D = 1: zero vectors (``s = 0`` for both
    similarities).
    """
    q = np.asarray(query, dtype=np.float64).reshape(-1)
    out = np.array(docs, dtype=np.float64, copy=True)
    v = np.zeros_like(q)
    if q.size >= 2:
        v[0], v[1] = -q[1], q[0]
    for k in range(1, out.shape[0]):
        out[k, 0] = v if k % 2 else -v
    return round_to_dtype(out, dtype)


def _loss_ok(ctx: Context, q: np.ndarray, d: np.ndarray, config: Config, *, grads: bool = False) -> bool:
    """The adapter's loss (and with ``grads`` its gradients) on ``(q, d)`` are within their bounds of the
    reference (a probe: no statistics)."""
    return adapter_is_right(ctx, q, d, config, grads=grads)[0]


def _hardness_only(ctx: Context, q: np.ndarray, d: np.ndarray, config: Config) -> bool:
    """The adapter is wrong on ``(q, d)`` with ``config``'s hardness and right without it."""
    plain = config.replace(hardness_mode=None, hardness_strength=0.0)
    return not _loss_ok(ctx, q, d, config) and _loss_ok(ctx, q, d, plain)


def _visible(config: Config, k: int) -> bool:
    """Whether a positive carrying h changes the loss of a one-query case (K = 1, only query_to_doc:
    the loss is logsumexp([p + h]) - (p + h) = 0 for any h)."""
    return k >= 2 or "doc_to_query" in config.directions


def _without_hardness(
    ctx: Context, q: np.ndarray, d: np.ndarray, config: Config, exc: ConformanceFailure
) -> None:
    """The premise of every hardness verdict: the same case without hardness is right. If it is not,
    raise :class:`PremiseFailure` with the clause the ladder of :mod:`.checks` names."""
    plain = config.replace(hardness_mode=None, hardness_strength=0.0)
    if not _loss_ok(ctx, q, d, plain, grads=True):
        clause, why = blame(ctx, q, d, plain)
        raise PremiseFailure(
            clause, f"the same case without hardness is wrong: {why}", exc.detail, mismatch=exc.mismatch
        ) from None


def diagnose(case: dict[str, Any], ctx: Context, default: str) -> tuple[str, str]:
    """(clause, why) for a case whose loss is wrong and right without hardness (module docstring)."""
    q, d, config = case["queries"], case["docs"], case["config"]
    if not config.hardness_active:
        return default, ""
    k, n, _ = d.shape
    cos = config.similarity == "cos"
    informative = True
    for g in range(n):
        qg = q[g : g + 1]
        probe = positive_probe(qg[0], d[:, g : g + 1], ctx.dtype)
        if not _visible(config, k) or (cos and cos_eps_ambiguous(probe, ctx.compute_dtype)):
            informative = False
        elif _hardness_only(ctx, qg, probe, config):
            return "HARD-4", (
                f"query {g} alone with hard negatives orthogonal to it (h = 0 on each) still differs: "
                "the positive carries h"
            )
    modes = [m for m in OWN_HARD_NEGATIVE_MODES if m in ctx.caps.hardness_modes]
    if config.hardness_mode in OWN_HARD_NEGATIVE_MODES:
        modes = [config.hardness_mode]
    if k < 2 or not modes:
        informative = False
    else:
        value = config.replace(hardness_mode=modes[0])
        for g in range(n):
            if _hardness_only(ctx, q[g : g + 1], d[:, g : g + 1], value):
                return "HARD-2", (
                    f"query {g} alone with its own documents (mode {modes[0]!r}: h on its own hard "
                    "negatives only) differs: the value of h (alpha * s, not times scale)"
                )
    if informative and n >= 2:
        return "HARD-3", (
            "every query alone is right (positive exempt, value of h right), the batch is not: the "
            f"entries mode {config.hardness_mode!r} selects"
        )
    return default, ""


def hardness_check(case: dict[str, Any], ctx: Context, default: str) -> None:
    """The reference comparison with the hardness attribution: first the premise (the same case
    without hardness, and every simpler variant but the hardness one, are right), then loss wrong:
    :func:`diagnose`; loss right, a gradient wrong: HARD-5."""
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
        clause, why = diagnose(case, ctx, default)
        if not why:
            raise
        raise ConformanceFailure(clause, f"{exc.detail}; diagnosis: {why}", mismatch=exc.mismatch) from None
    clause = "HARD-5" if config.hardness_active else default
    try:
        ctx.compare(out, expected, bounds, clause)
    except ConformanceFailure as exc:
        _premise(ctx, q, d, config, exc)
        if clause != "HARD-5":
            raise
        why = "the loss is within its bound, the gradient is not: a gradient flows through h"
        raise ConformanceFailure(clause, f"{exc.detail}; {why}", mismatch=exc.mismatch) from None


def _premise(ctx: Context, q: np.ndarray, d: np.ndarray, config: Config, exc: ConformanceFailure) -> None:
    """Every simpler variant but the hardness one is right, and so is the case without hardness."""
    found = isolate(ctx, q, d, config)
    if found is not None and found[0].feature != "hardness":
        variant, clause = found
        raise PremiseFailure(
            clause,
            f"the same case is wrong already with {variant.description}",
            exc.detail,
            mismatch=exc.mismatch,
        ) from None
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
