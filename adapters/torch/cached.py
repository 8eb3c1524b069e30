"""``CachedInfoNCELoss``: the GradCache form of the loss (clauses CACHE-1 .. CACHE-5, DP-1 .. DP-4).

GradCache (Gao et al. 2021) in three steps:

1. embed every input batch in mini-batches of ``mini_batch_size`` rows without a graph, saving
   the RNG state before each mini-batch;
2. compute the loss and its gradient with respect to every embedding, ``mini_batch_size`` query
   rows at a time (:func:`~.chunked.chunked_loss_and_grads`, memory O(mini_batch_size x
   candidates), CACHE-5);
3. in backward, re-embed each mini-batch with a graph under its saved RNG state (CACHE-3) and
   the first pass's autocast state, and
   backpropagate ``grad_output * cached gradient`` into the encoder (CACHE-2), which accumulates
   into ``.grad`` like any loss (CACHE-4).

Everything step 3 needs lives in the autograd graph (the context of :class:`_GradCacheLoss`), not
on the module, so two forwards followed by two backwards each backpropagate their own batch.
With a DistributedDataParallel encoder all re-embeddings but the last run under
``encoder.no_sync()``, so gradients are all-reduced once per step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .autocast import AutocastState
from .batching import check_mini_batch_size, mini_batches, slice_batch
from .chunked import ChunkedResult, chunked_loss_and_grads
from .config import LossConfig
from .gather import reduce_scatter_sum
from .modules import LossOptionsMixin, check_inputs, embed
from .rng import RngSnapshot

__all__ = ["CachedInfoNCELoss"]


@dataclass
class _CacheState:
    """What backward needs: the encoder, the mini-batches, their RNG states and the cached gradients."""

    encoder: nn.Module
    embedding_key: str
    batches: list[Any]
    ranges: list[list[tuple[int, int]]]
    rng: list[list[RngSnapshot]]
    autocast: AutocastState
    result: ChunkedResult
    config: LossConfig


def _local_gradients(state: _CacheState, grad_output: torch.Tensor) -> list[torch.Tensor]:
    """``grad_output * dL_r/d(local embeddings)`` per column, summed over ranks (DP-3)."""
    result = state.result
    global_grads = [result.grad_queries, *result.grad_docs.unbind(0)]  # type: ignore[union-attr]
    scaled = [g * grad_output for g in global_grads]  # type: ignore[operator]
    if result.world_size == 1:
        return scaled
    return [reduce_scatter_sum(g, state.config.group) for g in scaled]


class _GradCacheLoss(torch.autograd.Function):
    """The cached loss as a graph node; its backward re-embeds and backpropagates (CACHE-2 .. CACHE-4)."""

    @staticmethod
    def forward(ctx: Any, anchor: torch.Tensor, state: _CacheState) -> torch.Tensor:
        ctx.state = state
        ctx.anchor_is_scale = state.result.grad_scale is not None
        ctx.anchor_dtype = anchor.dtype
        return state.result.loss.clone()

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, None]:
        state: _CacheState | None = ctx.state
        if state is None:
            raise RuntimeError("CachedInfoNCELoss: backward through the same loss twice is not supported")
        ctx.state = None  # free the cache as soon as it is used
        local = _local_gradients(state, grad_output)
        encoder = state.encoder
        no_sync = getattr(encoder, "no_sync", None)
        last = (len(state.batches) - 1, len(state.ranges[-1]) - 1)
        with torch.enable_grad():
            for c, batch in enumerate(state.batches):
                for i, (start, stop) in enumerate(state.ranges[c]):
                    sync = (c, i) == last or no_sync is None
                    with contextlib.nullcontext() if sync else no_sync():  # type: ignore[misc]
                        with state.rng[c][i].replay(), state.autocast.replay():
                            reps = embed(encoder, slice_batch(batch, start, stop), state.embedding_key)
                        torch.autograd.backward(reps, local[c][start:stop].to(reps.dtype))
        grad_scale = None
        if ctx.anchor_is_scale:
            grad_scale = (state.result.grad_scale * grad_output).to(ctx.anchor_dtype)  # type: ignore[operator]
        return grad_scale, None


class CachedInfoNCELoss(LossOptionsMixin, nn.Module):
    """The loss of :class:`~.modules.InfoNCELoss`, computed with GradCache (CACHE-1).

    Same value and gradients as the uncached loss for every ``mini_batch_size >= 1``, with
    activation memory of one mini-batch of the encoder and a loss stage of O(mini_batch_size x
    candidates) (CACHE-5). ``forward(inputs)`` takes K + 1 input batches (queries, then document
    columns) and returns the local loss ``L_r``. The gradient reaches the encoder's parameters
    through ``loss.backward()`` (nested backward passes accumulate into ``.grad``, CACHE-4);
    ``torch.autograd.grad(loss, params)`` is not supported. A tensor ``scale`` that requires grad
    receives its gradient through the graph as usual (SCALE-2).
    """

    def __init__(
        self,
        encoder: nn.Module,
        *,
        mini_batch_size: int = 32,
        embedding_key: str = "sentence_embedding",
        check_finite: bool = True,
        **options: Any,
    ) -> None:
        """``options``: the loss options, keyword by keyword, as :class:`~.config.LossConfig` declares them."""
        nn.Module.__init__(self)
        self.encoder = encoder
        self.mini_batch_size = check_mini_batch_size(mini_batch_size)
        self.embedding_key = embedding_key
        self.check_finite = check_finite
        self._init_options(options)

    def _needs_grad(self, config: LossConfig) -> bool:
        if not torch.is_grad_enabled():
            return False
        return config.scale_requires_grad or any(p.requires_grad for p in self.encoder.parameters())

    def forward(self, inputs: Sequence[Any]) -> torch.Tensor:
        batches = check_inputs(inputs)
        config = self.config()
        need_grad = self._needs_grad(config)
        ranges = [mini_batches(batch, self.mini_batch_size) for batch in batches]
        rng: list[list[RngSnapshot]] = []
        autocast = AutocastState.capture()
        embeddings = []
        with torch.no_grad():
            for batch, column_ranges in zip(batches, ranges, strict=True):
                parts, states = [], []
                for start, stop in column_ranges:
                    part = slice_batch(batch, start, stop)
                    if need_grad:
                        states.append(RngSnapshot.capture(part))
                    parts.append(embed(self.encoder, part, self.embedding_key))
                embeddings.append(torch.cat(parts, dim=0))
                rng.append(states)
        result = chunked_loss_and_grads(
            embeddings[0],
            embeddings[1:],
            config,
            self.mini_batch_size,
            need_grad=need_grad,
            check_finite=self.check_finite,
        )
        if not need_grad:
            return result.loss
        state = _CacheState(self.encoder, self.embedding_key, batches, ranges, rng, autocast, result, config)
        anchor = config.scale if result.grad_scale is not None else torch.zeros((), requires_grad=True)
        return _GradCacheLoss.apply(anchor, state)
