"""Family 2: the reference's gradients against float64 central finite differences of its own loss.

A 4th-order central stencil ``f'(0) ~ (f(-2h) - 8 f(-h) + 8 f(h) - f(2h)) / (12 h)``, h = 1e-3, on

* ``f(t) = L(queries + t Vq, docs + t Vd)`` for a random direction V (GRAD-1), and
* ``f(t) = L(scale + t sigma)`` (SCALE-2).

The directions are scaled so that no logit moves faster than 2 per unit t and no row turns faster
than 1 radian per unit t: each row of V is a random unit vector times ``||row|| / max(a S, 1)``
(a = scale, S = 1 for cos, max||x||^2 for dot) and ``sigma = 1 / max(S, 1)`` (so
that ``scale - 2 h sigma`` stays > 0 for scale >= 0.05). Then the stencil's truncation error ``h^4 f^(5) / 30`` is ~1e-10 and
its rounding error ``~2e3 u |L|``, so ``|fd - exact| <= 1e-8 max(1, |L|, |exact|)`` has margin.

Points near the cos kink (row norms near the 1e-12 floor, SIM-1) are assumed away: every row norm
is >= 1e-3 (:func:`tests.oracles.problems`). With hardness *active* the reference gradient is by
definition not the derivative of the loss function (HARD-5 stop-gradient), so random directions
use configs with no active hardness (None, or a mode at strength 0, HARD-6); the scale derivative
is checked with every hardness mode, since h does not depend on scale (HARD-2).

Every draw checks the normative reference and the engine alike (:mod:`tests.reference_implementations`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from infonce_spec.reference import Config
from tests.oracles import Problem, loss_cases, problems, reference_settings
from tests.reference_implementations import IMPLEMENTATIONS

H = 1e-3
TOL = 1e-8


def _stencil(f: Callable[[float], float]) -> float:
    return (f(-2 * H) - 8 * f(-H) + 8 * f(H) - f(2 * H)) / (12 * H)


def _similarity_bound(p: Problem) -> float:
    if p.case.similarity == "cos":
        return 1.0
    return float(max(np.linalg.norm(p.queries, axis=-1).max(), np.linalg.norm(p.docs, axis=-1).max())) ** 2


def _unit_rows(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    v = rng.standard_normal(shape)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _check(fd: float, exact: float, value: float, what: str, clause: str, p: Problem) -> None:
    allowed = TOL * max(1.0, abs(value), abs(exact))
    assert abs(fd - exact) <= allowed, (
        f"[{clause}] {what}: reference {exact!r}, central difference {fd!r}, |diff| = {abs(fd - exact):.3e} "
        f"> allowed {allowed:.3e} (= {TOL:g} x max(1, |L| = {abs(value):.3e}, |exact|)). {p.replay}"
    )


@reference_settings(max_examples=80)
@given(p=problems(cases=loss_cases(hardness="inactive")), direction_seed=st.integers(0, 2**32 - 1))
def test_directional_derivative_matches_central_differences(p: Problem, direction_seed: int) -> None:
    """GRAD-1: grad . V equals d/dt L(x + t V) for a random direction V."""
    config = Config(**p.case.kwargs())
    rng = np.random.default_rng(direction_seed)
    a_s = max(p.case.scale * _similarity_bound(p), 1.0)
    vq = _unit_rows(rng, p.queries.shape) * np.linalg.norm(p.queries, axis=-1, keepdims=True) / a_s
    vd = _unit_rows(rng, p.docs.shape) * np.linalg.norm(p.docs, axis=-1, keepdims=True) / a_s
    for name, loss_and_grad in IMPLEMENTATIONS.items():
        result = loss_and_grad(p.queries, p.docs, config)
        exact = float(np.sum(result.grad_queries * vq) + np.sum(result.grad_docs * vd))
        fd = _stencil(lambda t, f=loss_and_grad: f(p.queries + t * vq, p.docs + t * vd, config).loss)
        _check(fd, exact, result.loss, f"{name}: grad . V (direction_seed={direction_seed})", "GRAD-1", p)


@reference_settings(max_examples=80)
@given(p=problems(cases=loss_cases(hardness="any")))
def test_scale_derivative_matches_central_differences(p: Problem) -> None:
    """SCALE-2 (and HARD-2: the hardness term does not move with scale)."""
    config = Config(**p.case.kwargs())
    sigma = 1.0 / max(_similarity_bound(p), 1.0)
    for name, loss_and_grad in IMPLEMENTATIONS.items():
        result = loss_and_grad(p.queries, p.docs, config)
        fd = _stencil(
            lambda t, f=loss_and_grad: (
                f(p.queries, p.docs, config.replace(scale=p.case.scale + t * sigma)).loss
            )
        )
        _check(fd, sigma * result.grad_scale, result.loss, f"{name}: sigma * dL/dscale", "SCALE-2", p)
