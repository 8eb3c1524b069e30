"""Family 6: edge cases of the reference -- tiny shapes, the cos floor, ties, huge logits, DIR-2,
HARD-6, array namespaces and dtypes, chunking, LOSS-2 and NUM-1. The oracle comparisons and the
numerical edge cases run on the normative reference and on the engine alike
(:mod:`tests.reference_implementations`); chunking and product modes are the engine's own knobs.

Comparisons with the mpmath oracle here use ``1e-12 * max(max|oracle|, floor)`` element-wise with
the error model's floor (:func:`tests.oracles.natural_magnitudes`): at logits of 1e9 a float64
result is only defined to ~1e-7 absolute, and zero-vector or duplicated-row cases have exactly
cancelling gradients, so "relative to the largest element" alone would measure rounding noise.
"""

from __future__ import annotations

import math

import array_api_compat
import array_api_strict
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from infonce_spec.reference import Config, engine, loss_and_grad
from tests.oracles import (
    HARDNESS_MODES,
    QD_SUBSETS,
    LossCase,
    Problem,
    assert_close,
    loss_cases,
    make_inputs,
    natural_magnitudes,
    problems,
    reference_settings,
    short_label,
)
from tests.oracles import check_against as _check_against
from tests.oracles.mpmath_oracle import oracle
from tests.oracles.torch_direct import direct_loss_and_grad
from tests.reference_implementations import IMPLEMENTATIONS

RTOL = 1e-12


def check_against(expected, got, case: LossCase, queries, docs, replay: str, rtol: float = RTOL) -> None:
    _check_against(expected, got, case, queries, docs, replay, rtol)


def check_mpmath(case: LossCase, queries: np.ndarray, docs: np.ndarray, replay: str) -> None:
    expected = oracle(queries, docs, **case.kwargs())
    for name, implementation in IMPLEMENTATIONS.items():
        got = implementation(queries, docs, Config(**case.kwargs()))
        check_against(expected, got, case, queries, docs, f"{replay} ({name})")


# --------------------------------------------------------------------------------------------------
# Tiny shapes: N = 1, K = 1, D = 1
# --------------------------------------------------------------------------------------------------

SHAPES = [(1, 1, 1), (1, 1, 4), (1, 3, 1), (1, 2, 3), (3, 1, 1), (2, 1, 3), (4, 3, 1)]
TINY = [(shape, dirs, sim) for shape in SHAPES for dirs in QD_SUBSETS for sim in ("cos", "dot")]


@pytest.mark.parametrize(
    ("shape", "directions", "similarity"),
    TINY,
    ids=[f"N{s[0]}K{s[1]}D{s[2]}|{short_label(d)}|{sim}" for s, d, sim in TINY],
)
def test_tiny_shapes_match_mpmath(
    shape: tuple[int, int, int], directions: tuple[str, ...], similarity: str
) -> None:
    """LAYOUT-1/2 at their minimum (N=1: empty query_to_query and doc_to_doc rows; D=1: cos = +-1)."""
    n, k, d = shape
    q, docs = make_inputs(n, k, d, seed=n * 100 + k * 10 + d)
    case = LossCase(directions, "joint", 3.0, similarity, "all_negatives", 0.5)
    check_mpmath(
        case, q, docs, f"replay: make_inputs({n}, {k}, {d}, seed={n * 100 + k * 10 + d}) with {case!r}"
    )


@pytest.mark.parametrize("similarity", ["cos", "dot"])
def test_single_pair_has_zero_loss_and_zero_gradients(similarity: str) -> None:
    """N = K = 1, query_to_doc only: the row is the positive alone, so l = 0 and every gradient is 0.

    The loss is held to 4 ulp of the logit (``logsumexp([p]) - p`` may be rounded through two
    different evaluations of ``p``); the softmax of one logit is exactly 1, so the gradients are 0.
    """
    q, docs = make_inputs(1, 1, 3, seed=5)
    r = loss_and_grad(q, docs, Config(similarity=similarity, scale=7.0))
    logit = abs(
        7.0
        * float(np.sum(q[0] * docs[0, 0]))
        / (1.0 if similarity == "dot" else float(np.linalg.norm(q[0]) * np.linalg.norm(docs[0, 0])))
    )
    assert r.loss == 0.0 or abs(r.loss) <= 4 * np.finfo(np.float64).eps * max(logit, 1.0), (
        f"[LOSS-2] single positive: loss {r.loss!r} != 0"
    )
    np.testing.assert_array_equal(r.grad_queries, 0.0, err_msg="[GRAD-1] single positive: grad_queries")
    np.testing.assert_array_equal(r.grad_docs, 0.0, err_msg="[GRAD-1] single positive: grad_docs")
    assert r.grad_scale == 0.0, "[SCALE-2] single positive: grad_scale"


@pytest.mark.parametrize("directions", [("query_to_doc", "doc_to_query")])
def test_one_query_per_direction(directions: tuple[str, ...]) -> None:
    """N = 1 with per_direction (PART-3): both rows hold only the positive pair (and hard negatives)."""
    q, docs = make_inputs(1, 3, 2, seed=8)
    case = LossCase(directions, "per_direction", 4.0, "cos", "hard_negatives", 2.0)
    check_mpmath(case, q, docs, f"replay: make_inputs(1, 3, 2, seed=8) with {case!r}")


# --------------------------------------------------------------------------------------------------
# The cos floor: zero and sub-1e-12 vectors (SIM-1, GRAD-3)
# --------------------------------------------------------------------------------------------------

ZERO_ROWS = {
    "zero-query": [("q", 1)],
    "zero-positive": [("d", 0, 2)],
    "zero-hard-negative": [("d", 1, 0)],
    "zero-query-and-its-positive": [("q", 0), ("d", 0, 0)],
    "sub-eps-query": [("q", 2, 3e-13)],
    "sub-eps-positive": [("d", 0, 1, 4e-13)],
    "everything-zero": [("all",)],
}


def _with_small_rows(spec: list[tuple]) -> tuple[np.ndarray, np.ndarray]:
    q, docs = make_inputs(3, 2, 3, seed=21)
    for entry in spec:
        if entry[0] == "all":
            q[:] = 0.0
            docs[:] = 0.0
        elif entry[0] == "q":
            norm = entry[2] if len(entry) > 2 else 0.0
            q[entry[1]] = q[entry[1]] / np.linalg.norm(q[entry[1]]) * norm
        else:
            norm = entry[3] if len(entry) > 3 else 0.0
            docs[entry[1], entry[2]] = (
                docs[entry[1], entry[2]] / np.linalg.norm(docs[entry[1], entry[2]]) * norm
            )
    return q, docs


ZERO_CASES = [(name, dirs) for name in ZERO_ROWS for dirs in (QD_SUBSETS[0], QD_SUBSETS[-1])]


@pytest.mark.parametrize(
    ("name", "directions"), ZERO_CASES, ids=[f"{n}|{short_label(d)}" for n, d in ZERO_CASES]
)
def test_cos_floor_matches_eps_branch(name: str, directions: tuple[str, ...]) -> None:
    """SIM-1 / GRAD-3: finite loss and gradients; below 1e-12 the gradient is that of x / 1e-12."""
    q, docs = _with_small_rows(ZERO_ROWS[name])
    case = LossCase(directions, "joint", 5.0, "cos", "in_batch_negatives", 1.0)
    expected = oracle(q, docs, **case.kwargs())
    direct = direct_loss_and_grad(q, docs, **case.kwargs())
    for implementation_name, implementation in IMPLEMENTATIONS.items():
        got = implementation(q, docs, Config(**case.kwargs()))
        for field in ("per_query_loss", "grad_queries", "grad_docs"):
            assert np.all(np.isfinite(getattr(got, field))), f"[NUM-1] {field} not finite for {name}"
        replay = f"replay: {name} rows in make_inputs(3, 2, 3, seed=21) with {case!r} ({implementation_name})"
        check_against(expected, got, case, q, docs, replay)
        check_against(direct, got, case, q, docs, replay, rtol=1e-10)


@pytest.mark.peers
def test_cos_floor_matches_sentence_transformers() -> None:
    """GRAD-3 is torch.nn.functional.normalize's behaviour: the ST peer agrees at a zero query."""
    pytest.importorskip("sentence_transformers")
    from tests.oracles.st_peer import st_loss_and_grad

    q, docs = _with_small_rows(ZERO_ROWS["zero-query-and-its-positive"] + ZERO_ROWS["sub-eps-query"])
    case = LossCase(QD_SUBSETS[0], "joint", 5.0, "cos", "all_negatives", 1.0)
    got = loss_and_grad(q, docs, Config(**case.kwargs()))
    peer = st_loss_and_grad(q, docs, **case.kwargs())
    m = natural_magnitudes(case, q, docs)
    assert_close(
        got.grad_queries,
        peer.grad_queries,
        rtol=1e-10,
        what="grad_queries",
        clause="GRAD-3",
        floor=m.grad_queries,
    )
    assert_close(
        got.grad_docs, peer.grad_docs, rtol=1e-10, what="grad_docs", clause="GRAD-3", floor=m.grad_docs
    )
    assert_close(got.loss, peer.loss, rtol=1e-10, what="loss", clause="SIM-1", floor=m.loss)


# --------------------------------------------------------------------------------------------------
# Duplicated rows (tied logits) and huge logits (NUM-1)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("similarity", ["cos", "dot"])
@pytest.mark.parametrize("directions", [QD_SUBSETS[0], QD_SUBSETS[-1]], ids=["qd", "gte"])
def test_duplicated_rows_match_mpmath(directions: tuple[str, ...], similarity: str) -> None:
    """Identical queries, identical documents, a query equal to a document: masks must go by index."""
    q, docs = make_inputs(4, 3, 3, seed=33)
    q[3] = q[0]
    docs[0, 1] = docs[0, 2]
    docs[2, 3] = docs[0, 3]
    docs[1, 0] = q[0]
    case = LossCase(directions, "joint", 2.0, similarity, "all_negatives", 1.5)
    check_mpmath(case, q, docs, f"replay: duplicated rows of make_inputs(4, 3, 3, seed=33) with {case!r}")


LARGE = [
    ("dot-scale-1e3-norm-1e3", "dot", 1e3, 1e3),
    ("dot-scale-1e3-norm-30", "dot", 1e3, 30.0),
    ("cos-scale-1e3", "cos", 1e3, 1.0),
    ("cos-scale-1e8", "cos", 1e8, 1.0),
]


@pytest.mark.parametrize("directions", [QD_SUBSETS[0], QD_SUBSETS[-1]], ids=["qd", "gte"])
@pytest.mark.parametrize(("name", "similarity", "scale", "norm"), LARGE, ids=[c[0] for c in LARGE])
def test_huge_logits_are_finite_and_match_mpmath(
    name: str, similarity: str, scale: float, norm: float, directions: tuple[str, ...]
) -> None:
    """NUM-1: logits up to 1e9 stay finite (no exp overflow) and agree with the 50-digit oracle."""
    q, docs = make_inputs(3, 2, 4, seed=44)
    q *= norm
    docs *= norm
    case = LossCase(directions, "joint", scale, similarity, "in_batch_negatives", 0.5)
    expected = oracle(q, docs, **case.kwargs())
    for implementation_name, implementation in IMPLEMENTATIONS.items():
        got = implementation(q, docs, Config(**case.kwargs()))
        what = f"{name} ({implementation_name})"
        assert math.isfinite(got.loss) and math.isfinite(got.grad_scale), (
            f"[NUM-1] {what}: {got.loss}, {got.grad_scale}"
        )
        for field in ("per_query_loss", "grad_queries", "grad_docs"):
            assert np.all(np.isfinite(getattr(got, field))), f"[NUM-1] {what}: {field} not finite"
        check_against(expected, got, case, q, docs, f"replay: {what} with {case!r}")


@reference_settings(max_examples=60)
@given(
    p=problems(cases=loss_cases().map(lambda c: LossCase(**{**c.kwargs(), "scale": c.scale * 1e4}))),
    blow_up=st.sampled_from((1.0, 1e2, 1e4)),
)
def test_large_logits_stay_finite(p: Problem, blow_up: float) -> None:
    """NUM-1 and GRAD-2: finite inputs give finite outputs; masked entries never produce NaN."""
    q, docs = p.queries * blow_up, p.docs * blow_up
    for name, implementation in IMPLEMENTATIONS.items():
        got = implementation(q, docs, Config(**p.case.kwargs()))
        values = [
            got.loss,
            got.grad_scale,
            *np.ravel(got.per_query_loss),
            *np.ravel(got.grad_queries),
            *np.ravel(got.grad_docs),
        ]
        assert all(math.isfinite(v) for v in values), (
            f"[NUM-1] non-finite output (x{blow_up}, {name}). {p.replay}"
        )


# --------------------------------------------------------------------------------------------------
# LOSS-2: per-query losses are >= 0 (every row set contains the positive)
# --------------------------------------------------------------------------------------------------


@reference_settings(max_examples=80)
@given(p=problems())
def test_per_query_losses_are_non_negative(p: Problem) -> None:
    """LOSS-2, exactly: the reference reads ``p_g`` off its own logit row, so the max-shifted
    logsumexp over a row that contains ``p_g`` can never round below it."""
    for name, implementation in IMPLEMENTATIONS.items():
        got = implementation(p.queries, p.docs, Config(**p.case.kwargs()))
        worst = float(np.min(got.per_query_loss))
        assert worst >= 0.0, f"[LOSS-2] per-query loss {worst!r} < 0 ({name}). {p.replay}"


# --------------------------------------------------------------------------------------------------
# DIR-2 (order and repetition) and HARD-6 (strength 0 == no hardness)
# --------------------------------------------------------------------------------------------------


def _assert_same(a, b, what: str, clause: str, replay: str) -> None:
    assert a.loss == b.loss, f"[{clause}] {what}: loss {a.loss!r} != {b.loss!r}. {replay}"
    assert a.grad_scale == b.grad_scale, f"[{clause}] {what}: grad_scale differs. {replay}"
    for field in ("per_query_loss", "grad_queries", "grad_docs"):
        np.testing.assert_array_equal(
            getattr(a, field), getattr(b, field), err_msg=f"[{clause}] {what}: {field}. {replay}"
        )


@reference_settings(max_examples=40)
@given(p=problems(max_n=4, max_k=3, max_d=3), data=st.data())
def test_direction_order_and_repetition_are_irrelevant(p: Problem, data: st.DataObject) -> None:
    """DIR-2: any order, any repetition: the same config and the very same numbers."""
    names = list(p.case.directions)
    extra = data.draw(st.lists(st.sampled_from(names), max_size=4), label="repeated")
    shuffled = data.draw(st.permutations(names + extra), label="directions")
    canonical = Config(**p.case.kwargs())
    other = Config(**{**p.case.kwargs(), "directions": tuple(shuffled)})
    assert other == canonical and other.directions == p.case.directions, (
        f"[DIR-2] {shuffled} -> {other.directions}"
    )
    _assert_same(
        loss_and_grad(p.queries, p.docs, other),
        loss_and_grad(p.queries, p.docs, canonical),
        f"directions {shuffled}",
        "DIR-2",
        p.replay,
    )


@reference_settings(max_examples=40)
@given(p=problems(cases=loss_cases(hardness="inactive")), mode=st.sampled_from(HARDNESS_MODES[1:]))
def test_zero_strength_is_no_hardness(p: Problem, mode: str) -> None:
    """HARD-6: any mode at strength 0 is the loss without hardness, to the last bit."""
    plain = Config(**{**p.case.kwargs(), "hardness_mode": None, "hardness_strength": 0.0})
    zero = Config(**{**p.case.kwargs(), "hardness_mode": mode, "hardness_strength": 0.0})
    _assert_same(
        loss_and_grad(p.queries, p.docs, zero),
        loss_and_grad(p.queries, p.docs, plain),
        mode,
        "HARD-6",
        p.replay,
    )


@reference_settings(max_examples=30)
@given(p=problems(max_k=1, cases=loss_cases(hardness="active")))
def test_hard_negative_hardness_without_hard_negatives_changes_nothing(p: Problem) -> None:
    """HARD-3: with K = 1 the hard_negatives mode selects no entry."""
    case = LossCase(**{**p.case.kwargs(), "hardness_mode": "hard_negatives"})
    plain = LossCase(**{**p.case.kwargs(), "hardness_mode": None, "hardness_strength": 0.0})
    got = loss_and_grad(p.queries, p.docs, Config(**case.kwargs()))
    expected = loss_and_grad(p.queries, p.docs, Config(**plain.kwargs()))
    check_against(expected, got, plain, p.queries, p.docs, p.replay, rtol=1e-14)


# --------------------------------------------------------------------------------------------------
# Namespaces and dtypes
# --------------------------------------------------------------------------------------------------

NAMESPACES = {
    "numpy": lambda x: x,
    "torch": torch.from_numpy,
    "array_api_strict": array_api_strict.asarray,
}


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.numpy()
    if isinstance(x, np.ndarray):
        return x
    return np.from_dlpack(x)  # array_api_strict


@pytest.mark.parametrize("implementation", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("namespace", list(NAMESPACES))
def test_namespaces_and_dtypes(namespace: str, dtype: str, implementation: str) -> None:
    """Results come back in the input's namespace, float64, whatever the input dtype (LAYOUT-5)."""
    loss_and_grad = IMPLEMENTATIONS[implementation]
    q, docs = make_inputs(4, 3, 5, seed=55, spread=1.0)
    q, docs = q.astype(dtype), docs.astype(dtype)
    case = LossCase(QD_SUBSETS[-1], "joint", 10.0, "cos", "all_negatives", 2.0)
    config = Config(**case.kwargs())
    wrap = NAMESPACES[namespace]
    xq, xd = wrap(q), wrap(docs)
    xp = array_api_compat.array_namespace(xq)
    got = loss_and_grad(xq, xd, config)
    for field in ("per_query_loss", "grad_queries", "grad_docs"):
        value = getattr(got, field)
        assert array_api_compat.array_namespace(value) is xp, (
            f"[LAYOUT-5] {field} left the {namespace} namespace"
        )
        assert value.dtype == xp.float64, f"[LAYOUT-5] {field} has dtype {value.dtype}, expected float64"
    assert isinstance(got.loss, float) and isinstance(got.grad_scale, float)
    assert tuple(got.grad_docs.shape) == docs.shape and tuple(got.grad_queries.shape) == q.shape
    # float32 input is computed in float64: the same numbers as the upcast input, in the same namespace.
    upcast = loss_and_grad(wrap(q.astype(np.float64)), wrap(docs.astype(np.float64)), config)
    _assert_same(
        _Numpy(got),
        _Numpy(upcast),
        f"{namespace} {dtype} vs its float64 upcast",
        "LAYOUT-5",
        f"replay: seed=55 {case!r}",
    )
    # and the same numbers as numpy (up to the rounding of another BLAS).
    reference = loss_and_grad(q.astype(np.float64), docs.astype(np.float64), config)
    check_against(
        reference,
        _Numpy(got),
        case,
        q.astype(np.float64),
        docs.astype(np.float64),
        f"{namespace}",
        rtol=1e-13,
    )


class _Numpy:
    """A Result with its arrays as NumPy (for comparisons)."""

    def __init__(self, result) -> None:
        self.loss = result.loss
        self.grad_scale = result.grad_scale
        for field in ("per_query_loss", "grad_queries", "grad_docs"):
            setattr(self, field, _to_numpy(getattr(result, field)))


# --------------------------------------------------------------------------------------------------
# Chunking
# --------------------------------------------------------------------------------------------------


@reference_settings(max_examples=40)
@given(p=problems(max_n=6))
def test_chunk_size_does_not_change_the_result(p: Problem) -> None:
    """chunk_size is a memory knob: c >= N gives the very same numbers; c < N the same up to rounding."""
    config = Config(**p.case.kwargs())
    n = p.queries.shape[0]
    whole = engine.loss_and_grad(p.queries, p.docs, config)
    for c in sorted({n, n + 1, n + 5}):
        _assert_same(
            engine.loss_and_grad(p.queries, p.docs, config, chunk_size=c),
            whole,
            f"chunk_size={c}",
            "LOSS-1",
            p.replay,
        )
    for c in sorted({1, 2, max(1, n - 1)}):
        got = engine.loss_and_grad(p.queries, p.docs, config, chunk_size=c)
        check_against(whole, got, p.case, p.queries, p.docs, f"chunk_size={c}; {p.replay}", rtol=1e-13)
        streamed = engine.loss_and_grad(p.queries, p.docs, config, chunk_size=c, products="streamed")
        check_against(
            whole, streamed, p.case, p.queries, p.docs, f"chunk_size={c}, streamed; {p.replay}", rtol=1e-13
        )


def test_products_auto_holds_the_square_products_while_they_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    """``products="auto"`` holds the N x N products up to HELD_ELEMENTS and streams them beyond."""
    from infonce_spec.reference.engine import products as products_module

    q, docs = make_inputs(8, 2, 3, seed=5)
    u_d = docs.reshape(16, 3)
    # 3 square pairs: q q^T and d0 d0^T (each its own gradient), q d0^T (its rows' gradient) and its
    # transpose (doc_to_query's rows, their gradient): 4 * 64 numbers
    pieces = {("q", "d0"), ("q", "q"), ("d0", "q"), ("d0", "d0")}
    monkeypatch.setattr(products_module, "HELD_ELEMENTS", 4 * 64)
    assert products_module.Products(np, q, u_d, 1.0, pieces, "auto").hold
    assert not products_module.Products(np, q, u_d, 1.0, pieces, "streamed").hold
    monkeypatch.setattr(products_module, "HELD_ELEMENTS", 4 * 64 - 1)
    assert not products_module.Products(np, q, u_d, 1.0, pieces, "auto").hold
    assert products_module.Products(np, q, u_d, 1.0, pieces, "held").hold


@pytest.mark.parametrize("implementation", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("namespace", list(NAMESPACES))
@pytest.mark.parametrize("directions", QD_SUBSETS, ids=[short_label(d) for d in QD_SUBSETS])
def test_every_direction_in_every_namespace(
    directions: tuple[str, ...], namespace: str, implementation: str
) -> None:
    """Each row kind (and its masks) works in each namespace -- normative, engine held or streamed
    -- and gives numpy's numbers."""
    q, docs = make_inputs(3, 2, 4, seed=77)
    case = LossCase(directions, "joint", 6.0, "dot", "in_batch_negatives", 1.0)
    config = Config(**case.kwargs())
    wrap = NAMESPACES[namespace]
    got = _Numpy(IMPLEMENTATIONS[implementation](wrap(q), wrap(docs), config))
    check_against(
        loss_and_grad(q, docs, config), got, case, q, docs, f"replay: {namespace}, {case!r}", rtol=1e-13
    )
