"""The tolerance model: how far a correct implementation in a given dtype may be from the reference.

The bounds are derived from the arithmetic of the loss, first order in the unit roundoff ``u`` of
the dtype, with one documented safety factor ``KAPPA`` for the constants a first-order analysis
drops. They are computed per case from the actual inputs (norms, scale, dimension, number of
candidates), never guessed per dtype. The inputs handed to an adapter are exactly representable in
its dtype (:func:`round_to_dtype`), so input rounding is not part of the error: only the
implementation's own arithmetic is.

Notation (see docs/conformance.md for the derivation): ``D`` the dimension, ``N`` the queries, ``C``
the candidates of one query (all selected rows together), ``ν`` the largest "effective norm" of an
embedding (``||x||`` for ``dot``; at most 1 for ``cos``), ``a = scale + alpha`` (alpha the hardness
strength, 0 without hardness), ``ε`` the relative error of the embeddings themselves (0 at level 1;
the encoder's matmul at level 2).

* similarity entry:  ``δs = (c_sim u + 2ε) ν²`` with ``c_sim = 2√D + 4`` (dot), ``3√D + 8`` (cos:
  the normalisation adds ``√D/2 + 2`` per vector);
* logit:             ``δz = a δs + 2u z_max``, ``z_max = a ν²``;
* loss (LOSS-1):     ``δL = κ [2 δz + (√C + √N + 6) u (1 + 2 z_max + ln C)]`` (logsumexp is
  1-Lipschitz in the max-norm; the sum of C positive terms, the log and the mean add the rest);
* softmax weights:   relative error ``2 δz + (√C + 4) u``; the weights touching one vector sum to at
  most ``μ = |directions| + 4`` (row role 2/N per row direction, candidate role <= 1 per direction);
* gradient, row x:   ``δG = κ a_s ν μ [2 δz + (√C + √(C N) + c_sim + 8) u + 2ε]`` (``a_s = scale``;
  the sum over up to ``C N`` products), for ``cos`` plus the pull-back through the normalisation
  ``κ (2√D + 6 + 3ε/u) u scale μ`` and divided by ``max(||x||, 1e-12)`` (GRAD-3);
* dL/dscale:         ``κ 2 [(2 δz + (√(C N) + 6) u) ν² + δs]`` (the weights sum to at most 2);
* encoder weight:    ``Σ_rows (δg_row + (√R + 2 + 2ε/u) u |g_row|) ||x_row||`` (R rows), with
  ``ε_row = (√F + 2) u ||x_row|| ||W||_2 / ||e_row||`` for ``e = x W^T``.

Inputs that make a bound meaningless are filtered by the properties with ``assume`` on a stated
condition, never by widening the bound: a cos vector whose norm lies within a relative
``κ (√D + 2) u`` of the eps 1e-12 (the branch of GRAD-3 is then decided by rounding,
:func:`cos_eps_ambiguous`), and encoder rows with ``||x|| ||W||_2 / ||x W^T|| > 100``
(:func:`encoder_condition`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from infonce_spec.reference import Config
from infonce_spec.vocabulary import COS_EPS, DIRECTION_SPECS  # COS_EPS: SIM-1's eps

__all__ = [
    "COS_EPS",
    "KAPPA",
    "OUTPUT_ROUNDING",
    "UNIT_ROUNDOFF",
    "Bounds",
    "cos_eps_ambiguous",
    "embedding_bounds",
    "encoder_bounds",
    "encoder_condition",
    "finite_max",
    "round_to_dtype",
]

#: The unit roundoff u = 2^-p of each dtype (p = significand bits incl. the implicit one).
UNIT_ROUNDOFF: dict[str, float] = {
    "float64": 2.0**-53,
    "float32": 2.0**-24,
    "bfloat16": 2.0**-8,
    "float16": 2.0**-11,
}
#: The safety factor on every first-order bound.
KAPPA = 4.0
#: Allowance for the rounding of a returned gradient to the adapter's dtype, in units of ``u |g|``.
#: A correctly rounded result is within ``u |g|``; allowing ``2 KAPPA u |g|`` keeps rounding alone at
#: 1/8 of the bound (bfloat16 gradients of a float32 loss stage are dominated by it).
OUTPUT_ROUNDING = 2 * KAPPA
_FINITE_MAX = {
    "float64": 1.7976931348623157e308,
    "float32": 3.4028234663852886e38,
    "bfloat16": 3.3895313892515355e38,
    "float16": 65504.0,
}


def finite_max(dtype: str) -> float:
    """The largest finite value of ``dtype``."""
    return _FINITE_MAX[dtype]


def round_to_dtype(x: np.ndarray, dtype: str) -> np.ndarray:
    """``x`` rounded to ``dtype`` (round to nearest even) and returned as float64."""
    x = np.asarray(x, dtype=np.float64)
    if dtype == "float64":
        return x.copy()
    if dtype == "float32":
        return x.astype(np.float32).astype(np.float64)
    if dtype == "float16":
        return x.astype(np.float16).astype(np.float64)
    if dtype == "bfloat16":
        bits = np.ascontiguousarray(x.astype(np.float32)).view(np.uint32).astype(np.uint64)
        rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)
        return rounded.view(np.float32).astype(np.float64)
    raise ValueError(f"unknown dtype {dtype!r}")


def _norms(x: np.ndarray) -> np.ndarray:
    return np.sqrt(np.sum(np.asarray(x, dtype=np.float64) ** 2, axis=-1, keepdims=True))


def cos_eps_ambiguous(x: np.ndarray, dtype: str) -> bool:
    """True if some row norm of ``x`` is so close to 1e-12 that rounding decides the GRAD-3 branch."""
    d = x.shape[-1]
    band = KAPPA * (math.sqrt(d) + 2) * UNIT_ROUNDOFF[dtype]
    norms = _norms(x)
    return bool(np.any(np.abs(norms - COS_EPS) <= band * COS_EPS))


def encoder_condition(x: np.ndarray, weight: np.ndarray) -> float:
    """max over rows of ``||x|| ||W||_2 / ||x W^T||`` (inf where a nonzero row maps to zero)."""
    x2 = np.asarray(x, dtype=np.float64).reshape(-1, x.shape[-1])
    w = np.asarray(weight, dtype=np.float64)
    e = _norms(x2 @ w.T)[:, 0]
    xn = _norms(x2)[:, 0]
    w2 = float(np.linalg.norm(w, 2)) if w.size else 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        cond = np.where(xn == 0.0, 1.0, xn * w2 / e)
    return float(np.max(cond)) if cond.size else 1.0


@dataclass(frozen=True)
class Bounds:
    """Allowed absolute errors: ``loss`` (scalar), ``grad_queries`` (N, 1), ``grad_docs`` (K, N, 1)
    (one bound per embedding row, broadcast over its elements), ``grad_scale`` (scalar).
    ``logit`` is the logit error bound δz, for the reports."""

    loss: float
    grad_queries: np.ndarray
    grad_docs: np.ndarray
    grad_scale: float
    logit: float

    def scaled(self, factor: float) -> Bounds:
        """The bounds of ``factor * L`` (upstream multipliers, the W of DP-3)."""
        f = abs(factor)
        return Bounds(
            self.loss * f, self.grad_queries * f, self.grad_docs * f, self.grad_scale * f, self.logit
        )

    def plus(self, other: Bounds) -> Bounds:
        """Bounds for comparing two implementations' results (each within its own bound)."""
        return Bounds(
            self.loss + other.loss,
            self.grad_queries + other.grad_queries,
            self.grad_docs + other.grad_docs,
            self.grad_scale + other.grad_scale,
            self.logit + other.logit,
        )


def _candidates(config: Config, n: int, k: int) -> int:
    """The entries of one logit row over the config's directions: K·N per direction over documents,
    N per direction over queries (§4, :data:`~infonce_spec.vocabulary.DIRECTION_SPECS`)."""
    specs = (DIRECTION_SPECS[d] for d in set(config.directions))
    return sum(k * n if spec.over_documents else n for spec in specs)


def embedding_bounds(
    queries: np.ndarray,
    docs: np.ndarray,
    config: Config,
    dtype: str,
    *,
    input_rel_err: float = 0.0,
) -> Bounds:
    """The bounds for the loss and the embedding gradients of one case (level 1 and the rank cases)."""
    u = UNIT_ROUNDOFF[dtype]
    q = np.asarray(queries, dtype=np.float64)
    dd = np.asarray(docs, dtype=np.float64)
    k, n, d = dd.shape
    n_dir = len(set(config.directions))
    c = _candidates(config, n, k)
    cos = config.similarity == "cos"
    q_norm, d_norm = _norms(q), _norms(dd)
    if cos:
        nu = 1.0
        c_sim = 3 * math.sqrt(d) + 8
    else:
        nu = float(max(q_norm.max(), d_norm.max()))
        c_sim = 2 * math.sqrt(d) + 4
    alpha = config.hardness_strength if config.hardness_active else 0.0
    a = config.scale + alpha
    eps_in = input_rel_err
    delta_s = (c_sim * u + 2 * eps_in) * nu * nu
    z_max = a * nu * nu
    delta_z = a * delta_s + 2 * u * z_max
    loss = KAPPA * (
        2 * delta_z + (math.sqrt(c) + math.sqrt(n) + 6) * u * (1 + 2 * z_max + math.log(max(c, 1)))
    )
    mu = n_dir + 4
    weights_err = 2 * delta_z + (math.sqrt(c) + math.sqrt(c * n) + c_sim + 8) * u + 2 * eps_in
    delta_g = KAPPA * config.scale * nu * mu * weights_err
    if cos:
        pull = KAPPA * ((2 * math.sqrt(d) + 6) * u + 3 * eps_in) * config.scale * mu
        g_q = (delta_g + pull) / np.maximum(q_norm, COS_EPS)
        g_d = (delta_g + pull) / np.maximum(d_norm, COS_EPS)
    else:
        g_q = np.full_like(q_norm, delta_g)
        g_d = np.full_like(d_norm, delta_g)
    grad_scale = KAPPA * 2 * ((2 * delta_z + (math.sqrt(c * n) + 6) * u) * nu * nu + delta_s)
    return Bounds(loss=loss, grad_queries=g_q, grad_docs=g_d, grad_scale=grad_scale, logit=delta_z)


def _grad_row_max(config: Config, nu: float, norms: np.ndarray, n_dir: int) -> np.ndarray:
    """A bound on ||dL/d(row)|| (for the accumulation error of the weight gradient)."""
    mu = n_dir + 4
    if config.similarity == "cos":
        return config.scale * mu / np.maximum(norms, COS_EPS)
    return np.full_like(norms, config.scale * mu * nu)


def encoder_bounds(
    x_queries: np.ndarray,
    x_docs: np.ndarray,
    weight: np.ndarray,
    config: Config,
    dtype: str,
    *,
    encoder_dtype: str | None = None,
) -> tuple[Bounds, float]:
    """The bounds for a linear-encoder step: embedding-level bounds and one bound for every element of
    dL/d(weight) (D, F). ``dtype`` is the loss stage's precision, ``encoder_dtype`` (default ``dtype``)
    the encoder's (the matmuls ``x W^T`` and ``g^T x``)."""
    u = UNIT_ROUNDOFF[encoder_dtype or dtype]
    xq = np.asarray(x_queries, dtype=np.float64)
    xd = np.asarray(x_docs, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    f = w.shape[1]
    eq, ed = xq @ w.T, xd @ w.T
    cond = encoder_condition(np.concatenate([xq, xd.reshape(-1, f)]), w)
    eps_in = (math.sqrt(f) + 2) * u * (cond if math.isfinite(cond) else 1e6)
    bounds = embedding_bounds(eq, ed, config, dtype, input_rel_err=eps_in)
    rows_x = np.concatenate([xq, xd.reshape(-1, f)])
    rows_e = np.concatenate([eq, ed.reshape(-1, w.shape[0])])
    rows_bound = np.concatenate([bounds.grad_queries, bounds.grad_docs.reshape(-1, 1)])
    n_dir = len(set(config.directions))
    nu = float(_norms(rows_e).max()) if config.similarity == "dot" else 1.0
    g_max = _grad_row_max(config, nu, _norms(rows_e), n_dir)
    r = rows_x.shape[0]
    acc = (math.sqrt(r) + 2) * u + 2 * eps_in
    total = float(np.sum((rows_bound + KAPPA * acc * g_max) * _norms(rows_x)))
    return bounds, total
