"""The conformance adapter of the :mod:`.base` implementation (every level, float64).

:class:`TorchAdapter` is correct and must pass the whole suite; a mutant's adapter is the same class
with ``loss_class`` or ``cache_class`` replaced by a subclass that overrides one hook
(:func:`adapter_for`). Load it as ``infonce_spec.conformance.mutants.adapter:TorchAdapter``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from ..protocol import (
    Capabilities,
    DropoutCase,
    EmbeddingCase,
    EncoderCase,
    EncoderGrads,
    LossGrads,
    RankCase,
    RankEncoderCase,
)
from .base import InfoNCE, Options
from .cached import Encoder, GradCache

__all__ = ["CAPABILITIES", "TorchAdapter", "adapter_for"]

DTYPE = torch.float64
CAPABILITIES = Capabilities(
    name="mutants.base",
    directions=frozenset({"query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc"}),
    partition_modes=frozenset({"joint", "per_direction", "per_anchor"}),
    similarities=frozenset({"cos", "dot"}),
    hardness_modes=frozenset({"in_batch_negatives", "hard_negatives", "all_negatives"}),
    dtype="float64",
    grad_scale=True,
    encoder=True,
    cached=True,
    dropout=True,
    data_parallel=True,
    torch_memory=True,
)


def _tensor(x: Any, grad: bool = False) -> torch.Tensor:
    return torch.tensor(np.asarray(x), dtype=DTYPE, requires_grad=grad)


class TorchAdapter:
    """Levels 1-3 (embeddings, cached encoder with dropout, data parallel) of :class:`~.base.InfoNCE`."""

    loss_class: ClassVar[type[InfoNCE]] = InfoNCE
    cache_class: ClassVar[type[GradCache]] = GradCache
    capabilities: Capabilities = CAPABILITIES

    def make_loss(self, kwargs: dict[str, Any], *, gather: bool = False) -> InfoNCE:
        return self.loss_class(Options.from_kwargs(kwargs), gather=gather)

    # ----------------------------------------------------------- embeddings (level 1, level 3)
    def _embeddings(self, queries: Any, docs: Any, kwargs: dict[str, Any], gather: bool) -> LossGrads:
        q, d, s = _tensor(queries, True), _tensor(docs, True), _tensor(kwargs["scale"], True)
        loss = self.make_loss(kwargs, gather=gather).loss(q, d, s)
        loss.backward()
        grads = [t.grad if t.grad is not None else torch.zeros_like(t) for t in (q, d, s)]
        return LossGrads(float(loss.item()), grads[0].numpy(), grads[1].numpy(), float(grads[2].item()))

    def embeddings(self, case: EmbeddingCase) -> LossGrads:
        return self._embeddings(case.queries, case.docs, case.loss_kwargs(), gather=False)

    def rank_embeddings(self, case: RankCase) -> LossGrads:
        return self._embeddings(case.queries, case.docs, case.loss_kwargs(), gather=True)

    # ----------------------------------------------------------- encoder (level 2, level 3)
    def forward(
        self,
        encoder: Encoder,
        x_queries: torch.Tensor,
        x_docs: torch.Tensor,
        kwargs: dict[str, Any],
        mini_batch_size: int | None,
        *,
        gather: bool = False,
    ) -> torch.Tensor:
        """One loss call: uncached (``mini_batch_size`` None) or GradCache."""
        loss = self.make_loss(kwargs, gather=gather)
        scale = torch.tensor(float(kwargs["scale"]), dtype=DTYPE)
        if mini_batch_size is None:
            queries = encoder(x_queries)  # queries first, then each column (the RNG order of DropoutCase)
            docs = torch.stack([encoder(column) for column in x_docs.unbind(0)])
            return loss.loss(queries, docs, scale)
        return self.cache_class(loss, encoder, mini_batch_size, scale)(x_queries, x_docs)

    def _steps(
        self,
        weight: Any,
        steps: Sequence[tuple[Any, Any, float]],
        kwargs: dict[str, Any],
        mini_batch_size: int | None,
        gather: bool,
    ) -> EncoderGrads:
        w = _tensor(weight, True)

        def encoder(x: torch.Tensor) -> torch.Tensor:
            return x @ w.T

        losses = [
            self.forward(encoder, _tensor(xq), _tensor(xd), kwargs, mini_batch_size, gather=gather)
            for xq, xd, _ in steps
        ]
        for loss, (_, _, upstream) in zip(losses, steps, strict=True):
            (loss * upstream).backward()
        grad = w.grad if w.grad is not None else torch.zeros_like(w)
        return EncoderGrads([float(loss.item()) for loss in losses], grad.numpy())

    def encoder(self, case: EncoderCase) -> EncoderGrads:
        steps = [(s.x_queries, s.x_docs, s.upstream) for s in case.steps]
        return self._steps(case.weight, steps, case.loss_kwargs(), case.mini_batch_size, gather=False)

    def rank_encoder(self, case: RankEncoderCase) -> EncoderGrads:
        steps = [(case.x_queries, case.x_docs, 1.0)]
        return self._steps(case.weight, steps, case.loss_kwargs(), case.mini_batch_size, gather=True)

    def dropout_encoder(self, case: DropoutCase) -> EncoderGrads:
        w = _tensor(case.weight, True)

        def encoder(x: torch.Tensor) -> torch.Tensor:
            return F.dropout(x, case.p, training=True) @ w.T

        torch.manual_seed(case.seed)
        loss = self.forward(
            encoder, _tensor(case.x_queries), _tensor(case.x_docs), case.loss_kwargs(), case.mini_batch_size
        )
        (loss * case.upstream).backward()
        grad = w.grad if w.grad is not None else torch.zeros_like(w)
        return EncoderGrads([float(loss.item())], grad.numpy())


def adapter_for(
    name: str,
    *,
    loss_class: type[InfoNCE] = InfoNCE,
    cache_class: type[GradCache] = GradCache,
    capabilities: Capabilities | None = None,
) -> TorchAdapter:
    """A :class:`TorchAdapter` whose loss or cache class is replaced (a mutant's adapter)."""
    cls = type(
        f"{name}_adapter",
        (TorchAdapter,),
        {
            "loss_class": loss_class,
            "cache_class": cache_class,
            "capabilities": capabilities or CAPABILITIES.with_(name=f"mutants.{name}"),
        },
    )
    return cls()
