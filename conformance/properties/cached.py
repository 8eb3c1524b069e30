"""Chapter "encoder and cache": a linear encoder checked end to end (GRAD-1, CACHE-1 .. CACHE-5).

The encoder is ``embeddings = x @ weight.T``; the reference knows dL/dweight in closed form
(:func:`~infonce_spec.reference.linear_encoder_grad`), and ``encoder/linear`` checks the adapter's
*uncached* path against it (GRAD-1). The cached (GradCache) properties are metamorphic: they compare
the cached path with the same adapter's uncached path (``mini_batch_size=None``) on the same steps,
within the sum of both sides' bounds -- for every mini-batch size including ones that do not divide
N and ones larger than N (CACHE-1), for upstream multipliers (CACHE-2), for two forwards followed by
two backwards (CACHE-4), and -- with dropout in front of the layer -- under the same seed (CACHE-3:
the second forward must replay the RNG of the first). So a loss that is wrong at level 1 fails the
reference properties and ``encoder/linear``, not CACHE-1 .. CACHE-4 (cached == uncached and
uncached == reference together give cached == reference).

CACHE-5 (loss-stage memory, a SHOULD) is a scaling law, so that no constant has to be guessed
(:class:`LossStageMemory`): at a fixed ``mini_batch_size`` m, the peak memory of one cached training
step (every tensor the adapter allocates, inputs and encoder included, all O(N)) must grow about
linearly when N grows by a factor G; a quadratic term (a full (N x N) mask, or every chunk's graph
kept until one backward) makes it grow like G^2. Failure when the growth exceeds G^1.25 (G = 8:
x13.5 against x8 for linear and x64 for quadratic; correct implementations measure N^1.00, the two
catalogue mutants N^1.68 and N^1.96); m = 1 and K = 1 keep the linear part small (query_to_doc, plus
doc_to_doc and a hardness mode where claimed: the code paths that build masks), so that a quadratic
term dominates already at N = 256. The meter (:mod:`.memory`) sees torch allocations only, so the
property needs ``Capabilities.torch_memory`` besides ``cached``. When it fails and the claim allows
hard negatives, the peak is measured once more at N2 with :data:`K_SCAN` documents per query, so
that the known mistakes can say which quadratic term it is (an N x N array hardly grows with K;
graphs kept alive grow linearly in it: :mod:`..mistakes.memory`).
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from infonce_spec.reference import Config, linear_encoder_grad

from ..compare import ConformanceFailure, PremiseFailure, fail
from ..mistakes import EncoderObservation, MemoryObservation
from ..protocol import Capabilities, DropoutCase, EncoderCase, EncoderGrads, EncoderStep
from ..strategies import draw_config, draw_embeddings
from ..tolerances import COS_EPS, encoder_bounds, encoder_condition, round_to_dtype
from .base import Context, Property, output_array
from .checks import check_premise
from .memory import peak_bytes

__all__ = [
    "CachedEqualsUncached",
    "EncoderReference",
    "LossStageMemory",
    "Reentrant",
    "RngReplay",
    "UpstreamLinearity",
    "call_encoder",
    "check_steps",
    "draw_encoder_inputs",
]

#: Stated conditioning limit of the encoder cases: max ||x|| ||W||_2 / ||x W^T|| over rows.
MAX_ENCODER_CONDITION = 100.0


def draw_encoder_inputs(
    data: Any,
    ctx: Context,
    n: int,
    k: int,
    config: Config,
    *,
    min_f: int = 1,
    max_f: int = 6,
    corners: bool = True,
) -> dict[str, np.ndarray]:
    """``x_queries`` (n, F), ``x_docs`` (k, n, F) and ``weight`` (D, F), rounded to the adapter's dtype.

    Rejected (stated conditions): rows whose embedding is ill-conditioned (see
    :data:`MAX_ENCODER_CONDITION`) and, for cos, embeddings whose norm is within a factor 2 of 1e-12.
    """
    d = data.draw(st.integers(1, 5), label="D")
    f = data.draw(st.integers(min_f, max_f), label="F")
    x = round_to_dtype(draw_embeddings(data, n * (k + 1), f, corners=corners, label="inputs"), ctx.dtype)
    w = round_to_dtype(draw_embeddings(data, d, f, corners=False, label="weight"), ctx.dtype)
    assume(encoder_condition(x, w) <= MAX_ENCODER_CONDITION)
    if config.similarity == "cos":
        norms = np.linalg.norm(x @ w.T, axis=1)
        assume(bool(np.all((norms == 0) | (norms < 0.5 * COS_EPS) | (norms > 2 * COS_EPS))))
    return {"x_queries": x[:n], "x_docs": x[n:].reshape(k, n, f), "weight": w}


def call_encoder(
    ctx: Context,
    weight: np.ndarray,
    steps: list[tuple[np.ndarray, np.ndarray, float]],
    config: Config,
    mini_batch_size: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run the adapter's encoder path; ``(losses, grad_weight)`` as float64."""
    case = EncoderCase(
        weight=weight.copy(),
        steps=tuple(EncoderStep(xq.copy(), xd.copy(), float(c)) for xq, xd, c in steps),
        config=config,
        mini_batch_size=mini_batch_size,
    )
    out = ctx.adapter.encoder(case)
    losses = output_array(list(out.losses), (len(steps),), "losses", "LOSS-1", "encoder")
    return losses, output_array(out.grad_weight, weight.shape, "grad_weight", "GRAD-1", "encoder")


def _steps(case: dict[str, Any], upstreams: list[float]) -> list[tuple[np.ndarray, np.ndarray, float]]:
    steps = [(case["x_queries"], case["x_docs"], upstreams[0])]
    for i in range(1, len(upstreams)):
        steps.append((case[f"x_queries_{i}"], case[f"x_docs_{i}"], upstreams[i]))
    return steps


def _encoder_premise(ctx: Context, case: dict[str, Any], exc: ConformanceFailure) -> None:
    """The premise of an encoder verdict: the loss stage alone (level 1, on the embeddings
    ``x @ weight.T`` of the first step, rounded to the adapter's dtype) is right."""
    w = case["weight"]
    q = round_to_dtype(case["x_queries"] @ w.T, ctx.dtype)
    d = round_to_dtype(case["x_docs"] @ w.T, ctx.dtype)
    check_premise(ctx, q, d, case["config"], "the same batch's embeddings at level 1", exc)


def _cache_premise(ctx: Context, case: dict[str, Any], exc: ConformanceFailure, *, one_step: bool) -> None:
    """The premise of a CACHE verdict on ``case``: the uncached path is right (against the closed
    form) and, for CACHE-2 .. CACHE-4 (``one_step``), the cached path equals it on the first step
    with upstream 1 and no dropout (CACHE-1). Raise :class:`PremiseFailure` if not."""
    plain = {**case, "mini_batch_size": None}
    try:
        check_steps(ctx, plain, [1.0], "GRAD-1")
    except ConformanceFailure as inner:
        _encoder_premise(ctx, case, inner)
        raise PremiseFailure(
            "GRAD-1", "the uncached path of the same case against the closed form", inner.detail
        ) from None
    if one_step:
        try:
            _check_against_uncached(ctx, case, [1.0], "CACHE-1")
        except ConformanceFailure as inner:
            premise = PremiseFailure(
                "CACHE-1", "the same case cached, one step, upstream 1, no dropout", inner.detail
            )
            premise.observed = getattr(inner, "observed", None)  # that case's cached outputs
            raise premise from None


def _draw_case(data: Any, ctx: Context, *, cached: bool) -> dict[str, Any]:
    config = draw_config(data, ctx.caps)
    n = data.draw(st.integers(1, 5), label="N")
    k_max = min(3, ctx.caps.max_k or 3)
    k = data.draw(st.integers(1, k_max), label="K")
    case: dict[str, Any] = {"config": config}
    case.update(draw_encoder_inputs(data, ctx, n, k, config))
    case["mini_batch_size"] = data.draw(st.integers(1, n + 2), label="mini_batch_size") if cached else None
    return case


def check_steps(ctx: Context, case: dict[str, Any], upstreams: list[float], clause: str) -> None:
    """The adapter's encoder steps of ``case`` (with its ``mini_batch_size``) against the closed form;
    a mismatch is a failure of ``clause``."""
    config, w, m = case["config"], case["weight"], case["mini_batch_size"]
    steps = _steps(case, upstreams)
    losses, grad = call_encoder(ctx, w, steps, config, m)
    expected_grad = np.zeros_like(w)
    grad_bound = 0.0
    for i, (xq, xd, c) in enumerate(steps):
        exp = linear_encoder_grad(xq, xd, w, config)
        bounds, g_bound = encoder_bounds(xq, xd, w, config, ctx.compute_dtype, encoder_dtype=ctx.dtype)
        ctx.close(losses[i], exp.loss, bounds.loss, quantity=f"loss of step {i}", clause=clause)
        expected_grad = expected_grad + c * exp.grad_weight
        grad_bound += abs(c) * g_bound
    ctx.close(grad, expected_grad, grad_bound, quantity="grad_weight", clause=clause)


def _check_against_uncached(ctx: Context, case: dict[str, Any], upstreams: list[float], clause: str) -> None:
    """The cached steps against the same adapter's uncached steps (metamorphic, ``clause``)."""
    config, w, m = case["config"], case["weight"], case["mini_batch_size"]
    steps = _steps(case, upstreams)
    losses, grad = call_encoder(ctx, w, steps, config, m)
    plain_losses, plain_grad = call_encoder(ctx, w, steps, config, None)
    what = "the same adapter uncached (mini_batch_size None)"
    grad_bound = 0.0
    try:
        for i, (xq, xd, c) in enumerate(steps):
            bounds, g_bound = encoder_bounds(xq, xd, w, config, ctx.compute_dtype, encoder_dtype=ctx.dtype)
            ctx.close(
                losses[i],
                plain_losses[i],
                2 * bounds.loss,
                quantity=f"cached loss of step {i}",
                clause=clause,
                what=what,
            )
            grad_bound += 2 * abs(c) * g_bound
        ctx.close(
            grad,
            plain_grad,
            grad_bound,
            quantity="cached grad_weight",
            clause=clause,
            what=what,
            magnitude=np.abs(grad) + np.abs(plain_grad),
        )
    except ConformanceFailure as exc:  # the cached outputs, for the known mistakes
        exc.observed = EncoderObservation(w, tuple(steps), config, m, EncoderGrads(list(losses), grad))
        raise


class EncoderReference(Property):
    name = "encoder/linear"
    clauses = ("GRAD-1", "LOSS-1")
    summary = "uncached linear-encoder loss and weight gradient equal the closed form"
    level = "encoder"
    weight = 0.8

    def requires(self, caps: Capabilities) -> str | None:
        return None if caps.encoder else "encoder"

    def draw(self, data: Any, ctx: Context) -> dict[str, Any]:
        return _draw_case(data, ctx, cached=False)

    def check(self, case: dict[str, Any], ctx: Context) -> None:
        try:
            check_steps(ctx, case, [1.0], self.clause)
        except ConformanceFailure as exc:
            _encoder_premise(ctx, case, exc)
            raise


class CachedEqualsUncached(Property):
    name = "cached/equals_uncached"
    clauses = ("CACHE-1",)
    summary = (
        "cached loss and weight gradient equal the adapter's own uncached ones for every mini_batch_size "
        "(1 .. N+2)"
    )
    level = "encoder"

    def requires(self, caps: Capabilities) -> str | None:
        return None if caps.cached else "cached"

    def draw(self, data: Any, ctx: Context) -> dict[str, Any]:
        return _draw_case(data, ctx, cached=True)

    def check(self, case: dict[str, Any], ctx: Context) -> None:
        try:
            _check_against_uncached(ctx, case, [1.0], self.clause)
        except ConformanceFailure as exc:
            _cache_premise(ctx, case, exc, one_step=False)
            raise


class UpstreamLinearity(CachedEqualsUncached):
    name = "cached/upstream_linearity"
    clauses = ("CACHE-2",)
    summary = "cached (c * loss).backward() gives the uncached weight gradient (c negative, zero, fractional)"
    weight = 0.6

    def draw(self, data: Any, ctx: Context) -> dict[str, Any]:
        case = _draw_case(data, ctx, cached=True)
        case["upstream"] = data.draw(
            st.one_of(st.sampled_from([2.0, -1.0, 0.0, 0.5]), st.floats(-10.0, 10.0)), label="upstream"
        )
        return case

    def check(self, case: dict[str, Any], ctx: Context) -> None:
        try:
            _check_against_uncached(ctx, case, [case["upstream"]], self.clause)
        except ConformanceFailure as exc:
            _cache_premise(ctx, case, exc, one_step=True)
            raise


class Reentrant(CachedEqualsUncached):
    name = "cached/reentrant"
    clauses = ("CACHE-4",)
    summary = "cached: two forwards then two backwards accumulate c1 g1 + c2 g2 as the uncached path does"
    weight = 0.6

    def draw(self, data: Any, ctx: Context) -> dict[str, Any]:
        case = _draw_case(data, ctx, cached=True)
        f = case["weight"].shape[1]
        n, k = case["x_queries"].shape[0], case["x_docs"].shape[0]
        x = round_to_dtype(draw_embeddings(data, n * (k + 1), f, label="inputs_step_2"), ctx.dtype)
        assume(encoder_condition(x, case["weight"]) <= MAX_ENCODER_CONDITION)
        if case["config"].similarity == "cos":
            norms = np.linalg.norm(x @ case["weight"].T, axis=1)
            assume(bool(np.all((norms == 0) | (norms < 0.5 * COS_EPS) | (norms > 2 * COS_EPS))))
        case["x_queries_1"], case["x_docs_1"] = x[:n], x[n:].reshape(k, n, f)
        case["upstreams"] = np.asarray(
            data.draw(st.lists(st.sampled_from([1.0, 2.0, -0.5]), min_size=2, max_size=2), label="upstreams")
        )
        return case

    def check(self, case: dict[str, Any], ctx: Context) -> None:
        try:
            _check_against_uncached(ctx, case, [float(c) for c in case["upstreams"]], self.clause)
        except ConformanceFailure as exc:
            _cache_premise(ctx, case, exc, one_step=True)
            raise


class RngReplay(Property):
    name = "cached/rng_replay"
    clauses = ("CACHE-3",)
    summary = "with dropout, cached == uncached under the same seed (the gradient forward replays the RNG)"
    level = "encoder"
    weight = 0.6

    def requires(self, caps: Capabilities) -> str | None:
        if not caps.cached:
            return "cached"
        return None if caps.dropout else "dropout"

    def draw(self, data: Any, ctx: Context) -> dict[str, Any]:
        config = draw_config(data, ctx.caps)
        n = data.draw(st.integers(2, 4), label="N")
        k = data.draw(st.integers(1, min(2, ctx.caps.max_k or 2)), label="K")
        case: dict[str, Any] = {"config": config}
        case.update(draw_encoder_inputs(data, ctx, n, k, config, min_f=3, corners=False))
        case["p"] = data.draw(st.sampled_from([0.5, 0.1]), label="p")
        case["seed"] = data.draw(st.integers(0, 2**31 - 1), label="seed")
        case["mini_batch_size"] = data.draw(st.integers(1, n + 1), label="mini_batch_size")
        return case

    def check(self, case: dict[str, Any], ctx: Context) -> None:
        try:
            self._replay(case, ctx)
        except ConformanceFailure as exc:
            _cache_premise(ctx, case, exc, one_step=True)
            raise

    def _replay(self, case: dict[str, Any], ctx: Context) -> None:
        config, w, p = case["config"], case["weight"], case["p"]
        results = []
        for m in (None, case["mini_batch_size"]):
            out = ctx.adapter.dropout_encoder(
                DropoutCase(
                    weight=w.copy(),
                    x_queries=case["x_queries"].copy(),
                    x_docs=case["x_docs"].copy(),
                    config=config,
                    p=p,
                    seed=int(case["seed"]),
                    mini_batch_size=m,
                )
            )
            loss = output_array(list(out.losses), (1,), "losses", "LOSS-1", "dropout_encoder")[0]
            grad = output_array(out.grad_weight, w.shape, "grad_weight", "GRAD-1", "dropout_encoder")
            results.append((float(loss), grad))
        # Dropout scales kept inputs by 1/(1-p): bound with the largest inputs it can produce.
        bounds, g_bound = encoder_bounds(
            case["x_queries"] / (1 - p),
            case["x_docs"] / (1 - p),
            w,
            config,
            ctx.compute_dtype,
            encoder_dtype=ctx.dtype,
        )
        what = "the same adapter uncached under the same seed"
        ctx.close(
            results[1][0],
            results[0][0],
            2 * bounds.loss,
            quantity="cached loss",
            clause=self.clause,
            what=what,
        )
        ctx.close(
            results[1][1],
            results[0][1],
            2 * g_bound,
            quantity="cached grad_weight",
            clause=self.clause,
            what=what,
        )


#: CACHE-5: N grows from N1 to N1 * GROWTH; the peak may grow at most GROWTH ** MAX_EXPONENT.
N1, GROWTH, MAX_EXPONENT = 32, 8, 1.25
#: CACHE-5: documents per query of the measurement that tells the known mistakes apart.
K_SCAN = 3


class LossStageMemory(Property):
    """CACHE-5 as a scaling law (see the module docstring)."""

    name = "cached/loss_stage_memory"
    clauses = ("CACHE-5",)
    summary = (
        f"cached peak memory grows ~linearly in N at fixed mini_batch_size (N x{GROWTH}: at most "
        f"x{GROWTH**MAX_EXPONENT:.1f}), i.e. O(m x C) not O(N x C); torch allocations only"
    )
    level = "encoder"
    weight = 0.05  # one example: draw() draws nothing

    def requires(self, caps: Capabilities) -> str | None:
        if not caps.cached:
            return "cached"
        return None if caps.torch_memory else "torch_memory"

    def draw(self, data: Any, ctx: Context) -> dict[str, Any]:
        """One fixed, mask-heavy config within the claims (nothing is drawn: hypothesis runs it once).

        The similarity does not change what is allocated (cos adds O(N) normalised copies)."""
        caps = ctx.caps
        directions, partition_mode = (
            caps.find_shapes(directions=("query_to_doc", "doc_to_doc"), partition_mode="joint")
            or caps.find_shapes(directions=("query_to_doc",), partition_mode="joint")
            or caps.shapes()
        )[0]
        modes = sorted(caps.hardness_modes)
        mode = "all_negatives" if "all_negatives" in modes else (modes[0] if modes else None)
        similarity = "cos" if "cos" in caps.similarities else sorted(caps.similarities)[0]
        config = Config(
            directions=directions,
            partition_mode=partition_mode,
            similarity=similarity,
            hardness_mode=mode,
            hardness_strength=1.0 if mode else 0.0,
        )
        return {"config": config, "mini_batch_size": 1, "seed": 0}

    def _case(self, case: dict[str, Any], n: int, dtype: str, k: int = 1) -> EncoderCase:
        rng = np.random.default_rng([int(case["seed"]), n, k])
        f = d = 2
        x = round_to_dtype(rng.standard_normal(((1 + k) * n, f)), dtype)
        w = round_to_dtype(np.eye(d, f) + 0.1 * rng.standard_normal((d, f)), dtype)
        step = EncoderStep(x[:n], x[n:].reshape(k, n, f), 1.0)
        return EncoderCase(w, (step,), case["config"], int(case["mini_batch_size"]))

    def check(self, case: dict[str, Any], ctx: Context) -> None:
        n1, n2 = N1, N1 * GROWTH
        p1, _ = peak_bytes(ctx.adapter, self._case(case, n1, ctx.dtype))
        p2, ops = peak_bytes(ctx.adapter, self._case(case, n2, ctx.dtype))
        if p1 == 0 or ops == 0:
            ctx.notes.append(f"{self.name}: no torch allocations seen; CACHE-5 not measured for this adapter")
            return
        growth = p2 / p1
        allowed = GROWTH**MAX_EXPONENT
        if growth > allowed:
            exponent = math.log(growth) / math.log(GROWTH)
            exc = fail(
                "CACHE-5",
                f"peak memory of a cached step grew from {p1} to {p2} bytes (x{growth:.1f}) when N grew "
                f"{n1} -> {n2} (x{GROWTH}) at mini_batch_size {case['mini_batch_size']}: N^{exponent:.2f}; "
                f"linear (O(mini_batch_size x C)) is x{GROWTH}, allowed x{allowed:.1f}, quadratic "
                f"(O(N x C)) x{GROWTH**2}",
            )
            k = K_SCAN if ctx.caps.max_k is None else min(K_SCAN, ctx.caps.max_k)
            if k > 1:  # which quadratic term: the peak at K documents per query (:mod:`..mistakes.memory`)
                with contextlib.suppress(Exception):  # at worst an explanation is lost, never the verdict
                    p3, _ = peak_bytes(ctx.adapter, self._case(case, n2, ctx.dtype, k))
                    exc.observed = MemoryObservation((n1, n2), k, (p1, p2, p3))
            raise exc
