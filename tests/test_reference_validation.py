"""Family 5: every validation rule of the reference raises the clause-naming error (VAL-1).

Each case builds one bad input and expects :class:`infonce_spec.errors.SpecViolation` (a
``ValueError``) -- or :class:`~infonce_spec.errors.SpecTypeError` (also a ``TypeError``) where the
input has the wrong type -- whose ``.clause`` is the clause that input breaks and whose message
quotes it. The test id names the rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import array_api_strict
import numpy as np
import pytest
import torch

from infonce_spec.errors import SpecTypeError, SpecViolation
from infonce_spec.reference import (
    Config,
    engine,
    linear_encoder_grad,
    loss,
    loss_and_grad,
    normative,
    rank_expectations,
)


def _arrays(n: int = 3, k: int = 2, d: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, d)), rng.standard_normal((k, n, d))


def _expect(clause: str, fn: Callable[[], Any], *, type_error: bool = False) -> SpecViolation:
    expected = SpecTypeError if type_error else SpecViolation
    with pytest.raises(expected) as info:
        fn()
    exc = info.value
    assert isinstance(exc, ValueError), f"[VAL-1] {type(exc).__name__} is not a ValueError"
    if type_error:
        assert isinstance(exc, TypeError), f"[VAL-1] {type(exc).__name__} for a wrong type is not a TypeError"
    assert exc.clause == clause, f"[VAL-1] raised for clause {exc.clause!r}, expected {clause!r}: {exc}"
    assert clause in str(exc), f"[VAL-1] message does not quote {clause}: {exc}"
    return exc


# --------------------------------------------------------------------------------------------------
# Configuration (Config is validated on construction)
# --------------------------------------------------------------------------------------------------

CONFIG_ERRORS: list[tuple[str, str, dict[str, Any], bool]] = [
    ("empty-directions", "DIR-1", {"directions": ()}, False),
    ("unknown-direction", "DIR-1", {"directions": ("query_to_doc", "doc_to_everything")}, False),
    ("missing-query_to_doc", "DIR-1", {"directions": ("doc_to_query",)}, False),
    (
        "missing-query_to_doc-gte",
        "DIR-1",
        {"directions": ("query_to_query", "doc_to_query", "doc_to_doc")},
        False,
    ),
    ("directions-a-bare-string", "DIR-1", {"directions": "query_to_doc"}, True),
    ("directions-not-iterable", "DIR-1", {"directions": 3}, True),
    ("bad-partition_mode", "PART-1", {"partition_mode": "separate"}, False),
    ("partition_mode-None", "PART-1", {"partition_mode": None}, False),
    (
        "per_direction-with-query_to_query",
        "PART-4",
        {"directions": ("query_to_doc", "query_to_query"), "partition_mode": "per_direction"},
        False,
    ),
    (
        "per_direction-with-doc_to_doc",
        "PART-4",
        {"directions": ("query_to_doc", "doc_to_doc"), "partition_mode": "per_direction"},
        False,
    ),
    (
        "per_direction-gte",
        "PART-4",
        {
            "directions": ("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc"),
            "partition_mode": "per_direction",
        },
        False,
    ),
    ("scale-zero", "SCALE-1", {"scale": 0.0}, False),
    ("scale-negative-zero", "SCALE-1", {"scale": -0.0}, False),
    ("scale-negative", "SCALE-1", {"scale": -20.0}, False),
    ("scale-inf", "SCALE-1", {"scale": math.inf}, False),
    ("scale-minus-inf", "SCALE-1", {"scale": -math.inf}, False),
    ("scale-nan", "SCALE-1", {"scale": math.nan}, False),
    ("scale-string", "SCALE-1", {"scale": "20"}, True),
    ("scale-None", "SCALE-1", {"scale": None}, True),
    ("scale-complex", "SCALE-1", {"scale": 1 + 2j}, True),
    ("bad-similarity", "SIM-3", {"similarity": "euclidean"}, False),
    ("similarity-None", "SIM-3", {"similarity": None}, False),
    ("similarity-torch-function", "SIM-3", {"similarity": torch.nn.functional.cosine_similarity}, False),
    ("bad-hardness_mode", "HARD-1", {"hardness_mode": "hardest_negatives", "hardness_strength": 1.0}, False),
    ("hardness_mode-string-None", "HARD-1", {"hardness_mode": "None"}, False),
    ("negative-strength", "HARD-1", {"hardness_mode": "all_negatives", "hardness_strength": -1.0}, False),
    ("negative-strength-without-mode", "HARD-1", {"hardness_strength": -0.5}, False),
    ("inf-strength", "HARD-1", {"hardness_mode": "all_negatives", "hardness_strength": math.inf}, False),
    ("nan-strength", "HARD-1", {"hardness_mode": "in_batch_negatives", "hardness_strength": math.nan}, False),
    ("strength-string", "HARD-1", {"hardness_mode": "hard_negatives", "hardness_strength": "5"}, True),
]


@pytest.mark.parametrize(
    ("clause", "kwargs", "type_error"),
    [c[1:] for c in CONFIG_ERRORS],
    ids=[f"{c[1]}:{c[0]}" for c in CONFIG_ERRORS],
)
def test_invalid_config_raises_its_clause(clause: str, kwargs: dict[str, Any], type_error: bool) -> None:
    _expect(clause, lambda: Config(**kwargs), type_error=type_error)


@pytest.mark.parametrize("clause", ["SCALE-1", "HARD-1", "PART-4"])
def test_config_replace_is_validated_too(clause: str) -> None:
    """VAL-1: a copy with new values goes through the same rules."""
    base = Config(directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction")
    change = {
        "SCALE-1": {"scale": -1.0},
        "HARD-1": {"hardness_mode": "all_negatives", "hardness_strength": -2.0},
        "PART-4": {"directions": ("query_to_doc", "doc_to_doc")},
    }[clause]
    _expect(clause, lambda: base.replace(**change))


# --------------------------------------------------------------------------------------------------
# Arrays (checked by loss / loss_and_grad / rank_expectations alike)
# --------------------------------------------------------------------------------------------------

Q, DOCS = _arrays()
Q_NAN = Q.copy()
Q_NAN[1, 2] = np.nan
DOCS_INF = DOCS.copy()
DOCS_INF[1, 0, 3] = np.inf
DOCS_MINF = DOCS.copy()
DOCS_MINF[0, 2, 0] = -np.inf

ARRAY_ERRORS: list[tuple[str, str, Any, Any, bool]] = [
    ("queries-1-D", "LAYOUT-1", Q[0], DOCS, False),
    ("queries-3-D", "LAYOUT-1", Q[None], DOCS, False),
    ("queries-0-D", "LAYOUT-1", np.float64(1.0), DOCS, False),
    ("N-zero", "LAYOUT-1", np.zeros((0, 4)), np.zeros((2, 0, 4)), False),
    ("D-zero", "LAYOUT-1", np.zeros((3, 0)), np.zeros((2, 3, 0)), False),
    ("docs-2-D", "LAYOUT-2", Q, DOCS[0], False),
    ("docs-4-D", "LAYOUT-2", Q, DOCS[None], False),
    ("K-zero", "LAYOUT-2", Q, np.zeros((0, 3, 4)), False),
    ("N-mismatch", "LAYOUT-2", Q, DOCS[:, :2, :], False),
    ("D-mismatch", "LAYOUT-2", Q, DOCS[:, :, :3], False),
    ("docs-N-D-swapped", "LAYOUT-2", Q, np.ascontiguousarray(np.swapaxes(DOCS, 1, 2)[:, :, :3]), False),
    ("nan-in-queries", "LAYOUT-4", Q_NAN, DOCS, False),
    ("inf-in-docs", "LAYOUT-4", Q, DOCS_INF, False),
    ("minus-inf-in-hard-negative-column", "LAYOUT-4", Q, DOCS_MINF, False),
    ("integer-queries", "LAYOUT-5", np.ones((3, 4), dtype=np.int64), DOCS, True),
    ("integer-docs", "LAYOUT-5", Q, np.ones((2, 3, 4), dtype=np.int32), True),
    ("bool-queries", "LAYOUT-5", np.ones((3, 4), dtype=bool), DOCS, True),
    ("complex-queries", "LAYOUT-5", Q.astype(np.complex128), DOCS, True),
    ("torch-integer-docs", "LAYOUT-5", torch.from_numpy(Q), torch.ones((2, 3, 4), dtype=torch.int64), True),
    ("list-queries", "LAYOUT-5", Q.tolist(), DOCS, True),
    ("list-docs", "LAYOUT-5", Q, DOCS.tolist(), True),
    ("None-queries", "LAYOUT-5", None, DOCS, True),
    ("mixed-numpy-torch", "LAYOUT-5", Q, torch.from_numpy(DOCS), True),
    ("mixed-numpy-array-api-strict", "LAYOUT-5", array_api_strict.asarray(Q), DOCS, True),
]


@pytest.mark.parametrize("entry", ["loss", "loss_and_grad", "rank_expectations"])
@pytest.mark.parametrize(
    ("clause", "queries", "docs", "type_error"),
    [c[1:] for c in ARRAY_ERRORS],
    ids=[f"{c[1]}:{c[0]}" for c in ARRAY_ERRORS],
)
def test_invalid_arrays_raise_their_clause(
    clause: str, queries: Any, docs: Any, type_error: bool, entry: str
) -> None:
    config = Config()
    call = {
        "loss": lambda: loss(queries, docs, config),
        "loss_and_grad": lambda: loss_and_grad(queries, docs, config),
        "rank_expectations": lambda: rank_expectations(queries, docs, config, 1),
    }[entry]
    _expect(clause, call, type_error=type_error)


def test_error_names_the_offending_value() -> None:
    """VAL-1: the message says what was wrong (the bad scale), not only which rule."""
    exc = _expect("SCALE-1", lambda: Config(scale=-3.5))
    assert "-3.5" in str(exc)
    exc = _expect("LAYOUT-2", lambda: loss(Q, DOCS[:, :2, :], Config()))
    assert "(2, 2, 4)" in str(exc)


# --------------------------------------------------------------------------------------------------
# Data parallel (DP-5 and the world size)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "world_size"), [(3, 2), (5, 3), (4, 3), (3, 4), (1, 2), (6, 4)])
def test_world_size_not_dividing_n_raises_dp5(n: int, world_size: int) -> None:
    """DP-5: unequal local batch sizes are an error."""
    q, docs = _arrays(n=n)
    _expect("DP-5", lambda: rank_expectations(q, docs, Config(), world_size))


@pytest.mark.parametrize(
    ("world_size", "type_error"),
    [(0, False), (-2, False), (2.0, True), ("2", True), (True, True), (None, True)],
)
def test_bad_world_size_raises(world_size: Any, type_error: bool) -> None:
    """DP-1: the world size is an integer >= 1."""
    q, docs = _arrays(n=4)
    _expect("DP-1", lambda: rank_expectations(q, docs, Config(), world_size), type_error=type_error)


@pytest.mark.parametrize(
    "entry",
    [loss_and_grad, normative.loss_and_grad, engine.loss_and_grad],
    ids=["auto", "normative", "engine"],
)
def test_config_must_be_a_config(entry: Callable[..., Any]) -> None:
    """A plain dict is not silently accepted as a configuration."""
    with pytest.raises(TypeError):
        entry(Q, DOCS, {"scale": 20.0})


@pytest.mark.parametrize("chunk_size", [0, -1, 1.5, True, "2"])
def test_bad_chunk_size_raises(chunk_size: Any) -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        engine.loss_and_grad(Q, DOCS, Config(), chunk_size=chunk_size)


@pytest.mark.parametrize("products", ["", "hold", None, 1])
def test_bad_products_raises(products: Any) -> None:
    with pytest.raises(ValueError, match="products must be one of"):
        engine.loss_and_grad(Q, DOCS, Config(), products=products)


# --------------------------------------------------------------------------------------------------
# The linear-encoder helper
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "clause", "shapes"),
    [
        ("weight-1-D", "LAYOUT-1", ((3, 5), (2, 3, 5), (5,))),
        ("x_docs-2-D", "LAYOUT-1", ((3, 5), (3, 5), (4, 5))),
        ("F-mismatch-queries", "LAYOUT-2", ((3, 6), (2, 3, 5), (4, 5))),
        ("F-mismatch-docs", "LAYOUT-2", ((3, 5), (2, 3, 6), (4, 5))),
    ],
)
def test_linear_encoder_shape_errors(name: str, clause: str, shapes: tuple) -> None:
    xq, xd, w = (np.ones(s) for s in shapes)
    _expect(clause, lambda: linear_encoder_grad(xq, xd, w, Config()))


def test_linear_encoder_rejects_non_arrays() -> None:
    _expect(
        "LAYOUT-5",
        lambda: linear_encoder_grad(np.ones((3, 5)), np.ones((2, 3, 5)), [[1.0] * 5] * 4, Config()),
        type_error=True,
    )
