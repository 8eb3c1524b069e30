"""The data-parallel contract over real gloo process groups at W = 2 and 3 (DP-1 .. DP-5, CACHE-1).

One pool of W workers (forked from the session forkserver) per world size serves every case of this module
(tests/torch_dist_worker.py). Each rank gets its slice of a global batch; the test process compares
with the reference: ``L_r`` and ``W * dL/d(local)`` per rank (``rank_expectations``, the error model
of tests/torch_helpers.py with the gradient bound times W, since each rank's gradient sums W ranks'
contributions), and the rank-averaged weight gradient of a linear encoder against
``linear_encoder_grad`` (uncached and cached).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from infonce_spec.reference import Config, linear_encoder_grad, rank_expectations
from tests.torch_dist_worker import GlooPool
from tests.torch_helpers import (
    Case,
    assert_within,
    cases,
    check_embedding_grads,
    embeddings,
    error_bounds,
    hyp_settings,
)

pytestmark = pytest.mark.distributed

F = 5


@pytest.fixture(scope="module", params=[2, 3], ids=["W2", "W3"])
def pool(request: pytest.FixtureRequest) -> Iterator[GlooPool]:
    """One pool per world size for the whole module; closing it leaves no process behind."""
    workers = GlooPool(request.param)
    served = sorted(r["pid"] for r in workers.run("pid"))
    assert served == workers.pids, "the ranks that answer are the pool's own processes"
    yield workers
    workers.close()
    alive = [p.pid for p in workers.processes if p.is_alive()]
    assert not alive, f"gloo workers still alive after teardown: {alive}"
    for pid in served:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # reaped, not a zombie


@hyp_settings(12)
@given(case=cases(max_b=3))
def test_functional_rank_losses_and_local_gradients(pool: GlooPool, case: Case) -> None:
    """DP-1 .. DP-3: L_r = mean of own l_g; local gradient = W * dL/d(local embeddings)."""
    w = pool.world
    q, d = embeddings(case, n=case.b * w)
    payload = {
        "queries": q.double().numpy(),
        "docs": d.double().numpy(),
        "dtype": case.dtype,
        "config": case.config,
    }
    results = pool.run("functional", payload)
    expected = rank_expectations(q.double().numpy(), d.double().numpy(), Config(**case.config), w)
    bounds = error_bounds(case, q, d)
    replay = f"{case.replay()} world_size={w}"
    for rank, (got, exp) in enumerate(zip(results, expected, strict=True)):
        where = f"{replay} rank={rank}"
        assert_within(
            "L_r",
            "DP-2",
            abs(got["loss"] - exp.loss),
            bounds.loss,
            f"got {got['loss']!r}, ref {exp.loss!r}",
            where,
        )
        b = case.b
        q_loc, d_loc = q[rank * b : (rank + 1) * b], d[:, rank * b : (rank + 1) * b]
        for name, x in (("grad_queries", q_loc), ("grad_docs", d_loc)):
            check_embedding_grads(
                f"W * dL/d(local {name[5:]})",
                torch.from_numpy(got[name]),
                torch.as_tensor(getattr(exp, name)),
                x,
                case,
                bounds,
                where,
                factor=w,
                clause="DP-3",
                extra=reduce_scatter_rounding(case, q, d, w),
            )


def reduce_scatter_rounding(case: Case, q: torch.Tensor, d: torch.Tensor, w: int) -> float:
    """The reduce-scatter adds W contributions of weighted norm <= 4J each in the compute precision."""
    u = 2.0**-53 if case.dtype == "float64" else 2.0**-24
    r = max(float(q.double().norm(dim=-1).max()), float(d.double().norm(dim=-1).max()))
    j = case.config["scale"] * (1.0 if case.config["similarity"] == "cos" else r)
    return w * u / (1 - w * u) * 4 * w * j


def linear_payload(case: Case, w: int, mini_batch_size: int | None) -> tuple[dict, object]:
    rng = np.random.default_rng(case.seed)
    weight = rng.normal(scale=case.sigma, size=(case.d, F))
    inputs = rng.normal(size=(case.k + 1, case.b * w, F))
    ref = linear_encoder_grad(inputs[0], inputs[1:], weight, Config(**case.config))
    payload = {
        "weight": weight,
        "inputs": list(inputs),
        "config": case.config,
        "mini_batch_size": mini_batch_size,
    }
    return payload, ref


def param_bound(case: Case, payload: dict, ref: object) -> float:
    """Parameter-space bound (see tests/test_torch_cached.py) for the global batch in float64."""
    weight = torch.from_numpy(payload["weight"])
    feats = torch.from_numpy(np.concatenate(payload["inputs"]))
    emb = feats @ weight.T
    n = payload["inputs"][0].shape[0]
    q, d = emb[:n], emb[n:].reshape(case.k, n, case.d)
    bounds = error_bounds(case, q, d)
    w = (
        emb.norm(dim=-1)
        if case.config["similarity"] == "cos"
        else torch.ones(emb.shape[0], dtype=torch.float64)
    )
    ratio = float((feats.norm(dim=-1) / w.clamp_min(1e-300)).max())
    g = torch.cat(
        [
            torch.as_tensor(ref.embeddings.grad_queries),
            torch.as_tensor(ref.embeddings.grad_docs).reshape(-1, case.d),
        ]
    )
    rounding = feats.shape[0] * 2.0**-53 * float((g.norm(dim=-1) * feats.norm(dim=-1)).sum())
    return ratio * bounds.grad + rounding


@hyp_settings(8)
@given(case=cases(dtypes=("float64",), max_b=3), cached=st.booleans(), m=st.integers(1, 4))
def test_encoder_gradients_average_to_the_reference(pool: GlooPool, case: Case, cached: bool, m: int) -> None:
    """DP-2, DP-4, CACHE-1: per-rank L_r, and the rank average of the weight gradients is dL/dW."""
    w = pool.world
    payload, ref = linear_payload(case, w, m if cached else None)
    results = pool.run("linear", payload)
    x = payload["inputs"]
    emb_q = x[0] @ payload["weight"].T
    emb_d = np.stack([xi @ payload["weight"].T for xi in x[1:]])
    expected = rank_expectations(emb_q, emb_d, Config(**case.config), w)
    where = f"{case.replay()} world_size={w} cached={cached} mini_batch_size={m}"
    loss_bound = error_bounds(case, torch.from_numpy(emb_q), torch.from_numpy(emb_d)).loss
    for rank, (got, exp) in enumerate(zip(results, expected, strict=True)):
        assert_within("L_r", "DP-2", abs(got["loss"] - exp.loss), loss_bound, f"rank {rank}", where)
    averaged = np.mean([r["grad_weight"] for r in results], axis=0)
    err = float(np.linalg.norm(averaged - np.asarray(ref.grad_weight)))
    assert_within("mean_r dL_r/dW", "DP-4", err, param_bound(case, payload, ref), "Frobenius norm", where)


def test_gather_backward_is_a_reduce_scatter_sum(pool: GlooPool) -> None:
    """DP-3: d/dx of sum(w_r * gather(x)) on rank r is sum over ranks r' of w_{r'}[slot r] (both gathers)."""
    w = pool.world
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(w, 2 * w, 3))
    results = pool.run("gather_backward", {"weights": weights})
    gathered = np.repeat(np.arange(1, w + 1, dtype=np.float64), 2)[:, None] * np.ones((1, 3))
    for rank, got in enumerate(results):
        expected_grad = weights.sum(axis=0)[2 * rank : 2 * rank + 2]
        for functional in (True, False):
            np.testing.assert_array_equal(
                got[f"gathered_{functional}"], gathered, err_msg="[DP-1] gather layout"
            )
            np.testing.assert_allclose(
                got[f"grad_{functional}"],
                expected_grad,
                rtol=1e-14,
                atol=0,
                err_msg=f"[DP-3] rank {rank} functional={functional}: backward is not a reduce-scatter SUM",
            )


@pytest.mark.parametrize("which", ["B", "K", "D"])
def test_unequal_local_shapes_raise_dp5_on_every_rank(pool: GlooPool, which: str) -> None:
    """DP-5: unequal B (or K, or D) raises SpecViolation('DP-5') on every rank (no hang, no misalignment)."""
    results = pool.run("unequal", {"which": which}, timeout=30)
    assert [r["clauses"] for r in results] == [["DP-5", "DP-5"]] * pool.world


def test_worked_example_data_parallel(pool: GlooPool) -> None:
    """The worked example's data_parallel section (W = 2): each rank's L_r and W-scaled local gradients."""
    examples = json.loads((Path(__file__).parents[1] / "spec" / "worked_example.json").read_text())["cases"]
    examples = [e for e in examples if e.get("data_parallel", {}).get("world_size") == pool.world]
    if not examples:
        pytest.skip(f"the worked example has no data_parallel section for W = {pool.world}")
    results = pool.run("worked_example", {"cases": examples})
    for rank, got in enumerate(results):
        for example, res in zip(examples, got["cases"], strict=True):
            exp = example["data_parallel"]["ranks"][rank]
            config = {**example["config"], "directions": tuple(example["config"]["directions"])}
            q = torch.tensor(example["inputs"]["queries"], dtype=torch.float64)
            d = torch.tensor(example["inputs"]["docs"], dtype=torch.float64)
            case = Case(config, q.shape[0] // pool.world, d.shape[0], q.shape[1], "float64", 0, 1.0)
            bounds = error_bounds(case, q, d)
            where = f"spec/worked_example.json case {example['name']} rank {rank}"
            assert_within("L_r", "DP-2", abs(res["loss"] - exp["loss"]), bounds.loss, "", where)
            b = case.b
            for name, x in (
                ("grad_queries", q[rank * b : (rank + 1) * b]),
                ("grad_docs", d[:, rank * b : (rank + 1) * b]),
            ):
                check_embedding_grads(
                    name,
                    torch.from_numpy(res[name]),
                    torch.tensor(exp[name], dtype=torch.float64),
                    x,
                    case,
                    bounds,
                    where,
                    factor=pool.world,
                    clause="DP-3",
                    extra=reduce_scatter_rounding(case, q, d, pool.world),
                )


def test_ddp_encoder_is_all_reduced_once_per_step(pool: GlooPool) -> None:
    """CACHE-1 with DistributedDataParallel: one all-reduce per step (not per mini-batch), grads = dL/dW."""
    w = pool.world
    case = Case(
        {
            "directions": ("query_to_doc", "doc_to_query"),
            "partition_mode": "per_direction",
            "scale": 20.0,
            "similarity": "cos",
            "hardness_mode": "in_batch_negatives",
            "hardness_strength": 0.7,
        },
        4,
        2,
        3,
        "float64",
        9,
        1.0,
    )
    first, _ = linear_payload(case, w, None)
    steps, refs = [], []
    for seed in (1, 2):
        inputs = np.random.default_rng(seed).normal(size=(case.k + 1, case.b * w, F))
        payload = {**first, "inputs": list(inputs)}
        steps.append(payload["inputs"])
        refs.append(
            (payload, linear_encoder_grad(inputs[0], inputs[1:], first["weight"], Config(**case.config)))
        )
    results = pool.run(
        "ddp_cached", {"weight": first["weight"], "steps": steps, "config": case.config, "mini_batch_size": 1}
    )
    for rank, got in enumerate(results):
        for step, (record, (payload, ref)) in enumerate(zip(got["steps"], refs, strict=True)):
            assert record["allreduces"] == 1, (
                f"[DP-4] rank {rank} step {step}: {record['allreduces']} all-reduces"
            )
            err = float(np.linalg.norm(record["grad_weight"] - np.asarray(ref.grad_weight)))
            bound = param_bound(case, payload, ref)
            assert_within("DDP-averaged dL/dW", "DP-4", err, bound, f"rank {rank} step {step}", case.replay())
