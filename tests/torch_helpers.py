"""Shared helpers of the ``tests/test_torch_*.py`` files: strategies, the error model, comparisons.

The error model (derived in docs/torch.md, "Tolerances") bounds how far a correct implementation
that runs the loss stage in precision ``u`` (float32: 2**-24, float64: 2**-53) may land from the
exact float64 reference, given the *same* input values (low-precision inputs are compared against
the reference evaluated on their exact float64 upcast, so input rounding is not an error):

* similarity error ``ds``: cos ``3 * gamma(D + 2)``; dot ``gamma(D) * R**2`` (R = largest norm);
* logit error ``dz = (scale + alpha) * ds + 2u * Zmax`` with ``Zmax = (scale + alpha) * S``,
  ``S = 1`` (cos) or ``R**2`` (dot);
* loss: ``2 * (2 dz + 5u Zmax + gamma(M + 3) + gamma(B) (2 Zmax + log M))`` (M candidates/row);
* gradients, in the weighted norm ``sum_x w_x ||grad_x - ref_x||_2`` (``w_x = ||x||`` for cos, 1
  for dot): ``2 * 2J (eps_p + 2 eps_J + 2 gamma(M))`` with ``J = scale`` (cos) or ``scale * R``
  (dot), ``eps_p = exp(2 dz + 4u Zmax + gamma(M + 2)) - 1`` (softmax relative error) and
  ``eps_J = 4 gamma(D + 3)``; plus ``u_in * sum_x w_x ||ref_x||`` when the gradient is rounded to
  a lower input precision (bf16, fp16) and, for fp16, ``sum_x w_x sqrt(D) 2**-25`` for subnormals.

The leading factor 2 covers second-order terms. The weighted norm is a *sum* over vectors, so it
is stricter than any per-vector check against the same bound.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

__all__ = [
    "DIRECTIONS",
    "DTYPES",
    "Case",
    "assert_within",
    "cases",
    "configs",
    "embeddings",
    "error_bounds",
    "hyp_settings",
    "weighted_error",
]

DIRECTIONS = ("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc")
HARDNESS = (None, "in_batch_negatives", "hard_negatives", "all_negatives")
DTYPES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
UNIT_ROUNDOFF = {
    torch.float64: 2.0**-53,
    torch.float32: 2.0**-24,
    torch.bfloat16: 2.0**-8,
    torch.float16: 2.0**-11,
}


def hyp_settings(max_examples: int) -> settings:
    """Small, deadline-free hypothesis settings; deterministic when ``CI`` is set."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=bool(os.environ.get("CI")),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
    )


@st.composite
def configs(draw: Any, *, hardness: bool = True) -> dict[str, Any]:
    """A valid member of the family (DIR-1, PART-4, PART-6, HARD-1), as keyword arguments."""
    rest = draw(st.sets(st.sampled_from(DIRECTIONS[1:])), label="extra_directions")
    directions = ("query_to_doc", *(d for d in DIRECTIONS[1:] if d in rest))
    modes = ["joint", "per_direction"] if set(directions) <= {"query_to_doc", "doc_to_query"} else ["joint"]
    if "doc_to_doc" not in directions or "doc_to_query" in directions:
        modes.append("per_anchor")
    mode = draw(st.sampled_from(HARDNESS if hardness else (None,)), label="hardness_mode")
    return {
        "directions": directions,
        "partition_mode": draw(st.sampled_from(modes), label="partition_mode"),
        "scale": draw(st.sampled_from([0.5, 1.0, 7.0, 20.0, 50.0]), label="scale"),
        "similarity": draw(st.sampled_from(["cos", "dot"]), label="similarity"),
        "hardness_mode": mode,
        "hardness_strength": draw(st.sampled_from([0.0, 0.7, 5.0]), label="hardness_strength")
        if mode
        else 0.0,
    }


@dataclass(frozen=True)
class Case:
    """A replayable problem: config, shape, dtype and the seed of the embeddings."""

    config: dict[str, Any]
    b: int
    k: int
    d: int
    dtype: str
    seed: int
    sigma: float

    def replay(self) -> str:
        return (
            f"replay: tests.torch_helpers.Case(config={self.config!r}, b={self.b}, k={self.k}, d={self.d}, "
            f"dtype={self.dtype!r}, seed={self.seed}, sigma={self.sigma})"
        )


@st.composite
def cases(draw: Any, *, dtypes: Sequence[str] = tuple(DTYPES), max_b: int = 6, hardness: bool = True) -> Case:
    config = draw(configs(hardness=hardness), label="config")
    return Case(
        config=config,
        b=draw(st.integers(1, max_b), label="B"),
        k=draw(st.integers(1, 3), label="K"),
        d=draw(st.integers(1, 12), label="D"),
        dtype=draw(st.sampled_from(list(dtypes)), label="dtype"),
        seed=draw(st.integers(0, 2**31 - 1), label="seed"),
        sigma=draw(st.sampled_from([0.3, 1.0, 2.0]), label="sigma"),
    )


def embeddings(case: Case, *, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``queries`` (n, D) and ``docs`` (K, n, D) in ``case.dtype`` (n defaults to B).

    Rows whose norm is below 1e-3 are pushed away from zero: a vector at the cos floor has a
    1/||x|| gradient (GRAD-3, tested on its own), i.e. an ill-conditioned input.
    """
    n = case.b if n is None else n
    rng = np.random.default_rng(case.seed)
    q = rng.normal(scale=case.sigma, size=(n, case.d))
    d = rng.normal(scale=case.sigma, size=(case.k, n, case.d))
    for x in (q, d):
        norms = np.linalg.norm(x, axis=-1, keepdims=True)
        x += np.where(norms < 1e-3, 1e-2, 0.0)
    dtype = DTYPES[case.dtype]
    return torch.from_numpy(q).to(dtype), torch.from_numpy(d).to(dtype)


def _gamma(n: float, u: float) -> float:
    return n * u / (1.0 - n * u)


@dataclass(frozen=True)
class Bounds:
    """Allowed errors: ``loss`` (absolute) and ``grad`` (weighted norm, without the cast term)."""

    loss: float
    grad: float
    u_in: float
    fp16: bool


def candidates_per_row(config: dict[str, Any], n: int, k: int) -> int:
    widths = {"query_to_doc": k * n, "query_to_query": n, "doc_to_query": n, "doc_to_doc": k * n}
    return sum(widths[d] for d in config["directions"])


def error_bounds(case: Case, queries: torch.Tensor, docs: torch.Tensor, *, n: int | None = None) -> Bounds:
    """The error model of this module for ``case`` on these inputs (float64 reference as truth)."""
    in_dtype = DTYPES[case.dtype]
    compute = torch.promote_types(in_dtype, torch.float32)
    u = UNIT_ROUNDOFF[compute]
    u_in = UNIT_ROUNDOFF[in_dtype] if in_dtype != compute else 0.0
    cfg = case.config
    n = queries.shape[0] if n is None else n
    d = queries.shape[1]
    m = candidates_per_row(cfg, n, case.k)
    alpha = cfg["hardness_strength"] if cfg["hardness_mode"] else 0.0
    scale = float(cfg["scale"])
    r = max(float(queries.double().norm(dim=-1).max()), float(docs.double().norm(dim=-1).max()))
    if cfg["similarity"] == "cos":
        ds, s_max, j = 3 * _gamma(d + 2, u), 1.0, scale
    else:
        ds, s_max, j = _gamma(d, u) * r * r, r * r, scale * r
    z_max = (scale + alpha) * s_max
    dz = (scale + alpha) * ds + 2 * u * z_max
    loss = 2 * (2 * dz + 5 * u * z_max + _gamma(m + 3, u) + _gamma(n, u) * (2 * z_max + math.log(m)))
    eps_p = math.expm1(2 * dz + 4 * u * z_max + _gamma(m + 2, u))
    eps_j = 4 * _gamma(d + 3, u)
    grad = 2 * 2 * j * (eps_p + 2 * eps_j + 2 * _gamma(m, u))
    return Bounds(loss=loss, grad=grad, u_in=u_in, fp16=in_dtype == torch.float16)


def weights(x: torch.Tensor, similarity: str) -> torch.Tensor:
    """``w_x`` per row vector: ``||x||`` for cos (scale-free gradients), 1 for dot."""
    if similarity == "cos":
        return x.double().norm(dim=-1)
    return torch.ones(x.shape[:-1], dtype=torch.float64)


def weighted_error(
    got: torch.Tensor, ref: torch.Tensor, w: torch.Tensor
) -> tuple[float, float, tuple[int, ...]]:
    """``(sum_x w_x ||got_x - ref_x||, sum_x w_x ||ref_x||, index of the worst vector)``."""
    diff = (got.double() - ref.double()).norm(dim=-1) * w
    worst = np.unravel_index(int(diff.argmax()), tuple(diff.shape)) if diff.numel() else ()
    return float(diff.sum()), float((ref.double().norm(dim=-1) * w).sum()), tuple(int(i) for i in worst)


def grad_allowance(
    bounds: Bounds, ref_weighted_norm: float, w: torch.Tensor, d: int, factor: float = 1.0
) -> float:
    """The gradient bound: model term (times ``factor``) + cast to the input dtype + fp16 subnormals."""
    extra = bounds.u_in * ref_weighted_norm
    if bounds.fp16:
        extra += float(w.sum()) * math.sqrt(d) * 2.0**-25
    return factor * bounds.grad + extra


def assert_within(what: str, clause: str, error: float, bound: float, detail: str, replay: str) -> None:
    """Fail with the computed error, the allowed bound, the clause and the replay recipe."""
    assert error <= bound, (
        f"[{clause}] {what}: error {error:.3e} exceeds the allowed {bound:.3e} ({detail}); {replay}"
    )


def check_embedding_grads(
    what: str,
    got: torch.Tensor,
    ref: torch.Tensor,
    x: torch.Tensor,
    case: Case,
    bounds: Bounds,
    replay: str,
    *,
    factor: float = 1.0,
    clause: str = "GRAD-1",
    extra: float = 0.0,
) -> None:
    """Compare one gradient array with the weighted-norm bound of :func:`error_bounds`."""
    w = weights(x, case.config["similarity"])
    err, ref_norm, worst = weighted_error(got, ref, w)
    bound = grad_allowance(bounds, ref_norm, w, x.shape[-1], factor) + extra
    got_v = got.double()[worst].tolist() if worst else []
    ref_v = ref.double()[worst].tolist() if worst else []
    assert_within(
        f"{what} (weighted norm sum_x w_x ||got_x - ref_x||)",
        clause,
        err,
        bound,
        f"worst vector {worst}: got {np.round(got_v, 6).tolist()} vs reference {np.round(ref_v, 6).tolist()}",
        replay,
    )
