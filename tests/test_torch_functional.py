"""infonce_spec.adapters.torch.infonce_loss against the float64 reference (LOSS-1, GRAD-1, SCALE-2, VAL-1).

Random configurations, shapes and dtypes (float64, float32, bfloat16, float16) from hypothesis; the
loss, the per-query losses and the embedding gradients (autograd) must lie within the error model
of tests/torch_helpers.py (derived in docs/torch.md). The reference sees the exact float64 upcast
of the same (possibly low-precision) embeddings.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import assume, given

from infonce_spec.adapters.torch import LossConfig, infonce_loss
from infonce_spec.errors import SpecTypeError, SpecViolation
from infonce_spec.reference import Config, loss_and_grad
from tests.torch_helpers import (
    Case,
    assert_within,
    cases,
    check_embedding_grads,
    embeddings,
    error_bounds,
    hyp_settings,
)


def run_adapter(case: Case, q: torch.Tensor, d: torch.Tensor, **extra: object) -> tuple[torch.Tensor, ...]:
    q = q.clone().requires_grad_(True)
    d = d.clone().requires_grad_(True)
    loss = infonce_loss(q, d, **case.config, **extra)
    loss.backward()
    return loss.detach(), q.grad, d.grad


def check_against_reference(case: Case) -> None:
    q, d = embeddings(case)
    loss, gq, gd = run_adapter(case, q, d)
    ref = loss_and_grad(q.double(), d.double(), Config(**case.config))
    bounds = error_bounds(case, q, d)
    replay = case.replay()
    assert loss.dtype == torch.promote_types(q.dtype, torch.float32), (
        f"[LOSS-1] loss dtype {loss.dtype}; {replay}"
    )
    assert gq.dtype == q.dtype and gd.dtype == d.dtype, (
        f"[GRAD-1] gradient dtypes {gq.dtype}, {gd.dtype}; {replay}"
    )
    assert_within(
        "loss",
        "LOSS-1",
        abs(float(loss) - ref.loss),
        bounds.loss,
        f"got {float(loss)!r}, ref {ref.loss!r}",
        replay,
    )
    check_embedding_grads("grad_queries", gq, ref.grad_queries, q, case, bounds, replay)
    check_embedding_grads("grad_docs", gd, ref.grad_docs, d, case, bounds, replay)


@hyp_settings(60)
@given(case=cases())
def test_loss_and_embedding_grads_match_reference(case: Case) -> None:
    """LOSS-1, GRAD-1 (and every row / mask / hardness clause the configs reach), all dtypes."""
    check_against_reference(case)


@hyp_settings(20)
@given(case=cases(dtypes=("float64", "float32")))
def test_per_query_losses_and_list_docs(case: Case) -> None:
    """LOSS-2: reduction='none' gives l_g; docs as a list of K (B, D) columns means the same (LAYOUT-2)."""
    q, d = embeddings(case)
    per_query = infonce_loss(q, list(d.unbind(0)), **case.config, reduction="none")
    ref = loss_and_grad(q.double(), d.double(), Config(**case.config))
    bounds = error_bounds(case, q, d)
    err = float((per_query.double() - ref.per_query_loss).abs().max())
    assert_within(
        "per_query_loss", "LOSS-2", err, bounds.loss, f"max abs difference over {case.b}", case.replay()
    )


@hyp_settings(20)
@given(case=cases(dtypes=("float64",)))
def test_scale_gradient(case: Case) -> None:
    """SCALE-2: a 0-d tensor scale with requires_grad gets dL/dscale."""
    q, d = embeddings(case)
    scale = torch.tensor(float(case.config["scale"]), dtype=torch.float64, requires_grad=True)
    config = {**case.config, "scale": scale}
    infonce_loss(q, d, **config).backward()
    ref = loss_and_grad(q, d, Config(**case.config))
    bounds = error_bounds(case, q, d)
    # dL/dscale = sum_e c_e s_e / N: |s_e| <= S, so its error is bounded like a gradient with J = S / scale.
    s_max = (
        1.0
        if case.config["similarity"] == "cos"
        else float(max(q.norm(dim=-1).max(), d.norm(dim=-1).max())) ** 2
    )
    bound = bounds.grad * s_max / float(case.config["scale"]) + bounds.loss
    err = abs(float(scale.grad) - ref.grad_scale)
    assert_within(
        "grad_scale",
        "SCALE-2",
        err,
        bound,
        f"got {float(scale.grad)!r}, ref {ref.grad_scale!r}",
        case.replay(),
    )


def test_grad3_zero_vectors_follow_the_floor() -> None:
    """GRAD-3 / SIM-1: an all-zero embedding has the gradient of x / 1e-12 (finite, matches the reference)."""
    case = Case(
        {
            "directions": ("query_to_doc", "doc_to_query"),
            "partition_mode": "joint",
            "scale": 20.0,
            "similarity": "cos",
            "hardness_mode": None,
            "hardness_strength": 0.0,
        },
        3,
        2,
        4,
        "float64",
        5,
        1.0,
    )
    q, d = embeddings(case)
    q[1] = 0.0
    d[0, 2] = 0.0
    _, gq, gd = run_adapter(case, q, d)
    ref = loss_and_grad(q, d, Config(**case.config))
    for got, want in ((gq, ref.grad_queries), (gd, ref.grad_docs)):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9, msg=lambda m: f"[GRAD-3] {m}")
    assert float(gq[1].abs().max()) > 1e9, "[GRAD-3] the floor branch should scale the gradient by 1/1e-12"


def test_grad2_fully_masked_rows_give_zero_not_nan() -> None:
    """GRAD-2: with N = 1, query_to_query and doc_to_doc rows are all masked: finite, exact gradients."""
    case = Case(
        {
            "directions": DIRS_ALL,
            "partition_mode": "joint",
            "scale": 20.0,
            "similarity": "cos",
            "hardness_mode": "all_negatives",
            "hardness_strength": 2.0,
        },
        1,
        3,
        5,
        "float32",
        1,
        1.0,
    )
    q, d = embeddings(case)
    loss, gq, gd = run_adapter(case, q, d)
    ref = loss_and_grad(q.double(), d.double(), Config(**case.config))
    assert torch.isfinite(loss) and torch.isfinite(gq).all() and torch.isfinite(gd).all()
    assert abs(float(loss) - ref.loss) <= error_bounds(case, q, d).loss


DIRS_ALL = ("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_num1_large_logits_stay_finite(dtype: str) -> None:
    """NUM-1: dot products of large-norm embeddings (logits ~1e5) give finite loss and gradients."""
    case = Case(
        {
            "directions": DIRS_ALL,
            "partition_mode": "joint",
            "scale": 50.0,
            "similarity": "dot",
            "hardness_mode": None,
            "hardness_strength": 0.0,
        },
        4,
        2,
        8,
        dtype,
        3,
        15.0,
    )
    q, d = embeddings(case)
    loss, gq, gd = run_adapter(case, q, d)
    ref = loss_and_grad(q.double(), d.double(), Config(**case.config))
    assert math.isfinite(float(loss)) and torch.isfinite(gq).all() and torch.isfinite(gd).all()
    assert abs(float(loss) - ref.loss) <= error_bounds(case, q, d).loss


def test_direction_order_and_repetition_are_irrelevant() -> None:
    """DIR-2: the same set of directions in another order, or repeated, is the same loss."""
    q, d = torch.randn(4, 3, dtype=torch.float64), torch.randn(2, 4, 3, dtype=torch.float64)
    a = infonce_loss(q, d, directions=("query_to_doc", "doc_to_doc", "query_to_query"))
    b = infonce_loss(q, d, directions=("query_to_query", "doc_to_doc", "query_to_doc", "doc_to_doc"))
    assert float(a) == float(b)


def test_hardness_zero_strength_is_no_hardness() -> None:
    """HARD-6: strength 0 (any mode) equals mode None exactly."""
    q, d = torch.randn(4, 3, dtype=torch.float64), torch.randn(2, 4, 3, dtype=torch.float64)
    base = infonce_loss(q, d)
    for mode in ("in_batch_negatives", "hard_negatives", "all_negatives"):
        assert float(infonce_loss(q, d, hardness_mode=mode, hardness_strength=0.0)) == float(base)


Q, D = torch.randn(3, 4), torch.randn(2, 3, 4)
ERROR_INPUTS = [
    # (kwargs or positional overrides, exception type, clause)
    ({"directions": ()}, SpecViolation, "DIR-1"),
    ({"directions": "query_to_doc"}, SpecTypeError, "DIR-1"),
    ({"directions": ("doc_to_query",)}, SpecViolation, "DIR-1"),
    ({"directions": ("query_to_doc", "docs")}, SpecViolation, "DIR-1"),
    ({"partition_mode": "mean"}, SpecViolation, "PART-1"),
    (
        {"partition_mode": "per_direction", "directions": ("query_to_doc", "doc_to_doc")},
        SpecViolation,
        "PART-4",
    ),
    (
        {"partition_mode": "per_anchor", "directions": ("query_to_doc", "query_to_query", "doc_to_doc")},
        SpecViolation,
        "PART-6",
    ),
    ({"scale": 0.0}, SpecViolation, "SCALE-1"),
    ({"scale": float("inf")}, SpecViolation, "SCALE-1"),
    ({"scale": "20"}, SpecTypeError, "SCALE-1"),
    ({"scale": torch.tensor(-1.0)}, SpecViolation, "SCALE-1"),
    ({"similarity": "l2"}, SpecViolation, "SIM-3"),
    ({"hardness_mode": "hard"}, SpecViolation, "HARD-1"),
    ({"hardness_mode": "hard_negatives", "hardness_strength": -1.0}, SpecViolation, "HARD-1"),
    ({"hardness_strength": float("nan")}, SpecViolation, "HARD-1"),
    ({"queries": torch.randn(3)}, SpecViolation, "LAYOUT-1"),
    ({"queries": torch.randn(0, 4), "docs": torch.randn(1, 0, 4)}, SpecViolation, "LAYOUT-1"),
    ({"queries": [[1.0]]}, SpecTypeError, "LAYOUT-5"),
    ({"docs": "docs"}, SpecTypeError, "LAYOUT-5"),
    ({"docs": [torch.ones(3, 4, dtype=torch.bool)]}, SpecTypeError, "LAYOUT-5"),
    ({"queries": torch.ones(3, 4, dtype=torch.complex64)}, SpecTypeError, "LAYOUT-5"),
    ({"docs": torch.randn(3, 4)}, SpecViolation, "LAYOUT-2"),
    ({"docs": torch.randn(2, 4, 4)}, SpecViolation, "LAYOUT-2"),
    ({"docs": []}, SpecViolation, "LAYOUT-2"),
    ({"docs": torch.randn(2, 3, 5)}, SpecViolation, "LAYOUT-2"),
    ({"queries": torch.tensor([[1.0, float("nan"), 0.0, 0.0]] * 3)}, SpecViolation, "LAYOUT-4"),
    ({"docs": torch.full((1, 3, 4), float("inf"))}, SpecViolation, "LAYOUT-4"),
    ({"queries": torch.ones(3, 4, dtype=torch.int64)}, SpecTypeError, "LAYOUT-5"),
]


@pytest.mark.parametrize(
    ("overrides", "exc", "clause"), ERROR_INPUTS, ids=[f"{c}-{i}" for i, (_, _, c) in enumerate(ERROR_INPUTS)]
)
def test_invalid_inputs_name_their_clause(overrides: dict, exc: type, clause: str) -> None:
    """VAL-1: every invalid input raises ValueError/TypeError whose message and .clause name the clause."""
    kwargs = dict(overrides)
    queries = kwargs.pop("queries", Q)
    docs = kwargs.pop("docs", D)
    with pytest.raises(exc) as info:
        infonce_loss(queries, docs, **kwargs)
    assert info.value.clause == clause, f"expected clause {clause}, got {info.value.clause}: {info.value}"
    assert f"[{clause}]" in str(info.value)
    assert isinstance(info.value, (ValueError, TypeError))


def test_config_is_canonical() -> None:
    """DIR-2: LossConfig stores the directions deduplicated in canonical order."""
    cfg = LossConfig(directions=["doc_to_doc", "query_to_doc", "doc_to_doc"])
    assert cfg.directions == ("query_to_doc", "doc_to_doc")


WORKED_EXAMPLE = json.loads((Path(__file__).parents[1] / "spec" / "worked_example.json").read_text())


@pytest.mark.parametrize("example", WORKED_EXAMPLE["cases"], ids=[c["name"] for c in WORKED_EXAMPLE["cases"]])
def test_worked_example(example: dict) -> None:
    """The spec's worked example (section 12): loss, l_g and every gradient, float64, within the error model."""
    config = {**example["config"], "directions": tuple(example["config"]["directions"])}
    q = torch.tensor(example["inputs"]["queries"], dtype=torch.float64)
    d = torch.tensor(example["inputs"]["docs"], dtype=torch.float64)
    case = Case(config, q.shape[0], d.shape[0], q.shape[1], "float64", 0, 1.0)
    scale = torch.tensor(float(config["scale"]), dtype=torch.float64, requires_grad=True)
    qv, dv = q.clone().requires_grad_(), d.clone().requires_grad_()
    loss = infonce_loss(qv, dv, **{**config, "scale": scale})
    loss.backward()
    per_query = infonce_loss(q, d, **config, reduction="none")
    exp = example["expected"]
    bounds = error_bounds(case, q, d)
    replay = f"spec/worked_example.json case {example['name']}"
    assert_within("loss", "LOSS-1", abs(float(loss.detach()) - exp["loss"]), bounds.loss, "", replay)
    err = float((per_query - torch.tensor(exp["per_query_loss"], dtype=torch.float64)).abs().max())
    assert_within("per_query_loss", "LOSS-2", err, bounds.loss, "", replay)
    check_embedding_grads(
        "grad_queries",
        qv.grad,
        torch.tensor(exp["grad_queries"], dtype=torch.float64),
        q,
        case,
        bounds,
        replay,
    )
    check_embedding_grads(
        "grad_docs", dv.grad, torch.tensor(exp["grad_docs"], dtype=torch.float64), d, case, bounds, replay
    )
    s_max = (
        1.0 if config["similarity"] == "cos" else float(max(q.norm(dim=-1).max(), d.norm(dim=-1).max())) ** 2
    )
    bound = bounds.grad * s_max / float(config["scale"]) + bounds.loss
    assert_within("grad_scale", "SCALE-2", abs(float(scale.grad) - exp["grad_scale"]), bound, "", replay)


@pytest.mark.peers
@hyp_settings(15)
@given(case=cases(dtypes=("float64",)))
def test_same_as_sentence_transformers(case: Case) -> None:
    """The behavioural anchor: sentence-transformers 6.2.0 MultipleNegativesRankingLoss on the same embeddings."""
    mnrl = pytest.importorskip("sentence_transformers.sentence_transformer.losses.multiple_negatives_ranking")
    util = pytest.importorskip("sentence_transformers.util")
    cfg = case.config
    assume(cfg["partition_mode"] != "per_anchor")  # sentence-transformers 6.2.0 has no per_anchor (PART-5)
    peer = mnrl.MultipleNegativesRankingLoss(
        None,
        scale=cfg["scale"],
        similarity_fct=util.cos_sim if cfg["similarity"] == "cos" else util.dot_score,
        directions=cfg["directions"],
        partition_mode=cfg["partition_mode"],
        hardness_mode=cfg["hardness_mode"],
        hardness_strength=cfg["hardness_strength"],
    )
    q, d = embeddings(case)
    expected = peer.compute_loss_from_embeddings([q, *d.unbind(0)], None)
    got = infonce_loss(q, d, **cfg)
    bound = 2 * error_bounds(case, q, d).loss
    assert_within(
        "loss vs sentence-transformers", "LOSS-1", abs(float(got) - float(expected)), bound, "", case.replay()
    )
