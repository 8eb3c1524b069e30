"""The torch adapter on a CUDA device (skipped without one): precision, RNG replay, loss-stage memory.

* every dtype against the float64 reference with the error model of tests/torch_helpers.py (it
  assumes true float32 matrix products: ``torch.backends.cuda.matmul.allow_tf32`` must be False,
  torch's default; with TF32 the float32 unit roundoff would be 2**-11);
* the chunked (cached) loss stage on CUDA against the same bound;
* CACHE-3 with CUDA dropout: the cached loss replays the CUDA generator;
* CACHE-5 with the CUDA caching allocator's exact peak statistics.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from torch import nn

from infonce_spec.adapters.torch import (
    CachedInfoNCELoss,
    InfoNCELoss,
    LossConfig,
    chunked_loss_and_grads,
    infonce_loss,
)
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

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
DEVICE = "cuda"


@hyp_settings(40)
@given(case=cases(max_b=8))
def test_cuda_uncached_and_chunked_match_reference(case: Case) -> None:
    """LOSS-1, GRAD-1, CACHE-1 on CUDA, all dtypes (TF32 off)."""
    assert not torch.backends.cuda.matmul.allow_tf32
    q, d = embeddings(case)
    ref = loss_and_grad(q.double(), d.double(), Config(**case.config))
    bounds = error_bounds(case, q, d)
    qc = q.to(DEVICE).requires_grad_()
    dc = d.to(DEVICE).requires_grad_()
    loss = infonce_loss(qc, dc, **case.config)
    loss.backward()
    replay = case.replay() + " device=cuda"
    assert_within("loss", "LOSS-1", abs(float(loss.detach()) - ref.loss), bounds.loss, "uncached", replay)
    check_embedding_grads("grad_queries", qc.grad.cpu(), ref.grad_queries, q, case, bounds, replay)
    check_embedding_grads("grad_docs", dc.grad.cpu(), ref.grad_docs, d, case, bounds, replay)
    chunked = chunked_loss_and_grads(q.to(DEVICE), d.to(DEVICE), LossConfig(**case.config), 3)
    assert_within("loss", "CACHE-1", abs(float(chunked.loss) - ref.loss), bounds.loss, "chunked", replay)
    # The chunked stage returns gradients in the compute precision; rounding to the input dtype is the caller's.
    exact = Case(**{**case.__dict__, "dtype": "float32" if case.dtype != "float64" else "float64"})
    b32 = error_bounds(exact, q, d)
    check_embedding_grads("grad_queries", chunked.grad_queries.cpu(), ref.grad_queries, q, exact, b32, replay)
    check_embedding_grads("grad_docs", chunked.grad_docs.cpu(), ref.grad_docs, d, exact, b32, replay)


def test_cuda_dropout_replay() -> None:
    """CACHE-3 on CUDA: same loss and gradients as embedding mini-batch by mini-batch with the same seed."""
    torch.manual_seed(0)
    encoder = (
        nn.Sequential(nn.Linear(16, 64), nn.Tanh(), nn.Dropout(0.5), nn.Linear(64, 8)).to(DEVICE).double()
    )
    inputs = [torch.randn(10, 16, device=DEVICE, dtype=torch.float64) for _ in range(3)]
    config = {"directions": ("query_to_doc", "doc_to_query"), "partition_mode": "per_direction"}
    m = 3
    encoder.zero_grad(set_to_none=True)
    torch.manual_seed(7)
    cols = [torch.cat([encoder(x[i : i + m]) for i in range(0, 10, m)]) for x in inputs]
    expected_loss = InfoNCELoss(nn.Identity(), **config)(cols)
    expected_loss.backward()
    expected = [p.grad.clone() for p in encoder.parameters()]
    encoder.zero_grad(set_to_none=True)
    torch.manual_seed(7)
    loss = CachedInfoNCELoss(encoder, mini_batch_size=m, **config)(inputs)
    loss.backward()
    assert abs(float(loss.detach()) - float(expected_loss.detach())) <= 1e-12
    for got, want in zip((p.grad for p in encoder.parameters()), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12, msg=lambda m: f"[CACHE-3] {m}")


def _peak_bytes(fn: object) -> int:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()  # type: ignore[operator]
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def test_cuda_loss_stage_memory_is_linear_in_batch() -> None:
    """CACHE-5: doubling B doubles the chunked loss stage's peak (allocator statistics), not quadruples it."""
    d, m = 256, 64
    config = LossConfig(directions=("query_to_doc", "doc_to_query"))
    peaks = {}
    for b in (4096, 8192):
        q = torch.randn(b, d, device=DEVICE)
        docs = torch.randn(1, b, d, device=DEVICE)
        peaks[("cached", b)] = _peak_bytes(lambda q=q, docs=docs: chunked_loss_and_grads(q, docs, config, m))
        qg, dg = q.clone().requires_grad_(), docs.clone().requires_grad_()
        peaks[("uncached", b)] = _peak_bytes(
            lambda qg=qg, dg=dg: infonce_loss(qg, dg, directions=config.directions).backward()
        )
    cached_ratio = peaks[("cached", 8192)] / peaks[("cached", 4096)]
    uncached_ratio = peaks[("uncached", 8192)] / peaks[("uncached", 4096)]
    assert cached_ratio <= 2.5, f"[CACHE-5] cached peak grew {cached_ratio:.2f}x for 2x B: {peaks}"
    assert uncached_ratio >= 3.0, f"uncached peak grew only {uncached_ratio:.2f}x: {peaks}"
