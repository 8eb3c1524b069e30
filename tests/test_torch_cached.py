"""CachedInfoNCELoss (GradCache) against the uncached loss and the reference (CACHE-1 .. CACHE-5).

Parameter gradients of a bias-free linear encoder are compared with the reference's
``linear_encoder_grad`` in the parameter-space form of the error model (tests/torch_helpers.py):
``||G - G_ref||_F <= max_x(||f_x|| / w_x) * E_grad + gamma(#vectors) * sum_x ||ref_x|| ||f_x||``,
``f_x`` the encoder input of vector x. Cached and uncached, both float64, must agree within twice
that bound. Tests that compare two float64 runs of the *same* arithmetic up to summation order
(linearity, accumulation, re-entrancy, dropout replay) use ``1e-10`` relative, far above float64
rounding (~1e-15) and far below the O(1) relative change a wrong mask, a missed accumulation or a
mismatched dropout mask causes (see test_rng_replay_is_what_makes_dropout_match).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from infonce_spec.adapters.torch import (
    CachedInfoNCELoss,
    InfoNCELoss,
    LossConfig,
    chunked_loss_and_grads,
    infonce_loss,
)
from infonce_spec.adapters.torch import rng as rng_module
from infonce_spec.errors import SpecTypeError, SpecViolation
from infonce_spec.reference import Config, linear_encoder_grad
from tests.torch_helpers import Case, cases, error_bounds, hyp_settings, weights

REL = 1e-10
F = 5


def linear_problem(case: Case) -> tuple[nn.Linear, list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(case.seed)
    encoder = nn.Linear(F, case.d, bias=False).double()
    with torch.no_grad():
        encoder.weight.copy_(torch.randn(case.d, F, generator=gen, dtype=torch.float64) * case.sigma)
    inputs = [torch.randn(case.b, F, generator=gen, dtype=torch.float64) for _ in range(case.k + 1)]
    return encoder, inputs


def param_grads(
    loss_module: nn.Module, inputs: list[Any], seed: int = 0, factor: float = 1.0
) -> tuple[float, list]:
    params = [p for p in loss_module.parameters() if p.requires_grad]
    for p in params:
        p.grad = None
    torch.manual_seed(seed)
    loss = loss_module(inputs)
    (loss * factor).backward()
    return float(loss.detach()), [p.grad.detach().clone() for p in params]


def rel_error(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    num = math.sqrt(sum(float((x - y).double().norm()) ** 2 for x, y in zip(a, b, strict=True)))
    den = math.sqrt(sum(float(y.double().norm()) ** 2 for y in b))
    return num / max(den, 1e-300)


def param_bound(case: Case, encoder: nn.Linear, inputs: list[torch.Tensor], ref: Any) -> float:
    """The parameter-space bound of the module docstring for a linear encoder."""
    with torch.no_grad():
        q = encoder(inputs[0])
        d = torch.stack([encoder(x) for x in inputs[1:]])
    bounds = error_bounds(case, q, d)
    feats = torch.cat(inputs)
    emb = torch.cat([q, d.reshape(-1, case.d)])
    ref_grads = torch.cat(
        [
            torch.as_tensor(ref.embeddings.grad_queries),
            torch.as_tensor(ref.embeddings.grad_docs).reshape(-1, case.d),
        ]
    )
    w = weights(emb, case.config["similarity"])
    ratio = float((feats.norm(dim=-1) / w.clamp_min(1e-300)).max())
    n_vec = feats.shape[0]
    rounding = n_vec * 2.0**-53 * float((ref_grads.norm(dim=-1) * feats.norm(dim=-1)).sum())
    return ratio * bounds.grad + rounding


#: SimCLR's NT-Xent (PART-5), always among the cases: the four directions grouped by anchor.
NT_XENT = {
    "directions": ("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc"),
    "partition_mode": "per_anchor",
    "scale": 7.0,
    "similarity": "cos",
    "hardness_mode": "in_batch_negatives",
    "hardness_strength": 0.7,
}


@hyp_settings(15)
@given(case=cases(dtypes=("float64",)))
@example(case=Case(NT_XENT, 5, 1, 4, "float64", 4, 1.0))
@example(case=Case(NT_XENT, 4, 2, 3, "float64", 5, 1.0))
def test_cached_equals_uncached_and_reference_for_every_mini_batch_size(case: Case) -> None:
    """CACHE-1: for every mini_batch_size in [1, B + 2] the loss and weight gradient match (every
    partition mode drawn; NT-Xent, PART-5, always)."""
    encoder, inputs = linear_problem(case)
    ref = linear_encoder_grad(
        inputs[0], torch.stack(inputs[1:]), encoder.weight.detach(), Config(**case.config)
    )
    bound = param_bound(case, encoder, inputs, ref)
    loss_u, grads_u = param_grads(InfoNCELoss(encoder, **case.config), inputs)
    g_ref = torch.as_tensor(ref.grad_weight)
    err_u = float((grads_u[0] - g_ref).norm())
    assert err_u <= bound, f"[DP-4] uncached weight gradient error {err_u:.3e} > {bound:.3e}; {case.replay()}"
    for m in range(1, case.b + 3):
        loss_c, grads_c = param_grads(CachedInfoNCELoss(encoder, mini_batch_size=m, **case.config), inputs)
        assert (
            abs(loss_c - loss_u) <= 2 * error_bounds(case, inputs[0], torch.stack(inputs[1:])).loss + 1e-12
        ), f"[CACHE-1] mini_batch_size={m}: cached loss {loss_c!r} vs uncached {loss_u!r}; {case.replay()}"
        err = float((grads_c[0] - grads_u[0]).norm())
        assert err <= 2 * bound, (
            f"[CACHE-1] mini_batch_size={m}: ||G_cached - G_uncached|| = {err:.3e} > {2 * bound:.3e}; {case.replay()}"
        )
        err_r = float((grads_c[0] - g_ref).norm())
        assert err_r <= bound, (
            f"[CACHE-1] mini_batch_size={m}: vs reference {err_r:.3e} > {bound:.3e}; {case.replay()}"
        )


def dropout_encoder(seed: int, d: int = 4) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(F, 16), nn.Tanh(), nn.Dropout(0.5), nn.Linear(16, d)).double()


def sequential_reference(
    encoder: nn.Module, inputs: list, m: int, seed: int, config: dict
) -> tuple[float, list]:
    """Uncached loss on embeddings computed mini-batch by mini-batch, in the cached loss's order."""
    encoder.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    cols = [torch.cat([encoder(x[i : i + m]) for i in range(0, x.shape[0], m)]) for x in inputs]
    loss = InfoNCELoss(nn.Identity(), **config)([cols[0], *cols[1:]])
    loss.backward()
    return float(loss.detach()), [p.grad.clone() for p in encoder.parameters()]


@hyp_settings(10)
@given(case=cases(dtypes=("float64",), max_b=5), m=st.integers(1, 7))
def test_dropout_masks_are_replayed(case: Case, m: int) -> None:
    """CACHE-3: with dropout, the second forward draws the first forward's masks (same seed)."""
    encoder = dropout_encoder(case.seed % 1000)
    _, inputs = linear_problem(case)
    loss_s, grads_s = sequential_reference(encoder, inputs, m, seed=7, config=case.config)
    loss_c, grads_c = param_grads(
        CachedInfoNCELoss(encoder, mini_batch_size=m, **case.config), inputs, seed=7
    )
    assert abs(loss_c - loss_s) <= REL * max(1.0, abs(loss_s)), (
        f"[CACHE-3] loss {loss_c} vs {loss_s}; {case.replay()}"
    )
    err = rel_error(grads_c, grads_s)
    assert err <= REL, f"[CACHE-3] relative gradient error {err:.3e} > {REL}; m={m}; {case.replay()}"


def test_rng_replay_is_what_makes_dropout_match(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CACHE-3 check has teeth: without replay the gradients differ at O(1) relative."""
    case = Case(
        {
            "directions": ("query_to_doc",),
            "partition_mode": "joint",
            "scale": 20.0,
            "similarity": "cos",
            "hardness_mode": None,
            "hardness_strength": 0.0,
        },
        6,
        1,
        4,
        "float64",
        3,
        1.0,
    )
    encoder = dropout_encoder(0)
    _, inputs = linear_problem(case)
    _, grads_s = sequential_reference(encoder, inputs, 2, seed=7, config=case.config)
    monkeypatch.setattr(rng_module.RngSnapshot, "replay", lambda self: contextlib.nullcontext())
    _, grads_c = param_grads(CachedInfoNCELoss(encoder, mini_batch_size=2, **case.config), inputs, seed=7)
    assert rel_error(grads_c, grads_s) > 1e-3


def test_rng_state_after_step_is_that_of_the_first_pass() -> None:
    """CACHE-3: the replay restores the global RNG, so a cached step consumes RNG like its first pass."""
    _, inputs = linear_problem(Case(CONFIG, 6, 2, 4, "float64", 1, 1.0))
    encoder = dropout_encoder(0)
    torch.manual_seed(3)
    with torch.no_grad():
        for x in inputs:
            for i in range(0, 6, 4):
                encoder(x[i : i + 4])
    expected = torch.rand(3)
    torch.manual_seed(3)
    CachedInfoNCELoss(encoder, mini_batch_size=4)(inputs).backward()
    assert torch.equal(torch.rand(3), expected)


CONFIG = {
    "directions": ("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc"),
    "partition_mode": "joint",
    "scale": 20.0,
    "similarity": "cos",
    "hardness_mode": "all_negatives",
    "hardness_strength": 3.0,
}


@pytest.mark.parametrize("factor", [-2.5, 0.0, 3.0, 1024.0])
def test_backward_is_linear_in_the_upstream_gradient(factor: float) -> None:
    """CACHE-2: (c * loss).backward() gives c times the gradients (loss scaling, accumulation division)."""
    encoder = dropout_encoder(1)
    _, inputs = linear_problem(Case(CONFIG, 5, 2, 4, "float64", 2, 1.0))
    loss_module = CachedInfoNCELoss(encoder, mini_batch_size=2, **CONFIG)
    _, g1 = param_grads(loss_module, inputs, seed=5)
    _, gc = param_grads(loss_module, inputs, seed=5, factor=factor)
    scaled = [g * factor for g in g1]
    if factor == 0.0:
        assert all(float(g.abs().max()) == 0.0 for g in gc)
    else:
        assert rel_error(gc, scaled) <= REL


def test_gradients_accumulate_over_two_steps() -> None:
    """CACHE-4: two cached steps without zero_grad accumulate into .grad, like the uncached loss."""
    encoder = dropout_encoder(2)
    _, batch1 = linear_problem(Case(CONFIG, 5, 2, 4, "float64", 11, 1.0))
    _, batch2 = linear_problem(Case(CONFIG, 5, 2, 4, "float64", 12, 1.0))
    cached = CachedInfoNCELoss(encoder, mini_batch_size=2, **CONFIG)
    _, g1 = param_grads(cached, batch1, seed=1)
    _, g2 = param_grads(cached, batch2, seed=2)
    encoder.zero_grad(set_to_none=True)
    for batch, seed in ((batch1, 1), (batch2, 2)):
        torch.manual_seed(seed)
        (cached(batch) / 2).backward()  # the usual "divide by accumulation steps"
    summed = [p.grad.clone() for p in encoder.parameters()]
    assert rel_error(summed, [(a + b) / 2 for a, b in zip(g1, g2, strict=True)]) <= REL


def test_reentrant_two_forwards_then_two_backwards() -> None:
    """CACHE-4: each loss keeps its own cache (in the graph), whatever the order of the backwards."""
    encoder = dropout_encoder(3)
    _, batch1 = linear_problem(Case(CONFIG, 4, 1, 4, "float64", 21, 1.0))
    _, batch2 = linear_problem(Case(CONFIG, 6, 1, 4, "float64", 22, 1.0))
    cached = CachedInfoNCELoss(encoder, mini_batch_size=3, **CONFIG)
    _, g1 = param_grads(cached, batch1, seed=1)
    _, g2 = param_grads(cached, batch2, seed=2)
    encoder.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    loss1 = cached(batch1)
    torch.manual_seed(2)
    loss2 = cached(batch2)
    loss2.backward()
    assert rel_error([p.grad.clone() for p in encoder.parameters()], g2) <= REL
    loss1.backward()
    assert (
        rel_error(
            [p.grad.clone() for p in encoder.parameters()], [a + b for a, b in zip(g1, g2, strict=True)]
        )
        <= REL
    )


def test_learnable_scale_gets_the_uncached_gradient() -> None:
    """SCALE-2 through the cache: an nn.Parameter scale receives dL/dscale times the upstream gradient."""
    case = Case(CONFIG, 5, 2, 4, "float64", 4, 1.0)
    encoder, inputs = linear_problem(case)
    results = []
    for make in (
        lambda s: InfoNCELoss(encoder, **{**CONFIG, "scale": s}),
        lambda s: CachedInfoNCELoss(encoder, mini_batch_size=2, **{**CONFIG, "scale": s}),
    ):
        scale = nn.Parameter(torch.tensor(20.0, dtype=torch.float64))
        module = make(scale)
        assert any(p is scale for p in module.parameters())
        _, grads = param_grads(module, inputs, factor=3.0)
        results.append(grads)
    assert rel_error(results[1], results[0]) <= REL


class DictEncoder(nn.Module):
    """A sentence-transformers-like encoder: a mapping in, a mapping with 'sentence_embedding' out."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(F, 4, bias=False).double()

    def forward(self, features: dict) -> dict:
        assert features["input_ids"].shape[0] == features["mask"].shape[0]
        return {
            "sentence_embedding": self.linear(features["input_ids"] * features["mask"]),
            "tag": features["tag"],
        }


def test_mapping_inputs_and_outputs() -> None:
    """Input batches may be mappings of tensors (sliced row-wise, other values kept); outputs mappings."""
    encoder = DictEncoder()
    _, inputs = linear_problem(Case(CONFIG, 5, 2, 4, "float64", 5, 1.0))
    batches = [{"input_ids": x, "mask": torch.ones(5, 1, dtype=torch.float64), "tag": "t"} for x in inputs]
    _, g_u = param_grads(InfoNCELoss(encoder, **CONFIG), batches)
    _, g_c = param_grads(CachedInfoNCELoss(encoder, mini_batch_size=2, **CONFIG), batches)
    assert rel_error(g_c, g_u) <= REL


def test_no_grad_forward_and_double_backward() -> None:
    """Under no_grad the cached loss only evaluates; a second backward through one loss is refused."""
    encoder, inputs = linear_problem(Case(CONFIG, 5, 2, 4, "float64", 6, 1.0))
    cached = CachedInfoNCELoss(encoder, mini_batch_size=2, **CONFIG)
    with torch.no_grad():
        value = cached(inputs)
        expected = InfoNCELoss(encoder, **CONFIG)(inputs)
    assert not value.requires_grad and abs(float(value) - float(expected)) <= 1e-12
    loss = cached(inputs)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="twice"):
        loss.backward()


class NoSyncRecorder(nn.Module):
    """Records, per forward with grad, whether it ran inside ``no_sync()`` (the DDP interface)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.inside = False
        self.calls: list[bool] = []

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        self.inside = True
        try:
            yield
        finally:
            self.inside = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            self.calls.append(self.inside)
        return self.inner(x)


def test_no_sync_for_all_but_the_last_re_embedding() -> None:
    """DDP encoders (anything with no_sync) synchronise once per step: only the last re-embedding syncs."""
    encoder, inputs = linear_problem(Case(CONFIG, 5, 2, 4, "float64", 7, 1.0))
    recorder = NoSyncRecorder(encoder)
    CachedInfoNCELoss(recorder, mini_batch_size=2, **CONFIG)(inputs).backward()
    assert recorder.calls == [True] * (3 * 3 - 1) + [False]


class LargestTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an operation produces."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_loss_stage_memory_is_chunk_by_candidates() -> None:
    """CACHE-5: no tensor of the chunked loss stage exceeds max(m x candidates, K N x D) elements.

    The uncached loss, for contrast, builds (B x candidates) logits.
    """
    b, k, d, m = 48, 2, 8, 4
    q, docs = torch.randn(b, d, dtype=torch.float64), torch.randn(k, b, d, dtype=torch.float64)
    config = LossConfig(**{**CONFIG, "hardness_mode": "in_batch_negatives"})
    candidates = 2 * k * b + 2 * b
    with LargestTensor() as probe:
        chunked_loss_and_grads(q, docs, config, m)
    assert probe.largest <= max(m * candidates, k * b * d), (
        f"[CACHE-5] largest tensor {probe.largest} elements"
    )
    with LargestTensor() as probe_u:
        InfoNCELoss(nn.Identity(), **CONFIG)(
            [q.requires_grad_(), *docs.requires_grad_().unbind(0)]
        ).backward()
    assert probe_u.largest >= b * candidates


def test_invalid_mini_batch_size_and_inputs() -> None:
    """CACHE-1 / LAYOUT-2: option and input errors name their clause."""
    with pytest.raises(SpecViolation, match=r"\[CACHE-1\]"):
        CachedInfoNCELoss(nn.Identity(), mini_batch_size=0)
    with pytest.raises(SpecTypeError, match=r"\[CACHE-1\]"):
        CachedInfoNCELoss(nn.Identity(), mini_batch_size=2.0)
    with pytest.raises(SpecViolation, match=r"\[PART-4\]"):
        CachedInfoNCELoss(
            nn.Identity(), directions=("query_to_doc", "query_to_query"), partition_mode="per_direction"
        )
    cached = CachedInfoNCELoss(nn.Linear(3, 2), mini_batch_size=2)
    with pytest.raises(SpecViolation, match=r"\[LAYOUT-2\]"):
        cached([torch.randn(4, 3)])
    with pytest.raises(SpecViolation, match=r"\[LAYOUT-2\]"):
        cached([torch.randn(4, 3), torch.randn(5, 3)])
    with pytest.raises(SpecViolation, match=r"\[LAYOUT-1\]"):
        cached([torch.zeros(0, 3), torch.zeros(0, 3)])


class AutocastRecorder(nn.Module):
    """Records the dtype of every embedding it produces (float32 weights; bf16 under CPU autocast)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(F, 4)
        self.dtypes: list[tuple[bool, torch.dtype]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x)
        self.dtypes.append((torch.is_grad_enabled(), out.dtype))
        return out


def test_second_pass_replays_the_autocast_state() -> None:
    """CACHE-1/CACHE-3: backward (outside the autocast block) re-embeds under the first pass's autocast."""
    encoder = AutocastRecorder()
    inputs = [torch.randn(5, F) for _ in range(3)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = CachedInfoNCELoss(encoder, mini_batch_size=2)(inputs)
    loss.backward()
    assert loss.dtype == torch.float32
    first = [dt for grad, dt in encoder.dtypes if not grad]
    second = [dt for grad, dt in encoder.dtypes if grad]
    assert first == second == [torch.bfloat16] * 9


def test_loss_stage_opts_out_of_autocast() -> None:
    """The loss stage runs in float32 for float32 embeddings even inside an autocast block."""
    q, d = torch.randn(6, 8), torch.randn(2, 6, 8)
    expected = infonce_loss(q, d, directions=CONFIG["directions"])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = infonce_loss(q, d, directions=CONFIG["directions"])
        chunked = chunked_loss_and_grads(q, d, LossConfig(directions=CONFIG["directions"]), 2)
    assert got.dtype == torch.float32 and float(got) == float(expected)
    case = Case({**CONFIG, "hardness_mode": None, "hardness_strength": 0.0}, 6, 2, 8, "float32", 0, 1.0)
    assert abs(float(chunked.loss) - float(expected)) <= 2 * error_bounds(case, q, d).loss
