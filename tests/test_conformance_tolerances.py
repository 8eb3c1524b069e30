"""The tolerance model accepts float32 / bfloat16 runs of our torch losses and rejects wrong ones."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from infonce_spec.adapters.bundled import TorchAdapter
from infonce_spec.conformance.compare import ConformanceFailure, PremiseFailure
from infonce_spec.conformance.properties.base import Context
from infonce_spec.conformance.properties.checks import reference_check
from infonce_spec.conformance.protocol import LoadedAdapter
from infonce_spec.conformance.runner import run_adapter
from infonce_spec.conformance.tolerances import (
    COS_EPS,
    cos_eps_ambiguous,
    embedding_bounds,
    round_to_dtype,
)
from infonce_spec.reference import DIRECTIONS, HARDNESS_MODES, Config


def _random_cases(seed: int, count: int, dtype: str):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    for _ in range(count):
        n, k, d = int(rng.integers(1, 7)), int(rng.integers(1, 4)), int(rng.choice([1, 3, 16, 64]))
        directions = ("query_to_doc", *[x for x in DIRECTIONS[1:] if rng.random() < 0.5])
        sim = str(rng.choice(["cos", "dot"]))
        mode = None if rng.random() < 0.5 else str(rng.choice(HARDNESS_MODES))
        config = Config(
            directions=directions,
            similarity=sim,
            scale=float(rng.choice([1.0, 20.0, 1000.0])) if sim == "cos" else 5.0,
            hardness_mode=mode,
            hardness_strength=1.5 if mode else 0.0,
        )
        x = round_to_dtype(rng.standard_normal((n * (k + 1), d)), dtype)
        if sim == "cos" and cos_eps_ambiguous(x, "float32"):
            continue
        yield {"queries": x[:n], "docs": x[n:].reshape(k, n, d), "config": config}


@pytest.mark.parametrize(
    ("dtype", "cached"), [("float32", False), ("float32", True), ("bfloat16", False), ("bfloat16", True)]
)
def test_correct_low_precision_runs_are_accepted_with_a_wide_margin(dtype: str, cached: bool) -> None:
    adapter = TorchAdapter(f"torch-{dtype}", dtype=dtype, cached=cached)
    ctx = Context(LoadedAdapter(spec="-", adapter=adapter))
    for case in _random_cases(1, 40, dtype):
        reference_check(case, ctx, "GRAD-1", scale_grad=True)
    assert ctx.comparisons > 100
    assert ctx.worst_ratio < 0.2  # at least 5x below every bound (measured: ~0.02 float32, ~0.12 bfloat16)


@pytest.mark.parametrize(
    "spec",
    ["infonce_spec.adapters.bundled:uncached_float32", "infonce_spec.adapters.bundled:cached_bfloat16"],
)
def test_the_suite_passes_float32_and_bfloat16_runs(spec: str) -> None:
    """One run per adapter, each its own test (two workers can take one each)."""
    rep = run_adapter(spec, profile="quick", world_sizes=(), reproducer_dir=None)
    assert rep.ok, [(r.label, r.failure) for r in rep.results if r.status not in ("pass", "not claimed")]


def test_a_wrong_implementation_is_rejected_by_orders_of_magnitude() -> None:
    class OffByOnePercent(TorchAdapter):  # temperature 1% off: a realistic configuration bug
        def embeddings(self, case):  # type: ignore[no-untyped-def]
            from infonce_spec.conformance.protocol import EmbeddingCase

            bad = dataclasses.replace(case.config, scale=case.config.scale * 1.01)
            return super().embeddings(EmbeddingCase(case.queries, case.docs, bad))

    ctx = Context(LoadedAdapter(spec="-", adapter=OffByOnePercent("off", dtype="float32")))
    rng = np.random.default_rng(0)
    q, d = (
        round_to_dtype(rng.normal(size=(6, 16)), "float32"),
        round_to_dtype(rng.normal(size=(2, 6, 16)), "float32"),
    )
    # As reference/query_to_doc checks it: the plain case is that property's own (QD-1, its SCALE-1
    # included), so a wrong scale fails it, not a premise.
    with pytest.raises(ConformanceFailure) as info:
        reference_check(
            {"queries": q, "docs": d, "config": Config(scale=20.0)}, ctx, "QD-1", owns=("query_to_doc",)
        )
    assert info.value.clause == "QD-1" and not isinstance(info.value, PremiseFailure)
    assert info.value.mismatch is not None and info.value.mismatch.ratio > 100


def test_bounds_follow_the_unit_roundoff_and_the_cos_floor() -> None:
    rng = np.random.default_rng(0)
    q, d = rng.normal(size=(4, 8)), rng.normal(size=(2, 4, 8))
    b64, b32 = embedding_bounds(q, d, Config(), "float64"), embedding_bounds(q, d, Config(), "float32")
    assert b32.loss / b64.loss == pytest.approx(2.0**29, rel=1e-6)
    q[0] = 0.0  # a zero query: its cos gradient is scaled by 1/1e-12 (GRAD-3), and so is its bound
    b = embedding_bounds(q, d, Config(), "float64")
    assert b.grad_queries[0, 0] == pytest.approx(b.grad_queries[1, 0] * np.linalg.norm(q[1]) / COS_EPS)
    assert cos_eps_ambiguous(np.array([[COS_EPS * (1 + 1e-15)]]), "float64")
    assert cos_eps_ambiguous(np.array([[COS_EPS * (1 - 1e-7)]]), "float32")
    assert not cos_eps_ambiguous(np.array([[2 * COS_EPS], [0.0], [1e-14]]), "float64")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_round_to_dtype_matches_torch(dtype: str) -> None:
    x = np.random.default_rng(0).normal(size=1000) * np.logspace(-5, 4, 1000)
    expected = torch.tensor(x).to(getattr(torch, dtype)).double().numpy()
    np.testing.assert_array_equal(round_to_dtype(x, dtype), expected)
