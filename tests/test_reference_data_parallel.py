"""Family 7: rank_expectations (DP-1 .. DP-4) and linear_encoder_grad (the chain rule, CACHE-1's anchor).

* rank_expectations: the mean over ranks of L_r is L (DP-2); each L_r is the mean of its own
  l_g; the per-rank gradients are W x the global gradients' slices (DP-1 layout, DP-3); and an
  independent simulation of the all-gather -- torch autograd of ``sum_r L_r`` through the direct
  oracle, i.e. a reduce-scatter *sum* backward -- gives the same local gradients.
* linear_encoder_grad: equals ``grad_q^T x_q + sum_k grad_d[k]^T x_d[k]`` built here from
  loss_and_grad, and torch autograd through ``F.linear`` and the direct oracle; averaging the
  per-rank parameter gradients (from rank_expectations) gives it too (DP-4).

Tolerances follow the error model of :mod:`tests.oracles` (``rtol * max(max|expected|, floor)``).
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from infonce_spec.reference import Config, linear_encoder_grad, loss_and_grad, rank_expectations
from tests.oracles import LossCase, assert_close, loss_cases, natural_magnitudes, reference_settings
from tests.oracles.torch_direct import direct_loss


@st.composite
def world(draw: st.DrawFn) -> tuple[LossCase, np.ndarray, np.ndarray, int, str]:
    case = draw(loss_cases(), label="case")
    w = draw(st.integers(1, 4), label="world_size")
    b = draw(st.integers(1, 3), label="local_batch")
    k = draw(st.integers(1, 3), label="K")
    d = draw(st.integers(1, 4), label="D")
    seed = draw(st.integers(0, 2**32 - 1), label="seed")
    rng = np.random.default_rng(seed)
    q, docs = rng.standard_normal((w * b, d)), rng.standard_normal((k, w * b, d))
    assume(min(np.linalg.norm(q, axis=-1).min(), np.linalg.norm(docs, axis=-1).min()) >= 1e-3)
    return case, q, docs, w, f"replay: W={w}, B={b}, K={k}, D={d}, seed={seed} (default_rng normal), {case!r}"


@reference_settings(max_examples=60)
@given(setup=world())
def test_rank_expectations_partition_the_global_loss_and_gradients(setup: tuple) -> None:
    """DP-1 (rank r owns [rB, (r+1)B) of queries and of every doc column), DP-2, DP-3."""
    case, q, docs, w, replay = setup
    config = Config(**case.kwargs())
    ranks = rank_expectations(q, docs, config, w)
    whole = loss_and_grad(q, docs, config)
    m = natural_magnitudes(case, q, docs)
    n = q.shape[0]
    b = n // w
    assert [r.rank for r in ranks] == list(range(w)), f"[DP-1] ranks {[r.rank for r in ranks]}. {replay}"
    assert all(r.world_size == w for r in ranks), f"[DP-1] world_size field. {replay}"
    mean = sum(r.loss for r in ranks) / w
    assert_close(
        mean,
        whole.loss,
        rtol=1e-13,
        what="mean over ranks of L_r",
        clause="DP-2",
        floor=m.loss,
        replay=replay,
    )
    for r in ranks:
        own = slice(r.rank * b, (r.rank + 1) * b)
        tag = f"rank {r.rank}/{w}"
        assert_close(
            r.loss,
            float(np.mean(whole.per_query_loss[own])),
            rtol=1e-13,
            what=f"{tag} L_r",
            clause="DP-2",
            floor=m.loss,
            replay=replay,
        )
        assert_close(
            r.per_query_loss,
            whole.per_query_loss[own],
            rtol=0.0,
            what=f"{tag} per_query_loss",
            clause="DP-2",
            replay=replay,
        )
        assert_close(
            r.grad_queries,
            w * whole.grad_queries[own],
            rtol=1e-15,
            what=f"{tag} grad_queries",
            clause="DP-3",
            floor=w * m.grad_queries[own],
            replay=replay,
        )
        assert_close(
            r.grad_docs,
            w * whole.grad_docs[:, own],
            rtol=1e-15,
            what=f"{tag} grad_docs",
            clause="DP-3",
            floor=w * m.grad_docs[:, own],
            replay=replay,
        )


@reference_settings(max_examples=40)
@given(setup=world())
def test_rank_gradients_match_a_simulated_all_gather(setup: tuple) -> None:
    """DP-3 from first principles: rank r's local gradient is sum over ranks r' of dL_r'/d(local_r).

    With an autograd all-gather whose backward reduce-scatters by *sum*, every rank computes L_r'
    on the gathered batch and the gradient reaching rank r's own rows is the sum over r'. Here:
    torch autograd of ``sum_r L_r`` through the direct oracle, sliced per rank.
    """
    case, q, docs, w, replay = setup
    n = q.shape[0]
    b = n // w
    tq = torch.tensor(q, requires_grad=True)
    td = torch.tensor(docs, requires_grad=True)
    scale = torch.tensor(case.scale, dtype=torch.float64)
    _, per_query = direct_loss(tq, td, scale, **{k: v for k, v in case.kwargs().items() if k != "scale"})
    rank_losses = [per_query[r * b : (r + 1) * b].mean() for r in range(w)]
    gq, gd = torch.autograd.grad(torch.stack(rank_losses).sum(), (tq, td))
    m = natural_magnitudes(case, q, docs)
    for r in rank_expectations(q, docs, Config(**case.kwargs()), w):
        own = slice(r.rank * b, (r.rank + 1) * b)
        assert_close(
            r.loss,
            float(rank_losses[r.rank].detach()),
            rtol=1e-10,
            what=f"rank {r.rank} L_r",
            clause="DP-2",
            floor=m.loss,
            replay=replay,
        )
        assert_close(
            r.grad_queries,
            gq[own].numpy(),
            rtol=1e-10,
            what=f"rank {r.rank} grad_queries vs all-gather",
            clause="DP-3",
            floor=w * m.grad_queries[own],
            replay=replay,
        )
        assert_close(
            r.grad_docs,
            gd[:, own].numpy(),
            rtol=1e-10,
            what=f"rank {r.rank} grad_docs vs all-gather",
            clause="DP-3",
            floor=w * m.grad_docs[:, own],
            replay=replay,
        )


@st.composite
def encoders(draw: st.DrawFn) -> tuple[LossCase, np.ndarray, np.ndarray, np.ndarray, str]:
    case = draw(loss_cases(), label="case")
    n = draw(st.integers(1, 5), label="N")
    k = draw(st.integers(1, 3), label="K")
    f = draw(st.integers(1, 5), label="F")
    d = draw(st.integers(1, 4), label="D")
    seed = draw(st.integers(0, 2**32 - 1), label="seed")
    rng = np.random.default_rng(seed)
    xq, xd, weight = rng.standard_normal((n, f)), rng.standard_normal((k, n, f)), rng.standard_normal((d, f))
    eq, ed = xq @ weight.T, xd @ weight.T
    assume(min(np.linalg.norm(eq, axis=-1).min(), np.linalg.norm(ed, axis=-1).min()) >= 1e-3)
    return case, xq, xd, weight, f"replay: N={n}, K={k}, F={f}, D={d}, seed={seed}, {case!r}"


def _weight_floor(case: LossCase, xq: np.ndarray, xd: np.ndarray, weight: np.ndarray) -> float:
    """dL/dW is a sum of outer products grad_row x_row^T: bound the terms by floor_row * ||x_row||."""
    m = natural_magnitudes(case, xq @ weight.T, xd @ weight.T)
    return float(
        np.sum(m.grad_queries * np.linalg.norm(xq, axis=-1, keepdims=True))
        + np.sum(m.grad_docs * np.linalg.norm(xd, axis=-1, keepdims=True))
    )


@reference_settings(max_examples=60)
@given(setup=encoders())
def test_linear_encoder_grad_is_the_chain_rule(setup: tuple) -> None:
    """dL/dW = grad_q^T x_q + sum_k grad_d[k]^T x_d[k] with embeddings x @ W^T (nn.Linear, no bias)."""
    case, xq, xd, weight, replay = setup
    config = Config(**case.kwargs())
    got = linear_encoder_grad(xq, xd, weight, config)
    emb = loss_and_grad(xq @ weight.T, np.einsum("knf,df->knd", xd, weight), config)
    expected = np.einsum("nd,nf->df", emb.grad_queries, xq) + np.einsum("knd,knf->df", emb.grad_docs, xd)
    floor = _weight_floor(case, xq, xd, weight)
    assert_close(
        got.loss,
        emb.loss,
        rtol=1e-13,
        what="encoder loss",
        clause="LOSS-1",
        floor=natural_magnitudes(case, xq @ weight.T, xd @ weight.T).loss,
        replay=replay,
    )
    assert_close(
        got.grad_weight,
        expected,
        rtol=1e-12,
        what="grad_weight (chain rule)",
        clause="GRAD-1",
        floor=floor,
        replay=replay,
    )


@reference_settings(max_examples=40)
@given(setup=encoders())
def test_linear_encoder_grad_matches_torch_autograd(setup: tuple) -> None:
    """The same through torch: F.linear(x, W) into the direct oracle, autograd to W."""
    case, xq, xd, weight, replay = setup
    got = linear_encoder_grad(xq, xd, weight, Config(**case.kwargs()))
    w = torch.tensor(weight, requires_grad=True)
    eq = torch.nn.functional.linear(torch.tensor(xq), w)
    ed = torch.nn.functional.linear(torch.tensor(xd), w)
    scale = torch.tensor(case.scale, dtype=torch.float64)
    loss, _ = direct_loss(eq, ed, scale, **{k: v for k, v in case.kwargs().items() if k != "scale"})
    (gw,) = torch.autograd.grad(loss, (w,))
    assert_close(
        got.grad_weight,
        gw.numpy(),
        rtol=1e-10,
        what="grad_weight vs torch autograd",
        clause="GRAD-1",
        floor=_weight_floor(case, xq, xd, weight),
        replay=replay,
    )


@reference_settings(max_examples=40)
@given(setup=world(), f=st.integers(1, 4))
def test_averaged_rank_parameter_gradients_are_dl_dtheta(setup: tuple, f: int) -> None:
    """DP-4: every rank backpropagates its W-scaled local gradient into the shared W; the mean is dL/dW."""
    case, q, docs, w, replay = setup
    n, d = q.shape
    k = docs.shape[0]
    b = n // w
    rng = np.random.default_rng(n * 31 + d * 7 + f)
    xq, xd, weight = rng.standard_normal((n, f)), rng.standard_normal((k, n, f)), rng.standard_normal((d, f))
    eq, ed = xq @ weight.T, np.einsum("knf,df->knd", xd, weight)
    assume(min(np.linalg.norm(eq, axis=-1).min(), np.linalg.norm(ed, axis=-1).min()) >= 1e-3)
    config = Config(**case.kwargs())
    per_rank = []
    for r in rank_expectations(eq, ed, config, w):
        own = slice(r.rank * b, (r.rank + 1) * b)
        per_rank.append(
            np.einsum("nd,nf->df", r.grad_queries, xq[own])
            + np.einsum("knd,knf->df", r.grad_docs, xd[:, own])
        )
    expected = linear_encoder_grad(xq, xd, weight, config).grad_weight
    assert_close(
        sum(per_rank) / w,
        expected,
        rtol=1e-12,
        what="mean of rank parameter gradients",
        clause="DP-4",
        floor=_weight_floor(case, xq, xd, weight),
        replay=f"{replay}, F={f}",
    )


def test_linear_encoder_keeps_the_namespace() -> None:
    """torch inputs give a torch float64 grad_weight (float32 inputs computed in float64)."""
    rng = np.random.default_rng(3)
    xq, xd, weight = rng.standard_normal((3, 4)), rng.standard_normal((2, 3, 4)), rng.standard_normal((5, 4))
    config = Config(
        directions=("query_to_doc", "doc_to_doc"), hardness_mode="all_negatives", hardness_strength=1.0
    )
    got = linear_encoder_grad(*(torch.tensor(a, dtype=torch.float32) for a in (xq, xd, weight)), config)
    assert isinstance(got.grad_weight, torch.Tensor) and got.grad_weight.dtype == torch.float64, "[LAYOUT-5]"
    expected = linear_encoder_grad(
        *(a.astype(np.float32).astype(np.float64) for a in (xq, xd, weight)), config
    ).grad_weight
    assert_close(got.grad_weight, expected, rtol=1e-13, what="torch float32 grad_weight", clause="LAYOUT-5")
