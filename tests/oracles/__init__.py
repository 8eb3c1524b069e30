"""Independent oracles and shared test helpers for the verification of ``infonce_spec.reference``.

Nothing here imports the reference: the oracles (:mod:`.mpmath_oracle`, :mod:`.torch_direct`,
:mod:`.st_peer`) are written straight from the spec, so a test compares two independent readings.

This module holds what the ``tests/test_reference_*.py`` files share:

* :class:`LossCase` -- one member of the loss family as plain values (``Config(**case.kwargs())``);
* :func:`problems` -- a hypothesis strategy of labelled, replayable ``(case, queries, docs)`` draws;
* :func:`natural_magnitudes` -- the error model used as a comparison floor (see below);
* :func:`assert_close` -- a comparison whose message names the clause, the worst element, the bound
  and the replay recipe;
* :func:`reference_settings` -- hypothesis settings; deterministic when ``CI`` is set.

Error model. Two correct float64 evaluations of a sum differ by about ``n * 2**-52 * sum|terms|``;
when the terms cancel, ``max|expected|`` is the wrong yardstick. So the hypothesis families bound
each element by ``rtol * max(max|expected|, floor)``, where ``floor`` is an upper bound on the size
of the terms that element is made of (:func:`natural_magnitudes`). The mpmath family uses no floor:
its cases are fixed and well conditioned, and it holds every array to ``rtol * max|expected|``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st

__all__ = [
    "DIRECTIONS",
    "HARDNESS_MODES",
    "PER_DIRECTION_ALLOWED",
    "QD_SUBSETS",
    "LossCase",
    "Magnitudes",
    "Problem",
    "assert_close",
    "loss_cases",
    "make_inputs",
    "mpmath_cases",
    "natural_magnitudes",
    "partition_modes_for",
    "per_anchor_allowed",
    "problems",
    "reference_settings",
    "short_label",
]

#: The four direction names in the spec's canonical order (DIR-1, DIR-2).
DIRECTIONS = ("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc")
#: The 8 subsets of DIRECTIONS that contain query_to_doc (DIR-1), canonical order inside each.
QD_SUBSETS: tuple[tuple[str, ...], ...] = tuple(
    ("query_to_doc", *rest) for r in range(4) for rest in itertools.combinations(DIRECTIONS[1:], r)
)
#: PART-4: per_direction is allowed only for subsets of these.
PER_DIRECTION_ALLOWED = frozenset({"query_to_doc", "doc_to_query"})
#: HARD-1: None or one of the three modes.
HARDNESS_MODES = (None, "in_batch_negatives", "hard_negatives", "all_negatives")

_SHORT = {"query_to_doc": "qd", "query_to_query": "qq", "doc_to_query": "dq", "doc_to_doc": "dd"}


def short_label(directions: tuple[str, ...]) -> str:
    """``("query_to_doc", "doc_to_query")`` -> ``"qd+dq"`` (for test ids)."""
    return "+".join(_SHORT[d] for d in directions)


@dataclass(frozen=True)
class LossCase:
    """One loss configuration as plain values, independent of ``infonce_spec.reference.Config``."""

    directions: tuple[str, ...] = ("query_to_doc",)
    partition_mode: str = "joint"
    scale: float = 20.0
    similarity: str = "cos"
    hardness_mode: str | None = None
    hardness_strength: float = 0.0

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``Config``."""
        return {
            "directions": self.directions,
            "partition_mode": self.partition_mode,
            "scale": self.scale,
            "similarity": self.similarity,
            "hardness_mode": self.hardness_mode,
            "hardness_strength": self.hardness_strength,
        }

    @property
    def hardness_active(self) -> bool:
        """HARD-6: a mode and a positive strength."""
        return self.hardness_mode is not None and self.hardness_strength > 0.0


def per_anchor_allowed(directions: tuple[str, ...]) -> bool:
    """PART-6 for per_anchor (PART-5): the group of the rows of ``d[0, g]`` (doc_to_query,
    doc_to_doc), when selected, holds the positive pair only through doc_to_query."""
    return "doc_to_doc" not in directions or "doc_to_query" in directions


def partition_modes_for(directions: tuple[str, ...]) -> tuple[str, ...]:
    """The partition modes PART-4 and PART-6 allow for ``directions``."""
    modes = ["joint"]
    if set(directions) <= PER_DIRECTION_ALLOWED:
        modes.append("per_direction")
    if per_anchor_allowed(directions):
        modes.append("per_anchor")
    return tuple(modes)


# --------------------------------------------------------------------------------------------------
# Hypothesis: settings and strategies
# --------------------------------------------------------------------------------------------------


def reference_settings(max_examples: int) -> settings:
    """Per-test hypothesis settings: no deadline; derandomized and database-free when ``CI`` is set."""
    ci = bool(os.environ.get("CI"))
    extra: dict[str, Any] = {"derandomize": True, "database": None} if ci else {}
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        print_blob=True,
        **extra,
    )


@st.composite
def loss_cases(
    draw: st.DrawFn,
    *,
    hardness: str = "any",
    similarities: tuple[str, ...] = ("cos", "dot"),
) -> LossCase:
    """Any valid configuration (canonical direction order; DIR-2 has its own test).

    ``hardness``: ``"any"`` (None, or a mode with strength 0 or > 0), ``"inactive"`` (None, or a
    mode with strength 0 -- HARD-6) or ``"active"`` (a mode with strength > 0).
    """
    directions = draw(st.sampled_from(QD_SUBSETS), label="directions")
    partition_mode = draw(st.sampled_from(partition_modes_for(directions)), label="partition_mode")
    similarity = draw(st.sampled_from(similarities), label="similarity")
    scale = draw(st.floats(0.05, 50.0), label="scale")
    modes = HARDNESS_MODES[1:] if hardness == "active" else HARDNESS_MODES
    mode = draw(st.sampled_from(modes), label="hardness_mode")
    if mode is None:
        strength = 0.0
    elif hardness == "inactive":
        strength = 0.0
    elif hardness == "active":
        strength = draw(st.floats(0.01, 10.0), label="hardness_strength")
    else:
        strength = draw(st.one_of(st.just(0.0), st.floats(0.01, 10.0)), label="hardness_strength")
    return LossCase(directions, partition_mode, scale, similarity, mode, strength)


@dataclass(frozen=True)
class Problem:
    """A labelled, replayable draw: the case and float64 inputs made from ``seed``."""

    case: LossCase
    queries: np.ndarray
    docs: np.ndarray
    seed: int
    spread: float
    duplicate: bool

    @property
    def replay(self) -> str:
        k, n, d = self.docs.shape
        return (
            f"replay: tests.oracles.make_inputs(n={n}, k={k}, d={d}, seed={self.seed}, "
            f"spread={self.spread!r}, duplicate={self.duplicate}) with {self.case!r}"
        )


def make_inputs(
    n: int, k: int, d: int, seed: int, spread: float = 0.0, duplicate: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Queries (N, D) and docs (K, N, D): normal rows, each scaled by ``exp(U(-spread, spread))``.

    ``duplicate`` copies query 0 onto the last query and the last query's positive onto doc (0, 0)
    -- tied logits that a mask or index bug would treat differently.
    """
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n, d))
    docs = rng.standard_normal((k, n, d))
    q *= np.exp(rng.uniform(-spread, spread, size=(n, 1)))
    docs *= np.exp(rng.uniform(-spread, spread, size=(k, n, 1)))
    if duplicate and n > 1:
        q[n - 1] = q[0]
        docs[0, 0] = docs[0, n - 1]
    return q, docs


@st.composite
def problems(
    draw: st.DrawFn,
    *,
    max_n: int = 6,
    max_k: int = 4,
    max_d: int = 5,
    cases: st.SearchStrategy[LossCase] | None = None,
    min_norm: float = 1e-3,
) -> Problem:
    """A :class:`Problem` with N <= max_n, K <= max_k, D <= max_d and every row norm >= ``min_norm``."""
    case = draw(cases if cases is not None else loss_cases(), label="case")
    n = draw(st.integers(1, max_n), label="N")
    k = draw(st.integers(1, max_k), label="K")
    d = draw(st.integers(1, max_d), label="D")
    seed = draw(st.integers(0, 2**32 - 1), label="seed")
    spread = draw(st.sampled_from((0.0, 1.0, 2.3)), label="spread")
    duplicate = draw(st.booleans(), label="duplicate")
    q, docs = make_inputs(n, k, d, seed, spread, duplicate)
    norms = np.concatenate([np.linalg.norm(q, axis=-1), np.linalg.norm(docs, axis=-1).ravel()])
    # Away from the SIM-1 floor: cos has a kink at ||x|| = 1e-12 and curvature ~ 1/||x||^2 near 0.
    assume(float(norms.min()) >= min_norm)
    return Problem(case, q, docs, seed, spread, duplicate)


# --------------------------------------------------------------------------------------------------
# Error model and comparison
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Magnitudes:
    """Upper bounds on the terms each output is made of (the floors of :func:`assert_close`)."""

    loss: float
    grad_scale: float
    grad_queries: np.ndarray  # (N, 1), broadcast over D
    grad_docs: np.ndarray  # (K, N, 1)


def natural_magnitudes(case: LossCase, queries: np.ndarray, docs: np.ndarray) -> Magnitudes:
    """Sizes of the terms: ``|logit| <= a S`` with ``a = scale + alpha`` and ``S`` the similarity bound.

    * loss, per_query_loss: ``a S`` (a logsumexp minus a logit of that size);
    * grad_scale: ``S`` (a softmax average of similarities minus one similarity);
    * gradient of row ``x``: ``a |ds/dx|`` with ``|ds/dx| <= 1/||x||`` (cos) or ``max ||y||`` (dot).
    """
    alpha = case.hardness_strength if case.hardness_active else 0.0
    a = case.scale + alpha
    q_norms = np.linalg.norm(queries, axis=-1, keepdims=True)
    d_norms = np.linalg.norm(docs, axis=-1, keepdims=True)
    max_norm = float(max(q_norms.max(), d_norms.max()))
    if case.similarity == "cos":
        s_bound = 1.0
        gq = a / np.maximum(q_norms, 1e-12)
        gd = a / np.maximum(d_norms, 1e-12)
    else:
        s_bound = max_norm**2
        gq = np.full_like(q_norms, a * max_norm)
        gd = np.full_like(d_norms, a * max_norm)
    return Magnitudes(loss=a * s_bound, grad_scale=s_bound, grad_queries=gq, grad_docs=gd)


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def assert_close(
    actual: Any,
    expected: Any,
    *,
    rtol: float,
    what: str,
    clause: str,
    replay: str = "",
    floor: Any = 0.0,
) -> None:
    """``|actual - expected| <= rtol * max(max|expected|, floor)`` element-wise, else a full report.

    ``floor`` broadcasts against the arrays (see the module's error model). The message gives the
    worst element, both values, the bound, the clause and ``replay``.
    """
    a = _as_numpy(actual)
    e = _as_numpy(expected)
    if a.shape != e.shape:
        raise AssertionError(f"[{clause}] {what}: shape {a.shape}, but the oracle says {e.shape}. {replay}")
    if not np.all(np.isfinite(a)):
        raise AssertionError(f"[{clause}] {what}: non-finite values {a!r}; oracle {e!r}. {replay}")
    scale = float(np.max(np.abs(e))) if e.size else 0.0
    bound = rtol * np.maximum(scale, np.broadcast_to(np.asarray(floor, dtype=np.float64), e.shape))
    err = np.abs(a - e)
    ratio = np.where(bound > 0, err / np.where(bound > 0, bound, 1.0), np.where(err > 0, np.inf, 0.0))
    if e.size and float(np.max(ratio)) > 1.0:
        idx = np.unravel_index(int(np.argmax(ratio)), e.shape) if e.ndim else ()
        bad = int(np.sum(ratio > 1.0))
        raise AssertionError(
            f"[{clause}] {what}: mismatched elements {bad} / {e.size}; worst at index {tuple(int(i) for i in idx)}: "
            f"got {a[idx]!r}, oracle {e[idx]!r}, |diff| = {err[idx]:.3e} > allowed {bound[idx]:.3e} "
            f"(= {rtol:g} x max(max|oracle| = {scale:.3e}, floor)). {replay}"
        )


def check_against(
    expected: Any, got: Any, case: LossCase, queries: Any, docs: Any, replay: str, rtol: float
) -> None:
    """Every output of ``got`` against ``expected`` (any object with the Result fields), each under
    its clause: loss LOSS-1, per-query losses LOSS-2, gradients GRAD-1, dL/dscale SCALE-2."""
    m = natural_magnitudes(case, queries, docs)
    for field, clause, floor in (
        ("loss", "LOSS-1", m.loss),
        ("per_query_loss", "LOSS-2", m.loss),
        ("grad_queries", "GRAD-1", m.grad_queries),
        ("grad_docs", "GRAD-1", m.grad_docs),
        ("grad_scale", "SCALE-2", m.grad_scale),
    ):
        assert_close(
            getattr(got, field),
            getattr(expected, field),
            rtol=rtol,
            what=field,
            clause=clause,
            replay=replay,
            floor=floor,
        )


def mpmath_cases() -> Iterator[tuple[tuple[str, ...], str, int, str | None, str]]:
    """Every (directions, partition_mode, K, hardness_mode, similarity) of the mpmath family."""
    for directions in QD_SUBSETS:
        for partition_mode in partition_modes_for(directions):
            for k in (1, 2, 4):
                for mode in HARDNESS_MODES:
                    for similarity in ("cos", "dot"):
                        yield directions, partition_mode, k, mode, similarity
