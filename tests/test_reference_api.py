"""The reference's entry points: which implementation runs, torch inputs that require grad, and the
configuration's copies (LAYOUT-5, VAL-1, DIR-2)."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch

from infonce_spec.errors import SpecViolation
from infonce_spec.reference import Config, engine, loss, loss_and_grad, normative
from infonce_spec.reference import api as loss_module
from infonce_spec.vocabulary import DIRECTIONS

GTE = Config(directions=DIRECTIONS, scale=7.0, hardness_mode="in_batch_negatives", hardness_strength=1.5)


def _inputs(n: int = 4, k: int = 2, d: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return rng.standard_normal((n, d)), rng.standard_normal((k, n, d))


# --------------------------------------------------------------------------------------------------
# torch inputs with requires_grad: computed on their values, no graph, no warning
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("entry", ["normative", "engine", "auto"])
def test_torch_inputs_that_require_grad(entry: str, dtype: torch.dtype) -> None:
    """A requires-grad tensor is read through its values: no UserWarning, no autograd graph, plain
    float64 results equal to those of the detached input (README: torch inputs work)."""
    fn = {"normative": normative.loss_and_grad, "engine": engine.loss_and_grad, "auto": loss_and_grad}[entry]
    q_np, d_np = _inputs()
    q = torch.tensor(q_np, dtype=dtype, requires_grad=True)
    d = torch.tensor(d_np, dtype=dtype, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = fn(q, d, GTE)
    expected = fn(q.detach(), d.detach(), GTE)
    for field in ("per_query_loss", "grad_queries", "grad_docs"):
        value = getattr(got, field)
        assert isinstance(value, torch.Tensor) and value.dtype == torch.float64, f"[LAYOUT-5] {field}"
        assert not value.requires_grad and value.grad_fn is None, f"{field} carries an autograd graph"
        assert torch.equal(value, getattr(expected, field)), f"{field} differs from the detached input's"
    assert isinstance(got.loss, float) and isinstance(got.grad_scale, float)
    assert got.loss == expected.loss and got.grad_scale == expected.grad_scale
    assert q.grad is None and d.grad is None


def test_torch_queries_that_require_grad_are_read_by_value() -> None:
    """``loss_and_grad(torch.randn(4, 8, dtype=torch.float64, requires_grad=True), d, Config())``: no
    warning, the same loss as :func:`loss`, and results that carry no autograd graph."""
    torch.manual_seed(0)
    q = torch.randn(4, 8, dtype=torch.float64, requires_grad=True)
    d = torch.randn(2, 4, 8, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = loss_and_grad(q, d, Config())
        assert loss(q, d, Config()) == result.loss
    assert result.grad_queries.grad_fn is None


# --------------------------------------------------------------------------------------------------
# loss_and_grad: the normative reference for small batches, the engine for large ones
# --------------------------------------------------------------------------------------------------


def test_logit_count_is_n_times_the_row_widths() -> None:
    """§4: query_to_doc and doc_to_doc rows have K·N entries, query_to_query and doc_to_query N."""
    assert loss_module.logit_count(5, 3, Config()) == 5 * 15
    assert loss_module.logit_count(5, 3, GTE) == 5 * (15 + 5 + 5 + 15)


@pytest.mark.parametrize("limit_offset", [0, -1])
def test_loss_and_grad_chooses_by_size(monkeypatch: pytest.MonkeyPatch, limit_offset: int) -> None:
    """At most PLAIN_MAX_LOGITS logits: the normative reference, bit for bit; beyond: the engine."""
    q, d = _inputs()
    count = loss_module.logit_count(4, 2, GTE)
    monkeypatch.setattr(loss_module, "PLAIN_MAX_LOGITS", count + limit_offset)
    chosen = normative if limit_offset == 0 else engine
    got, expected = loss_and_grad(q, d, GTE), chosen.loss_and_grad(q, d, GTE)
    for field in ("per_query_loss", "grad_queries", "grad_docs"):
        assert np.array_equal(getattr(got, field), getattr(expected, field)), field
    assert got.loss == expected.loss and got.grad_scale == expected.grad_scale


def test_normative_and_engine_agree_at_the_switch() -> None:
    """Both sides of PLAIN_MAX_LOGITS compute the same function (to 1e-12 of the largest element)."""
    q, d = _inputs(n=40, k=3, d=16)
    a, b = normative.loss_and_grad(q, d, GTE), engine.loss_and_grad(q, d, GTE)
    for field in ("per_query_loss", "grad_queries", "grad_docs"):
        x, y = getattr(a, field), getattr(b, field)
        assert np.max(np.abs(x - y)) <= 1e-12 * np.max(np.abs(y)), field
    assert a.loss == pytest.approx(b.loss, rel=1e-12) and a.grad_scale == pytest.approx(
        b.grad_scale, rel=1e-12
    )


# --------------------------------------------------------------------------------------------------
# Config copies: dataclasses.replace semantics, validated; the given-order copy for DIR-2 checks
# --------------------------------------------------------------------------------------------------


def test_replace_is_dataclasses_replace() -> None:
    base = Config(directions=("doc_to_query", "query_to_doc"), scale=3.0)
    assert (
        base.replace(scale=4.0)
        == dataclasses.replace(base, scale=4.0)
        == Config(directions=("query_to_doc", "doc_to_query"), scale=4.0)
    )
    with pytest.raises(TypeError):
        base.replace(temperature=0.5)  # not a field


def test_with_given_directions_keeps_order_and_repeats() -> None:
    """DIR-2: an implementation may be handed any order and repetition; the reference reads the set."""
    base = Config(scale=3.0)
    given = base.with_given_directions(("doc_to_doc", "query_to_doc", "doc_to_doc"))
    assert given.directions == ("doc_to_doc", "query_to_doc", "doc_to_doc")
    assert given.selected_directions == ("query_to_doc", "doc_to_doc")
    assert given.replace(scale=5.0).directions == given.directions
    q, d = _inputs()
    canonical = Config(directions=("query_to_doc", "doc_to_doc"), scale=3.0)
    assert loss(q, d, given) == loss(q, d, canonical)
    with pytest.raises(SpecViolation) as info:
        base.with_given_directions(("doc_to_doc",))
    assert info.value.clause == "DIR-1"
