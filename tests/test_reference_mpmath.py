"""Family 1: the reference against a 50-digit mpmath oracle with forward-mode gradients.

Every directions subset containing query_to_doc (DIR-1) x partition mode (PART-1; per_direction
only where PART-4 allows it, per_anchor where PART-6 does) x K in {1, 2, 4} x hardness mode (None and the three, strength > 0)
x similarity (cos, dot), at N = 3, D = 3, on the normative reference and on the engine (square
products held, and streamed in chunks of 2 rows). Each case
compares the loss, the per-query losses and every gradient (queries, docs, scale) within 1e-12
*relative to the largest element of the oracle's array* (``|ref - oracle| <= 1e-12 * max|oracle|`` element-wise; for scalars, the scalar).
The oracle (tests/oracles/mpmath_oracle.py) evaluates the spec's rows one logit at a time and
differentiates them by its own forward mode -- not the reference's softmax-minus-one-hot.

Inputs are standard normal with scale 5 (cos) or 1.25 (dot): softmaxes that are far from
one-hot, so the float64 reference is well conditioned and 1e-12 is a fair bound.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from infonce_spec.errors import SpecViolation
from infonce_spec.reference import Config
from tests.oracles import (
    PER_DIRECTION_ALLOWED,
    QD_SUBSETS,
    assert_close,
    mpmath_cases,
    per_anchor_allowed,
    short_label,
)
from tests.oracles.mpmath_oracle import DPS, directional_derivative, oracle
from tests.reference_implementations import IMPLEMENTATIONS

RTOL = 1e-12
N, D = 3, 3
SCALES = {"cos": 5.0, "dot": 1.25}
STRENGTH = 0.8


def _case_id(case: tuple) -> str:
    directions, partition_mode, k, mode, similarity = case
    return f"{short_label(directions)}|{partition_mode}|K{k}|{mode or 'no-hardness'}|{similarity}"


CASES = list(mpmath_cases())


def _inputs(case_id: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(zlib.crc32(case_id.encode()))
    return rng.standard_normal((N, D)), rng.standard_normal((k, N, D))


def test_case_grid_is_complete() -> None:
    """8 subsets x (joint, + per_direction for 2 of them, + per_anchor for 6) x 3 K x 4 hardness x 2
    similarities."""
    assert len(QD_SUBSETS) == 8
    assert len(CASES) == (8 + 2 + 6) * 3 * 4 * 2
    assert DPS >= 40


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_reference_matches_mpmath(case: tuple) -> None:
    """LOSS-1, LOSS-2, GRAD-1, SCALE-2 (and every row/mask/hardness clause they are made of)."""
    directions, partition_mode, k, mode, similarity = case
    case_id = _case_id(case)
    queries, docs = _inputs(case_id, k)
    kwargs = {
        "directions": directions,
        "partition_mode": partition_mode,
        "scale": SCALES[similarity],
        "similarity": similarity,
        "hardness_mode": mode,
        "hardness_strength": STRENGTH if mode else 0.0,
    }
    expected = oracle(queries, docs, **kwargs)
    for name, loss_and_grad in IMPLEMENTATIONS.items():
        got = loss_and_grad(queries, docs, Config(**kwargs))
        replay = f"replay: tests/test_reference_mpmath.py::test_reference_matches_mpmath[{case_id}] ({name})"
        for field, clause in (
            ("loss", "LOSS-1"),
            ("per_query_loss", "LOSS-2"),
            ("grad_queries", "GRAD-1"),
            ("grad_docs", "GRAD-1"),
            ("grad_scale", "SCALE-2"),
        ):
            assert_close(
                getattr(got, field),
                getattr(expected, field),
                rtol=RTOL,
                what=field,
                clause=clause,
                replay=replay,
            )


DISALLOWED = [s for s in QD_SUBSETS if not set(s) <= PER_DIRECTION_ALLOWED]


@pytest.mark.parametrize("directions", DISALLOWED, ids=[short_label(s) for s in DISALLOWED])
def test_per_direction_disallowed_combinations_raise(directions: tuple[str, ...]) -> None:
    """PART-4: per_direction with query_to_query or doc_to_doc is rejected, naming the clause."""
    assert len(DISALLOWED) == 6
    with pytest.raises(SpecViolation) as info:
        Config(directions=directions, partition_mode="per_direction")
    assert info.value.clause == "PART-4"
    assert "PART-4" in str(info.value)


PER_ANCHOR_DISALLOWED = [s for s in QD_SUBSETS if not per_anchor_allowed(s)]


@pytest.mark.parametrize(
    "directions", PER_ANCHOR_DISALLOWED, ids=[short_label(s) for s in PER_ANCHOR_DISALLOWED]
)
def test_per_anchor_without_a_positive_row_raises(directions: tuple[str, ...]) -> None:
    """PART-6: per_anchor whose group of d[0, g]'s rows is doc_to_doc alone is rejected, naming the clause."""
    assert len(PER_ANCHOR_DISALLOWED) == 2
    with pytest.raises(SpecViolation) as info:
        Config(directions=directions, partition_mode="per_anchor")
    assert info.value.clause == "PART-6", f"PART-6 expected, got {info.value.clause}"
    assert "PART-6" in str(info.value), "PART-6: the message names the clause"


def test_per_anchor_is_nt_xent_over_2n_anchors() -> None:
    """PART-5 with the four directions and K = 1 is SimCLR's NT-Xent: the mean over the 2N anchors
    of the batch [q; d] of a cross-entropy over every other member, its pair the target."""
    queries, docs = _inputs("nt-xent", 1)
    scale = 2.0
    x = np.concatenate([queries, docs[0]])
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    logits = scale * x @ x.T
    np.fill_diagonal(logits, -np.inf)
    partner = np.concatenate([np.arange(N, 2 * N), np.arange(N)])
    row_max = logits.max(axis=1)
    lse = row_max + np.log(np.exp(logits - row_max[:, None]).sum(axis=1))
    nt_xent = float(np.mean(lse - logits[np.arange(2 * N), partner]))
    config = Config(directions=QD_SUBSETS[-1], partition_mode="per_anchor", scale=scale, similarity="cos")
    for name, loss_and_grad in IMPLEMENTATIONS.items():
        got = loss_and_grad(queries, docs, config).loss
        assert abs(got - nt_xent) <= RTOL * abs(nt_xent), f"PART-5 {name}: {got} != NT-Xent {nt_xent}"


# --------------------------------------------------------------------------------------------------
# The oracle's own check: its forward mode against mpmath.diff of the plain loss function.
# --------------------------------------------------------------------------------------------------

ORACLE_CHECKS = [
    (("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc"), "joint", "cos"),
    (("query_to_doc", "doc_to_query"), "per_direction", "dot"),
    (("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc"), "per_anchor", "cos"),
    (("query_to_doc", "doc_to_doc"), "joint", "dot"),
]


@pytest.mark.parametrize(
    "check", ORACLE_CHECKS, ids=[f"{short_label(c[0])}|{c[1]}|{c[2]}" for c in ORACLE_CHECKS]
)
def test_oracle_forward_mode_matches_mpmath_diff(check: tuple) -> None:
    """The forward-mode tangents are the derivative of the oracle's loss (mpmath.diff, 50 digits).

    Without hardness the loss function and the HARD-5 gradient coincide, so a random direction in
    (queries, docs, scale) checks every tangent at once.
    """
    directions, partition_mode, similarity = check
    rng = np.random.default_rng(7)
    q, d = rng.standard_normal((N, D)), rng.standard_normal((2, N, D))
    vq, vd, vs = rng.standard_normal(q.shape), rng.standard_normal(d.shape), 0.37
    kwargs = {
        "directions": directions,
        "partition_mode": partition_mode,
        "scale": 2.0,
        "similarity": similarity,
    }
    fwd = oracle(q, d, **kwargs)
    projected = float(np.sum(fwd.grad_queries * vq) + np.sum(fwd.grad_docs * vd) + vs * fwd.grad_scale)
    numeric = directional_derivative(q, d, vq, vd, vs, hardness_mode=None, hardness_strength=0.0, **kwargs)
    assert projected == pytest.approx(numeric, rel=1e-14), "[GRAD-1] oracle forward mode != mpmath.diff"


def test_oracle_scale_tangent_with_hardness_matches_mpmath_diff() -> None:
    """HARD-2: h is not multiplied by scale, so even with hardness dL/dscale is a plain derivative."""
    rng = np.random.default_rng(11)
    q, d = rng.standard_normal((N, D)), rng.standard_normal((2, N, D))
    kwargs = {
        "directions": ("query_to_doc", "doc_to_doc"),
        "partition_mode": "joint",
        "scale": 3.0,
        "similarity": "cos",
        "hardness_mode": "all_negatives",
        "hardness_strength": 2.0,
    }
    fwd = oracle(q, d, **kwargs)
    numeric = directional_derivative(q, d, np.zeros_like(q), np.zeros_like(d), 1.0, **kwargs)
    assert fwd.grad_scale == pytest.approx(numeric, rel=1e-14), "[SCALE-2] oracle dL/dscale != mpmath.diff"
