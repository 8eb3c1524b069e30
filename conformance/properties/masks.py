"""Chapter "masks": masked entries contribute exactly nothing, and never a NaN (GRAD-2, MASK-*).

The check is metamorphic and precise. Pick one masked pair ``(a, v)`` -- the self pair of a
query_to_query row (MASK-QQ-1), the own positive in a doc_to_doc row (MASK-DD-1), an own hard
negative in a doc_to_doc row (MASK-DD-2). Move the vector ``v`` only along a direction ``b`` that is
orthogonal to every vector ``v`` meets in an *unmasked* entry (possible when ``D`` exceeds their
number). Then every unmasked similarity is unchanged, while the masked one moves:

* ``dot``: ``v -> v + t b``, the masked logit is pushed to ``M`` (beyond ``exp`` overflow of the
  dtype, and to 1e4 where the dtype allows: a ``-1e4`` additive mask leaks there);
* ``cos`` (own hard negative only: a self-similarity is always 1): ``v = a - r b -> a + r b``, a
  rotation that keeps ``||v||``, so the masked cosine swings while the unmasked ones stay.

A correct implementation's loss and gradients must change by what the exact reference changes (the
rounding of the perturbed input to the dtype moves unmasked entries by ~u, and a perturbed vector's
own gradient may move: that is the "explained" change), within the sum of the two tolerance
bounds. Anything more is the masked entry leaking.
Afterwards the perturbed result is also compared with the reference.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from infonce_spec.reference import loss_and_grad

from ..compare import ConformanceFailure
from ..protocol import Capabilities
from ..strategies import direction_sets, draw_config
from ..tolerances import cos_eps_ambiguous, embedding_bounds, finite_max, round_to_dtype
from .base import Context, Property, claims
from .checks import check_premise

__all__ = ["MaskDocToDocHardNegative", "MaskDocToDocPositive", "MaskQueryToQuerySelf", "masked_logit_targets"]


def masked_logit_targets(dtype: str) -> list[float]:
    """Masked-logit values that make ``exp`` overflow in ``dtype`` (and 1e4 where representable)."""
    overflow = 4 * math.log(finite_max(dtype))
    return [overflow, 1e4] if dtype in ("float64", "float32") else [overflow]


class _MaskProperty(Property):
    direction: ClassVar[str] = ""
    pair: ClassVar[str] = ""  # "self" or "hard_negative"
    weight = 0.6

    def requires(self, caps: Capabilities) -> str | None:
        if self.pair == "self":
            return claims(caps, directions=(self.direction,), similarity="dot", partition_mode="joint")
        return claims(caps, directions=(self.direction,), partition_mode="joint", min_k=2)

    def draw(self, data: Any, ctx: Context) -> dict[str, Any]:
        caps = ctx.caps
        extra = data.draw(direction_sets(caps.directions), label="other_directions")
        directions = tuple(sorted(set(extra) | {"query_to_doc", self.direction}))
        similarity = "dot" if self.pair == "self" else None
        config = draw_config(data, caps, directions=directions, partition_mode="joint", similarity=similarity)
        n = data.draw(st.integers(1, 3), label="N")
        k_min = 2 if self.pair == "hard_negative" else 1
        k_max = min(3, caps.max_k or 3)
        k = data.draw(st.integers(k_min, max(k_min, k_max)), label="K")
        g = data.draw(st.integers(0, n - 1), label="g (row of the masked pair)")
        if self.direction == "query_to_query":
            target, partner = g, None
        elif self.pair == "self":
            target, partner = n + g, None
        else:
            kk = data.draw(st.integers(1, k - 1), label="k (own hard negative column)")
            target, partner = n + kk * n + g, n + g
        rows = n * (k + 1)
        others = [i for i in range(rows) if i not in (target, partner)]
        d = len(others) + 1 + data.draw(st.integers(0, 2), label="D - constraints - 1")
        seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((rows, d))
        basis, _ = np.linalg.qr(x[others].T) if others else (np.zeros((d, 0)), None)

        def perp(v: np.ndarray) -> np.ndarray:
            return v - basis @ (basis.T @ v)

        scale = config.scale
        base, pert = x.copy(), x.copy()
        v = x[target]
        if partner is None:
            r = rng.standard_normal(d)
            b = perp(r)
            assume(np.linalg.norm(b) >= 1e-2 * np.linalg.norm(r))  # stated: b well outside span(S)
            b /= np.linalg.norm(b)
            m = data.draw(st.sampled_from(masked_logit_targets(ctx.compute_dtype)), label="masked_logit")
            beta = float(v @ b)
            disc = beta * beta - float(v @ v) + m / scale
            assume(m / scale > float(v @ v))
            pert[target] = v + (-beta + math.sqrt(disc)) * b
        else:
            p = x[partner]
            b = perp(p)
            assume(np.linalg.norm(b) >= 1e-2 * np.linalg.norm(p))
            b /= np.linalg.norm(b)
            if config.similarity == "dot":
                m = data.draw(st.sampled_from(masked_logit_targets(ctx.compute_dtype)), label="masked_logit")
                pert[target] = v + (m / scale - float(p @ v)) / float(p @ b) * b
            else:
                a = v - float(v @ b) * b
                radius = 2.0 * max(float(np.linalg.norm(a)), 1.0)
                base[target] = a - radius * b
                pert[target] = a + radius * b
        base, pert = round_to_dtype(base, ctx.dtype), round_to_dtype(pert, ctx.dtype)
        if config.similarity == "cos":
            assume(
                not cos_eps_ambiguous(base, ctx.compute_dtype)
                and not cos_eps_ambiguous(pert, ctx.compute_dtype)
            )
        pair = f"{self.direction} row g={g}, " + (
            "self entry" if partner is None else f"column (k={(target - n) // n}, j={g})"
        )
        return {
            "queries": base[:n],
            "docs": base[n:].reshape(k, n, d),
            "queries_perturbed": pert[:n],
            "docs_perturbed": pert[n:].reshape(k, n, d),
            "config": config,
            "pair": pair,
            "masked_logits": np.asarray(
                [_logit(base, target, partner, config), _logit(pert, target, partner, config)]
            ),
        }

    def check(self, case: dict[str, Any], ctx: Context) -> None:
        """The loss change first (it needs nothing but the mask: every unmasked logit stays put, so
        any other error cancels); then the premise (the unperturbed case is right); then the
        gradient changes and the perturbed result (they rely on the rest being right)."""
        config = case["config"]
        q0, d0, q1, d1 = case["queries"], case["docs"], case["queries_perturbed"], case["docs_perturbed"]
        out0, out1 = ctx.embeddings(q0, d0, config), ctx.embeddings(q1, d1, config)
        ref0, ref1 = loss_and_grad(q0, d0, config), loss_and_grad(q1, d1, config)
        b0, b1 = (
            embedding_bounds(q0, d0, config, ctx.compute_dtype),
            embedding_bounds(q1, d1, config, ctx.compute_dtype),
        )
        try:
            self._changes(case, ctx, (out0, out1), (ref0, ref1), (b0, b1), ("loss",))
        except ConformanceFailure as exc:
            if not np.isfinite(out0.loss):  # the unperturbed case, where nothing is pushed, is already wrong
                check_premise(ctx, q0, d0, config, "the unperturbed case, with a finite loss", exc)
            raise
        try:
            ctx.compare(out0, ref0, b0, self.clause)
        except ConformanceFailure as exc:
            check_premise(ctx, q0, d0, config, "the unperturbed case", exc)
            raise
        self._changes(case, ctx, (out0, out1), (ref0, ref1), (b0, b1), ("grad_queries", "grad_docs"))
        ctx.compare(out1, ref1, b1, self.clause)

    def _changes(
        self,
        case: dict[str, Any],
        ctx: Context,
        outs: tuple[Any, Any],
        refs: tuple[Any, Any],
        bounds: tuple[Any, Any],
        names: tuple[str, ...],
    ) -> None:
        """The adapter's change of each of ``names`` equals the exact change (what the unmasked
        entries explain), within the sum of both bounds."""
        (out0, out1), (ref0, ref1), (b0, b1) = outs, refs, bounds
        what = "the change of the exact result (what the unmasked entries explain)"
        try:
            for name in names:
                with np.errstate(invalid="ignore"):  # inf - inf: a NaN change, which close() rejects
                    change = np.asarray(getattr(out1, name)) - np.asarray(getattr(out0, name))
                explained = np.asarray(getattr(ref1, name)) - np.asarray(getattr(ref0, name))
                ctx.close(
                    change,
                    explained,
                    getattr(b0, name) + getattr(b1, name),
                    quantity=f"change of {name}",
                    clause=self.clause,
                    what=what,
                    magnitude=np.abs(np.asarray(getattr(ref0, name)))
                    + np.abs(np.asarray(getattr(ref1, name))),
                )
        except ConformanceFailure as exc:
            m0, m1 = case["masked_logits"]
            raise ConformanceFailure(
                self.clause,
                f"perturbing only the masked pair ({case['pair']}; its logit {m0:.4g} -> {m1:.4g}, every unmasked "
                f"logit unchanged by construction) changed the result beyond what the unmasked entries explain: "
                f"{exc.detail}",
                mismatch=exc.mismatch,
            ) from None


def _logit(x: np.ndarray, target: int, partner: int | None, config: Any) -> float:
    a, v = x[target], x[target if partner is None else partner]
    if config.similarity == "cos":
        a = a / max(np.linalg.norm(a), 1e-12)
        v = v / max(np.linalg.norm(v), 1e-12)
    return config.scale * float(a @ v)


class MaskQueryToQuerySelf(_MaskProperty):
    name = "masks/query_to_query_self"
    clauses = ("MASK-QQ-1", "GRAD-2")
    summary = "the self pair of a query_to_query row contributes nothing (dot, pushed past exp overflow)"
    direction = "query_to_query"
    pair = "self"


class MaskDocToDocPositive(_MaskProperty):
    name = "masks/doc_to_doc_own_positive"
    clauses = ("MASK-DD-1", "GRAD-2")
    summary = "a doc_to_doc row's own positive contributes nothing (dot, pushed past exp overflow)"
    direction = "doc_to_doc"
    pair = "self"


class MaskDocToDocHardNegative(_MaskProperty):
    name = "masks/doc_to_doc_own_hard_negative"
    clauses = ("MASK-DD-2", "GRAD-2")
    summary = "a doc_to_doc row's own hard negatives contribute nothing (dot past overflow; cos rotation)"
    direction = "doc_to_doc"
    pair = "hard_negative"
