"""Conformance adapters for our own torch implementations (:mod:`infonce_spec.adapters.torch`).

``infonce-conformance run`` with no ``--adapter`` checks :data:`uncached`, :data:`cached` and
:data:`data_parallel`; the ``*_float32`` / ``*_bfloat16`` variants compute in those dtypes (the suite
then applies that dtype's tolerance model). Each claims everything its implementation offers:

* ``uncached``: :func:`infonce_loss` on embeddings (with a learnable scale, SCALE-2) and
  :class:`InfoNCELoss` around a linear encoder;
* ``cached``: :class:`CachedInfoNCELoss` everywhere -- at the embedding level through a
  lookup-table encoder whose parameter *is* the batch (so its gradient is the embedding gradient),
  with ``mini_batch_size`` 2 (does not divide odd N); at the encoder level with the suite's
  ``mini_batch_size``, dropout included (CACHE-3);
* ``data_parallel``: the above plus the per-rank methods, ``gather_across_devices=True``.

This module is itself an example of the adapter protocol (docs/conformance.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from infonce_spec.adapters.torch import CachedInfoNCELoss, InfoNCELoss, infonce_loss
from infonce_spec.conformance.protocol import (
    Capabilities,
    DropoutCase,
    EmbeddingCase,
    EncoderCase,
    EncoderGrads,
    LossGrads,
    RankCase,
    RankEncoderCase,
)

__all__ = [
    "TorchAdapter",
    "cached",
    "cached_bfloat16",
    "cached_float32",
    "data_parallel",
    "data_parallel_float32",
    "uncached",
    "uncached_bfloat16",
    "uncached_float32",
]

_DTYPES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def _np(t: torch.Tensor | None) -> np.ndarray:
    if t is None:
        raise RuntimeError("no gradient reached the input")
    return t.detach().to("cpu", torch.float64).numpy()


def _scalar(t: torch.Tensor | None) -> float | None:
    return None if t is None else float(t.detach().item())


class _Tables(nn.Module):
    """An "encoder" that looks rows up in two parameters (queries, flattened docs): the gradient of a
    table is the gradient with respect to those embeddings. Its input batch is ``(table_id, rows)``."""

    def __init__(self, queries: torch.Tensor, docs: torch.Tensor) -> None:
        super().__init__()
        self.queries = nn.Parameter(queries)
        self.docs = nn.Parameter(docs.flatten(0, -2) if docs.ndim >= 2 else docs)  # also D = 0 (LAYOUT-1)

    def forward(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        table, rows = batch
        return (self.queries if int(table) == 0 else self.docs)[rows]


class TorchAdapter:
    """The adapter for our torch losses; ``cached`` routes the embedding level through GradCache."""

    def __init__(
        self,
        name: str,
        *,
        dtype: str = "float64",
        cached: bool = False,
        data_parallel: bool = False,
        mini_batch_size: int = 2,
    ) -> None:
        self.dtype = _DTYPES[dtype]
        self.cached = cached
        self.mini_batch_size = mini_batch_size
        # Half-precision embeddings are upcast to float32 for the loss stage (infonce_spec.adapters.torch).
        compute = "float32" if dtype in ("bfloat16", "float16") else None
        self.capabilities = Capabilities(
            name=name,
            # Every name infonce_spec.adapters.torch implements, listed: a name the spec adds later is
            # not claimed until the implementation has it.
            directions=frozenset({"query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc"}),
            partition_modes=frozenset({"joint", "per_direction", "per_anchor"}),
            similarities=frozenset({"cos", "dot"}),
            hardness_modes=frozenset({"in_batch_negatives", "hard_negatives", "all_negatives"}),
            dtype=dtype,
            compute_dtype=compute,
            grad_scale=True,
            encoder=True,
            cached=cached,
            dropout=cached,
            data_parallel=data_parallel,
            validates_inputs=True,
            torch_memory=True,  # CACHE-5 (cached/loss_stage_memory) for the cached ones
        )

    def _tensor(self, x: np.ndarray, device: str = "cpu", grad: bool = False) -> torch.Tensor:
        return torch.tensor(x, dtype=self.dtype, device=device, requires_grad=grad)

    def _scale(self, kwargs: dict[str, Any], device: str = "cpu") -> torch.Tensor:
        scale = kwargs["scale"]
        if (
            not isinstance(scale, (int, float))
            or isinstance(scale, bool)
            or not np.isfinite(scale)
            or scale <= 0
        ):
            return scale  # let the implementation reject it (SCALE-1)
        # A learnable scale in the loss stage's precision (at least float32, like the implementation).
        dtype = torch.promote_types(self.dtype, torch.float32)
        kwargs["scale"] = torch.tensor(float(scale), dtype=dtype, device=device, requires_grad=True)
        return kwargs["scale"]

    # -- level 1 ---------------------------------------------------------------------------------------------
    def embeddings(self, case: EmbeddingCase) -> LossGrads:
        kwargs = case.loss_kwargs()
        scale = self._scale(kwargs)
        # Embeddings that are not (N, D) and (K, N, D) cannot be tables of rows for the cached module
        # (it takes model inputs); the functional loss validates them (LAYOUT-1, LAYOUT-2).
        if not self.cached or case.queries.ndim != 2 or case.docs.ndim != 3:
            q, d = self._tensor(case.queries, grad=True), self._tensor(case.docs, grad=True)
            loss = infonce_loss(q, d, **kwargs)
            loss.backward()
            return LossGrads(_scalar(loss), _np(q.grad), _np(d.grad), _scalar(scale.grad))
        tables = _Tables(self._tensor(case.queries), self._tensor(case.docs))
        n = case.queries.shape[0]
        inputs = [(torch.tensor(0), torch.arange(n))]
        if case.docs.ndim == 3:
            k, nd = case.docs.shape[:2]
            inputs += [(torch.tensor(1), torch.arange(c * nd, (c + 1) * nd)) for c in range(k)]
        module = CachedInfoNCELoss(tables, mini_batch_size=self.mini_batch_size, **kwargs)
        loss = module(inputs)
        loss.backward()
        grad_docs = _np(tables.docs.grad).reshape(case.docs.shape)
        return LossGrads(_scalar(loss), _np(tables.queries.grad), grad_docs, _scalar(scale.grad))

    # -- level 2 ---------------------------------------------------------------------------------------------
    def _loss_module(
        self, encoder: nn.Module, kwargs: dict[str, Any], mini_batch_size: int | None
    ) -> nn.Module:
        if mini_batch_size is None:
            return InfoNCELoss(encoder, **kwargs)
        return CachedInfoNCELoss(encoder, mini_batch_size=mini_batch_size, **kwargs)

    def _linear(self, weight: np.ndarray, device: str = "cpu") -> nn.Linear:
        layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False, dtype=self.dtype, device=device)
        with torch.no_grad():
            layer.weight.copy_(torch.tensor(weight, dtype=self.dtype))
        return layer

    def _inputs(self, xq: np.ndarray, xd: np.ndarray, device: str = "cpu") -> list[torch.Tensor]:
        return [self._tensor(xq, device), *(self._tensor(c, device) for c in xd)]

    def encoder(self, case: EncoderCase) -> EncoderGrads:
        layer = self._linear(case.weight)
        module = self._loss_module(layer, case.loss_kwargs(), case.mini_batch_size)
        losses = [module(self._inputs(step.x_queries, step.x_docs)) for step in case.steps]
        for loss, step in zip(losses, case.steps, strict=True):
            (loss * step.upstream).backward()
        return EncoderGrads([_scalar(v) for v in losses], _np(layer.weight.grad))

    def dropout_encoder(self, case: DropoutCase) -> EncoderGrads:
        layer = self._linear(case.weight)
        encoder = nn.Sequential(nn.Dropout(case.p), layer).train()
        module = self._loss_module(encoder, case.loss_kwargs(), case.mini_batch_size)
        inputs = self._inputs(case.x_queries, case.x_docs)
        torch.manual_seed(case.seed)
        loss = module(inputs)
        (loss * case.upstream).backward()
        return EncoderGrads([_scalar(loss)], _np(layer.weight.grad))

    # -- level 3 (inside a worker whose default process group is up) ----------------------------------------
    def rank_embeddings(self, case: RankCase) -> LossGrads:
        q = self._tensor(case.queries, case.device, grad=True)
        d = self._tensor(case.docs, case.device, grad=True)
        loss = infonce_loss(q, d, gather_across_devices=True, **case.loss_kwargs())
        loss.backward()
        return LossGrads(_scalar(loss), _np(q.grad), _np(d.grad))

    def rank_encoder(self, case: RankEncoderCase) -> EncoderGrads:
        layer = self._linear(case.weight, case.device)
        kwargs = {**case.loss_kwargs(), "gather_across_devices": True}
        module = self._loss_module(layer, kwargs, case.mini_batch_size)
        loss = module(self._inputs(case.x_queries, case.x_docs, case.device))
        loss.backward()
        return EncoderGrads([_scalar(loss)], _np(layer.weight.grad))


uncached = TorchAdapter("torch-uncached")
cached = TorchAdapter("torch-cached", cached=True)
data_parallel = TorchAdapter("torch-data-parallel", cached=True, data_parallel=True)
uncached_float32 = TorchAdapter("torch-uncached-float32", dtype="float32")
cached_float32 = TorchAdapter("torch-cached-float32", dtype="float32", cached=True)
data_parallel_float32 = TorchAdapter(
    "torch-data-parallel-float32", dtype="float32", cached=True, data_parallel=True
)
uncached_bfloat16 = TorchAdapter("torch-uncached-bfloat16", dtype="bfloat16")
cached_bfloat16 = TorchAdapter("torch-cached-bfloat16", dtype="bfloat16", cached=True)
