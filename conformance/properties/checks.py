"""Checks the chapters share: drawing a level-1 case, the reference comparison, and the premise ladder.

This is a helper module, not a chapter (it registers no property).

**The premise ladder** (spec §15.1). Before a property blames its own clause on a case, it asks
whether the same case is already wrong in a *simpler variant*, each with one feature at most on top
of the plain ``query_to_doc`` loss (:func:`simpler_variants`), simplest first:

1. ``query_to_doc`` alone, ``joint``, no hardness (QD-1; LOSS-1 when the result is N times the
   reference's);
2. ``query_to_doc`` plus each other selected direction, ``joint``, no hardness (QQ-1, DQ-1, DD-1);
3. the selected directions ``per_direction``, no hardness (PART-3), or grouped ``per_anchor`` when
   that makes more than one group (PART-5);
4. all the case's options together without hardness (the combination: PART-2, PART-3 or PART-5);
5. ``query_to_doc`` alone with the case's hardness, then the whole case with it (HARD-2 .. HARD-5,
   refined by the hardness probes).

:func:`isolate` returns the first variant the adapter gets wrong. A property that owns that
variant's feature blames its own clause; otherwise the case is evidence about the simpler rule and
the property raises :class:`~..compare.PremiseFailure` with that rule's clause. Every variant is
cheap (the same arrays, fewer options) and is only run once a check has failed, so a passing run
pays nothing for it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from hypothesis import assume

from infonce_spec.clauses import spec_order
from infonce_spec.reference import Config, loss_and_grad
from infonce_spec.vocabulary import DIRECTION_SPECS

from ..compare import ConformanceFailure, PremiseFailure, check_close
from ..mistakes import explain
from ..strategies import draw_batch, draw_config, draw_shape
from ..tolerances import (
    OUTPUT_ROUNDING,
    UNIT_ROUNDOFF,
    Bounds,
    cos_eps_ambiguous,
    embedding_bounds,
    finite_max,
    round_to_dtype,
)
from .base import Context, Outputs

__all__ = [
    "Variant",
    "adapter_is_right",
    "assume_representable",
    "blame",
    "check_ladder",
    "check_premise",
    "diagnose_hardness",
    "draw_embedding_case",
    "generic_batch",
    "generic_like",
    "isolate",
    "max_logit",
    "moderate_case",
    "positive_probe",
    "reference_check",
    "simpler_variants",
    "summed_over_queries",
]

#: The clause that defines each partition mode's grouping (PART-2, PART-3, PART-5).
PARTITION_CLAUSES: dict[str, str] = {"joint": "PART-2", "per_direction": "PART-3", "per_anchor": "PART-5"}

#: The clause a wrong variant is filed under, by the feature it adds to the plain loss: a direction's
#: row clause (from the vocabulary), a partition mode's, hardness (refined by the hardness probes).
FEATURE_CLAUSES: dict[str, str] = {
    **{name: spec.clause for name, spec in DIRECTION_SPECS.items()},
    **PARTITION_CLAUSES,
    "hardness": "HARD-2",
    "combination": "PART-2",
}


#: Variants that change the case's inputs, not its configuration: their description is the reason.
INPUT_FEATURES = ("large logits", "rows near the cos floor", "hard-negative columns", "known mistake")


@dataclasses.dataclass(frozen=True)
class Variant:
    """One rung of the ladder: the feature it adds to the plain loss, in words, and its config."""

    feature: str
    description: str
    config: Config

    @property
    def why(self) -> str:
        """Why a case on which this rung is wrong is evidence about the rung's rule, in words."""
        if self.feature in INPUT_FEATURES:
            return self.description
        return f"the same case is wrong already with {self.description}"


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


def adapter_is_right(
    ctx: Context,
    q: np.ndarray,
    d: np.ndarray,
    config: Config,
    *,
    grads: bool = True,
    expected_config: Config | None = None,
) -> tuple[bool, Outputs, Any, Bounds]:
    """Whether the adapter's loss (and with ``grads`` its gradients) on ``(q, d, config)`` are within
    their bounds of the reference (on ``expected_config`` if given: a probe of what the adapter
    computes instead) -- a probe: no margin statistics. Also returns what was compared."""
    target = config if expected_config is None else expected_config
    expected = loss_and_grad(q, d, target)
    bounds = embedding_bounds(q, d, target, ctx.compute_dtype)
    out = ctx.embeddings(q, d, config)
    u = UNIT_ROUNDOFF[ctx.dtype]
    try:
        check_close(out.loss, expected.loss, bounds.loss, quantity="loss", clause="")
        if grads:
            for got, exact, bound in (
                (out.grad_queries, expected.grad_queries, bounds.grad_queries),
                (out.grad_docs, expected.grad_docs, bounds.grad_docs),
            ):
                extra = OUTPUT_ROUNDING * u * np.abs(np.asarray(exact, dtype=np.float64))
                check_close(got, exact, bound + extra, quantity="grad", clause="")
    except ConformanceFailure:
        return False, out, expected, bounds
    return True, out, expected, bounds


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


def diagnose_hardness(case: dict[str, Any], ctx: Context, default: str) -> tuple[str, str]:
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


#: The scale of the moderate version of a case: small logits, but not 1 (a scale of 1 hides every
#: error in where the scale goes, e.g. a hardness term multiplied by it).
MODERATE_SCALE = 2.0


def moderate_case(
    q: np.ndarray, d: np.ndarray, config: Config, dtype: str
) -> tuple[np.ndarray, np.ndarray, Config]:
    """The same case at moderate logits: the scale at most :data:`MODERATE_SCALE` and, for dot, every
    row shrunk alike so that every logit ``scale * s`` is at most 8 in size (rounded to ``dtype``)."""
    scale = min(config.scale, MODERATE_SCALE)
    moderate = dataclasses.replace(config, scale=scale)
    if config.similarity == "dot":
        x = np.concatenate([q, d.reshape(-1, q.shape[1])])
        top = scale * float(np.max(np.abs(x @ x.T), initial=0.0))
        if top > 8.0:
            factor = np.sqrt(8.0 / top)
            q, d = round_to_dtype(q * factor, dtype), round_to_dtype(d * factor, dtype)
    return q, d, moderate


#: Logits beyond this size make a case "large" (exp(20) ~ 5e8): a reference comparison that fails
#: there first checks the same case at moderate logits (NUM-1 is about exactly that).
LARGE_LOGIT = 20.0


def max_logit(q: np.ndarray, d: np.ndarray, config: Config) -> float:
    """The largest ``|scale * s|`` between any two rows of the case (hardness aside)."""
    x = np.concatenate([q, d.reshape(-1, q.shape[1])]).astype(np.float64)
    if config.similarity == "cos":
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return config.scale * float(np.max(np.abs(x @ x.T), initial=0.0))


def simpler_variants(config: Config) -> list[Variant]:
    """The ladder for ``config``, simplest first (see the module docstring), without repeats. A rung
    may be ``config`` itself (a case with one feature at most is its own rung): its failure is that
    feature's."""
    plain = dataclasses.replace(
        config,
        directions=("query_to_doc",),
        partition_mode="joint",
        hardness_mode=None,
        hardness_strength=0.0,
    )
    rungs = [Variant("query_to_doc", "query_to_doc alone, joint, no hardness", plain)]
    for direction in config.directions:
        if direction != "query_to_doc":
            rungs.append(
                Variant(
                    direction,
                    f"query_to_doc + {direction}, joint, no hardness",
                    dataclasses.replace(plain, directions=("query_to_doc", direction)),
                )
            )
    if config.partition_mode != "joint" and len(config.partition_groups) > 1:  # per_direction, per_anchor
        rungs.append(
            Variant(
                config.partition_mode,
                f"{' + '.join(config.directions)}, {config.partition_mode}, no hardness",
                dataclasses.replace(config, hardness_mode=None, hardness_strength=0.0),
            )
        )
    unhard = dataclasses.replace(config, hardness_mode=None, hardness_strength=0.0)
    rungs.append(Variant("combination", "all the case's options together, no hardness", unhard))
    if config.hardness_active:
        value = f"hardness {config.hardness_mode!r} (alpha = {config.hardness_strength:g})"
        rungs.append(
            Variant(
                "hardness",
                f"query_to_doc alone, joint, {value}",
                dataclasses.replace(
                    plain, hardness_mode=config.hardness_mode, hardness_strength=config.hardness_strength
                ),
            )
        )
        rungs.append(Variant("hardness", f"the case's {value} on top of its other options", config))
    seen: list[Config] = []
    out = []
    for rung in rungs:
        if rung.config not in seen:
            seen.append(rung.config)
            out.append(rung)
    return out


def _variant_clause(
    ctx: Context, q: np.ndarray, d: np.ndarray, variant: Variant, out: Outputs, expected: Any, bounds: Bounds
) -> str:
    """The clause a wrong rung blames: its feature's; the plain loss N times too large is LOSS-1; the
    hardness rung is refined by the hardness probes (:func:`diagnose_hardness`; loss right and a
    gradient wrong: HARD-5)."""
    if variant.feature == "query_to_doc" and summed_over_queries(out, expected, bounds, ctx.dtype):
        return "LOSS-1"
    if variant.feature == "combination":
        return PARTITION_CLAUSES[variant.config.partition_mode]
    if variant.feature == "hardness":
        if adapter_is_right(ctx, q, d, variant.config, grads=False)[0]:
            return "HARD-5"
        return diagnose_hardness({"queries": q, "docs": d, "config": variant.config}, ctx, "HARD-2")[0]
    return FEATURE_CLAUSES[variant.feature]


def isolate(ctx: Context, q: np.ndarray, d: np.ndarray, config: Config) -> tuple[Variant, str] | None:
    """The simplest variant of ``(q, d, config)`` the adapter gets wrong, with the clause it blames,
    or ``None`` when every variant is right (the case itself is right).

    Inputs first: a case with large logits whose moderate version is right needs its large logits
    to be wrong (NUM-1); a cos case with rows near the floor, wrong at moderate logits and right
    there with those rows at unit norm, needs those rows (SIM-1 when the loss is wrong, GRAD-3 when
    only a gradient is). Then the rungs of :func:`simpler_variants` the adapter claims, simplest
    first. The first claimed rung has nothing claimed below it to step down to (an exact claim), and
    a rung that is the case's own configuration adds several features at once: their failure is
    refined by varying the *inputs* within the claim (:func:`refine_within_claim`)."""
    if adapter_is_right(ctx, q, d, config)[0]:
        return None  # the loss and the embedding gradients are right (dL/dscale is SCALE-2's alone)
    if _needs_large_logits(ctx, q, d, config):
        return Variant("large logits", LARGE_ONLY, config), "NUM-1"
    floor = _needs_floor_rows(ctx, q, d, config)
    if floor is not None:
        return floor
    first = True
    for variant in simpler_variants(config):
        if ctx.caps.claims_config(variant.config) is not None:
            continue  # an unclaimed rung is never run (exact claims): the next claimed one decides
        ok, out, expected, bounds = adapter_is_right(ctx, q, d, variant.config)
        if not ok:
            if (first or _same_shape(variant.config, config)) and variant.feature != "hardness":
                refined = refine_within_claim(ctx, q, d, variant, out)
                if refined is not None:
                    return refined
            return variant, _variant_clause(ctx, q, d, variant, out, expected, bounds)
        first = False
    return None


def _same_shape(a: Config, b: Config) -> bool:
    """The same directions and partition mode: a rung that is the case's own claimed configuration,
    whose several features no claimed rung separates (e.g. ``clip_like() | infonce()``: after
    ``query_to_doc`` alone, ``doc_to_query`` and ``per_direction`` come in one rung)."""
    return set(a.directions) == set(b.directions) and a.partition_mode == b.partition_mode


#: Rows whose norm is below this are near the cos floor (SIM-1's 1e-12, and the floors that
#: implementations put elsewhere: 1e-6 on the norm, the float eps on the squared norm).
NEAR_FLOOR = 1e-6


def unit_case(x: np.ndarray, dtype: str) -> np.ndarray:
    """``x`` with every row of norm below :data:`NEAR_FLOOR` (the cos eps regime) replaced by a unit
    row: its own direction, or the first axis for a zero row."""
    out = np.array(x, dtype=np.float64, copy=True)
    flat = out.reshape(-1, out.shape[-1])
    for row in flat:
        norm = float(np.linalg.norm(row))
        if norm < NEAR_FLOOR:
            if norm > 0.0:
                row /= norm
            else:
                row[:] = 0.0
                row[0] = 1.0
    return round_to_dtype(out, dtype)


FLOOR_ONLY = "the same case at moderate logits is wrong, and right with its rows near the cos floor rescaled to unit norm"


def _needs_floor_rows(
    ctx: Context, q: np.ndarray, d: np.ndarray, config: Config
) -> tuple[Variant, str] | None:
    """SIM-1 or GRAD-3 when a cos case has rows near the floor, is wrong at moderate logits, and is
    right at moderate logits with those rows at unit norm -- and the adapter is right on a
    :func:`generic_like` of the configuration (no row near the floor), so that a unit version that
    is right by accident (parallel rows, D = 1) proves nothing. Moderate logits first: at scale 20 a
    unit-row version can hide any error behind ``exp(-40)``."""
    if config.similarity != "cos":
        return None
    x = np.concatenate([q, d.reshape(-1, q.shape[1])])
    if not bool(np.any(np.linalg.norm(x, axis=1) < NEAR_FLOOR)):
        return None
    qm, dm, moderate = moderate_case(q, d, config, ctx.dtype)
    if adapter_is_right(ctx, qm, dm, moderate)[0]:
        return None  # the moderate version says nothing about the floor
    if not adapter_is_right(ctx, unit_case(qm, ctx.dtype), unit_case(dm, ctx.dtype), moderate)[0]:
        return None
    gq, gd = generic_like(q, d, ctx.dtype)
    if not adapter_is_right(ctx, gq, gd, moderate)[0]:
        return None  # wrong without any row near the floor: the unit version was right by accident
    loss_right = adapter_is_right(ctx, qm, dm, moderate, grads=False)[0]
    if loss_right and q.shape[1] == 1:
        return (
            None  # D = 1: a cos gradient is 0 at every unit row, so the unit version hides any gradient error
        )
    return Variant("rows near the cos floor", FLOOR_ONLY, config), "GRAD-3" if loss_right else "SIM-1"


#: The rules about hard-negative columns (K >= 2), by the direction that reads them: a case wrong
#: with K >= 2 and right with its positives alone (K = 1) breaks one of these.
HARD_NEGATIVE_CLAUSES: dict[str, str] = {
    "doc_to_doc": "MASK-DD-2",
    "doc_to_query": "DQ-1",
    "query_to_query": "QD-1",
    "query_to_doc": "QD-1",
}


def refine_within_claim(
    ctx: Context, q: np.ndarray, d: np.ndarray, variant: Variant, out: Outputs
) -> tuple[Variant, str] | None:
    """A wrong first claimed rung, refined by its inputs (the rung itself stays claimed):

    * with K >= 2, the same case with its positives alone (K = 1) right: the error is about the
      hard-negative columns, a rule of :data:`HARD_NEGATIVE_CLAUSES` among the rung's directions;
    * the known mistakes (:mod:`~..mistakes`) whose outputs reproduce the adapter's on the case
      name the clause when they all break one (they say what the implementation computes instead,
      which no input variation within the claim may separate); when none or several clauses
      match, the hard-negative rule of the rung's most specific direction (the last in the spec's
      order), else the rung's own clause.

    A shrunk case is often degenerate (D = 1: every cos gradient is 0 at a unit row and many
    mistakes coincide; N = 1); when it decides nothing, the same is asked of a
    :func:`generic_like` of the same configuration at a moderate scale and the same K (N >= 2,
    D >= 4, no two rows alike) on which the adapter is wrong too. ``None`` when nothing refines the rung (the caller files it under the
    rung's own clause)."""
    found = _refine(ctx, q, d, variant, out)
    n, dim = q.shape
    if found is not None or (dim >= GENERIC_D and n >= GENERIC_N):
        return found
    gq, gd = generic_like(q, d, ctx.dtype)
    generic = dataclasses.replace(variant, config=moderate_case(gq, gd, variant.config, ctx.dtype)[2])
    ok, gout, _, _ = adapter_is_right(ctx, gq, gd, generic.config)
    if ok:
        return None
    found = _refine(ctx, gq, gd, generic, gout)
    if found is None:
        return None
    rung, clause = found
    why = (
        f"on a generic batch of the same configuration and K (N = {gq.shape[0]}, D = {gq.shape[1]}, "
        f"scale {generic.config.scale:g}), {rung.why}"
    )
    return Variant(rung.feature, why, rung.config), clause


#: The smallest N and dimension of a :func:`generic_like` batch.
GENERIC_N, GENERIC_D = 2, 4


def generic_batch(
    q_shape: tuple[int, ...], d_shape: tuple[int, ...], dtype: str
) -> tuple[np.ndarray, np.ndarray]:
    """A batch of the given shapes whose rows are all different (standard normal, seed 0, rounded
    to ``dtype``): every similarity differs, no row is zero, cos gradients are not 0."""
    rng = np.random.default_rng(0)
    return round_to_dtype(rng.standard_normal(q_shape), dtype), round_to_dtype(
        rng.standard_normal(d_shape), dtype
    )


def generic_like(q: np.ndarray, d: np.ndarray, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """A :func:`generic_batch` with the case's K, and N and D at least :data:`GENERIC_N` and
    :data:`GENERIC_D`: where a shrunk case (D = 1, N = 1) is too degenerate to decide anything."""
    n, dim = max(q.shape[0], GENERIC_N), max(q.shape[1], GENERIC_D)
    return generic_batch((n, dim), (d.shape[0], n, dim), dtype)


def _refine(
    ctx: Context, q: np.ndarray, d: np.ndarray, variant: Variant, out: Outputs
) -> tuple[Variant, str] | None:
    """:func:`refine_within_claim` on the case itself."""
    config = variant.config
    k = d.shape[0]
    candidates: list[str] | None = None
    why = ""
    if k >= 2 and _informative(q, d[:1], config) and adapter_is_right(ctx, q, d[:1], config)[0]:
        candidates = sorted({HARD_NEGATIVE_CLAUSES[x] for x in config.directions}, key=spec_order)
        why = (
            f"the same case is right with its positives alone (K = 1; {variant.description}): "
            "the error is about the hard-negative columns"
        )
    matched = known_mistake_clauses(ctx, q, d, config, out)
    if len(matched) == 1:
        (clause,) = matched
        names = ", ".join(sorted(matched[clause]))
        known = f"its outputs are those of a known mistake ({names})"
        return Variant("known mistake", f"{why}; {known}" if why else known, config), clause
    if candidates is not None:
        return Variant("hard-negative columns", why, config), candidates[-1]
    return None


def _informative(q: np.ndarray, d: np.ndarray, config: Config) -> bool:
    """Whether a variant can show an error: its exact gradients are not all zero (e.g. N = 1, K = 1:
    every row holds the positive alone, the loss is 0 whatever the partition, and sums and means
    agree)."""
    expected = loss_and_grad(q, d, config)
    return bool(np.any(expected.grad_queries != 0) or np.any(expected.grad_docs != 0))


def known_mistake_clauses(
    ctx: Context, q: np.ndarray, d: np.ndarray, config: Config, out: Outputs
) -> dict[str, list[str]]:
    """The clauses of the known mistakes that reproduce ``out`` (the adapter's outputs on the case),
    each with the mistakes' ids; empty when none does."""
    found: dict[str, list[str]] = {}
    for match in explain([(q, d, config, out)], dtype=ctx.dtype, compute_dtype=ctx.compute_dtype):
        found.setdefault(match.mistake.clause, []).append(match.id)
    return found


LARGE_ONLY = "the same case at moderate logits is right: the error needs large logits"


def _needs_large_logits(ctx: Context, q: np.ndarray, d: np.ndarray, config: Config) -> bool:
    """Whether the case has large logits and the adapter is right on its moderate version."""
    if max_logit(q, d, config) <= LARGE_LOGIT:
        return False
    qm, dm, moderate = moderate_case(q, d, config, ctx.dtype)
    return adapter_is_right(ctx, qm, dm, moderate)[0]


def blame(ctx: Context, q: np.ndarray, d: np.ndarray, config: Config) -> tuple[str, str]:
    """``(clause, why)`` for a case the adapter gets wrong: NUM-1 when only its large logits make it
    wrong, else the simplest wrong variant's clause (see :func:`isolate`)."""
    found = isolate(ctx, q, d, config)
    if found is not None:
        variant, clause = found
        return clause, variant.why
    return PARTITION_CLAUSES[config.partition_mode], "every variant is right on its own; the case is not"


def check_premise(
    ctx: Context, q: np.ndarray, d: np.ndarray, config: Config, premise: str, failure: ConformanceFailure
) -> None:
    """Raise :class:`PremiseFailure` if the adapter is wrong on ``(q, d, config)`` -- the case with the
    property's own feature switched off, described by ``premise`` -- carrying the clause
    :func:`blame` names; return if it is right (the property may then raise ``failure``)."""
    ok, _, _, _ = adapter_is_right(ctx, q, d, config)
    if ok:
        return
    clause, why = blame(ctx, q, d, config)
    raise PremiseFailure(clause, f"{premise}: {why}", failure.detail, mismatch=failure.mismatch) from None


def check_ladder(
    ctx: Context,
    q: np.ndarray,
    d: np.ndarray,
    config: Config,
    failure: ConformanceFailure,
    *,
    owns: tuple[str, ...],
) -> None:
    """Raise :class:`PremiseFailure` if the first wrong rung of the ladder (:func:`isolate`) has a
    feature the property does not ``own``; return if it owns it (or no rung is wrong)."""
    found = isolate(ctx, q, d, config)
    if found is not None and found[0].feature not in owns:
        variant, clause = found
        raise PremiseFailure(clause, variant.why, failure.detail, mismatch=failure.mismatch) from None


def reference_check(
    case: dict[str, Any],
    ctx: Context,
    clause: str,
    *,
    owns: tuple[str, ...] = (),
    scale_grad: bool = False,
) -> None:
    """The adapter's loss and gradients against :func:`loss_and_grad` on the same inputs.

    On a mismatch: a result N times the reference's (N >= 2) is LOSS-1; otherwise the premise
    ladder runs on the same case. The first wrong simpler variant decides: one whose feature the
    property ``owns`` (or none at all: the combination) is the property's own ``clause``; any other
    is a :class:`PremiseFailure` with that variant's clause.
    """
    q, d, config = case["queries"], case["docs"], case["config"]
    expected = loss_and_grad(q, d, config)
    bounds = embedding_bounds(q, d, config, ctx.compute_dtype)
    out = ctx.embeddings(q, d, config)
    try:
        ctx.compare(out, expected, bounds, clause, scale_grad=scale_grad)
    except ConformanceFailure as exc:
        if exc.clause != "LOSS-1" and summed_over_queries(out, expected, bounds, ctx.dtype):
            n = q.shape[0]
            why = f"loss and gradients are {n} (= N) times the reference's: summed over queries, not averaged"
            raise ConformanceFailure("LOSS-1", f"{exc.detail}; {why}", mismatch=exc.mismatch) from None
        if scale_grad:
            if adapter_is_right(ctx, q, d, config)[0]:
                raise  # the loss and gradients are right: only dL/dscale is wrong
            blamed, why = blame(ctx, q, d, config)
            raise PremiseFailure(
                blamed,
                f"the same case's loss and gradients are wrong: {why}",
                exc.detail,
                mismatch=exc.mismatch,
            ) from None
        check_ladder(ctx, q, d, config, exc, owns=owns)
        raise
