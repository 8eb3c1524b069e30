"""The GradCache form of :class:`~.base.InfoNCE`, with overridable hooks (CACHE-1 .. CACHE-5).

Written like sentence-transformers' ``CachedMultipleNegativesRankingLoss`` (Gao et al. 2021):

1. embed every input column in mini-batches without a graph, saving the RNG state before each
   mini-batch (:meth:`GradCache.capture_rng`);
2. the loss stage: ``mini_batch_size`` query rows at a time against the whole (gathered) batch,
   each chunk backpropagated to the embeddings at once, so the stage holds O(mini_batch_size x
   candidates) (CACHE-5); the embedding gradients are the cache (:meth:`GradCache.chunk_loss`,
   :meth:`GradCache.backpropagate`);
3. the returned loss is a fresh leaf with a hook: on backward it re-embeds each mini-batch with a
   graph under its saved RNG state (:meth:`GradCache.replay_rng`, CACHE-3) and backpropagates
   ``grad_output * cached gradient`` (:meth:`GradCache.upstream`, CACHE-2) into the encoder, whose
   ``.grad`` accumulates like any loss's (CACHE-4). The hook gets *its own* forward's cache
   (:meth:`GradCache.remember` / :meth:`GradCache.recall`), so two forwards may precede their backwards.

With a process group (``InfoNCE(gather=True)``) the embeddings are gathered as constants and the
cached gradients are reduce-scattered (summed over ranks, own slot kept): ``W * dL/d(local)`` (DP-3).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from .base import InfoNCE, all_gather_no_grad

__all__ = ["CacheState", "GradCache"]

Encoder = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class CacheState:
    """What the backward hook of one forward call needs."""

    columns: list[torch.Tensor]
    ranges: list[tuple[int, int]]
    rng_states: list[list[torch.Tensor]]
    grads: list[torch.Tensor]


def reduce_scatter_sum(x: torch.Tensor, rank: int, size: int) -> torch.Tensor:
    """Sum (N, ...) over ranks and keep this rank's (B, ...) slot (the adjoint of the gather)."""
    if size == 1:
        return x
    total = x.contiguous().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total.chunk(size)[rank]


class GradCache:
    """``GradCache(loss, encoder, mini_batch_size, scale)(x_queries (B, F), x_docs (K, B, F))`` -> L_r."""

    def __init__(self, loss: InfoNCE, encoder: Encoder, mini_batch_size: int, scale: torch.Tensor) -> None:
        self.loss = loss
        self.encoder = encoder
        self.mini_batch_size = mini_batch_size
        self.scale = scale

    # ----------------------------------------------------------- random state (CACHE-3)
    def capture_rng(self) -> torch.Tensor:
        return torch.get_rng_state()

    @contextlib.contextmanager
    def replay_rng(self, state: torch.Tensor) -> Iterator[None]:
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(state)
            yield

    # ----------------------------------------------------------- the cache (CACHE-4)
    def remember(self, state: CacheState) -> Any:
        """A token from which :meth:`recall` gets this forward's state back."""
        return state

    def recall(self, token: Any) -> CacheState:
        return token

    # ----------------------------------------------------------- loss stage (CACHE-1, CACHE-5)
    def chunk_loss(
        self, per_query: torch.Tensor, batch_size: int, n_chunks: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(reported, backpropagated)`` share of one chunk: its per-query losses summed over B."""
        share = per_query.sum() / batch_size
        return share, share

    def backpropagate(self, chunks: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Backpropagate each chunk as soon as it is computed (its graph is freed before the next: CACHE-5);
        the total of the reported shares."""
        total = torch.zeros((), dtype=torch.float64)
        for reported, objective in chunks:
            objective.backward()
            total = total + reported.detach()
        return total

    def loss_stage(
        self, queries: torch.Tensor, docs: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``L_r`` and dL_r/d(local embeddings) summed over ranks, per column (queries, docs[0], ...)."""
        rank, size = self.loss.world()
        batch = queries.shape[0]
        q_all = all_gather_no_grad(queries) if size > 1 else queries
        d_all = torch.stack([all_gather_no_grad(c) if size > 1 else c for c in docs.unbind(0)])
        q_all, d_all = q_all.detach().requires_grad_(), d_all.detach().requires_grad_()
        offset = self.loss.rank_offset(rank, batch) if size > 1 else 0
        m = self.mini_batch_size
        n_chunks = math.ceil(batch / m)

        def chunks() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            for start in range(0, batch, m):
                rows = torch.arange(offset + start, offset + min(start + m, batch), device=queries.device)
                yield self.chunk_loss(
                    self.loss.per_query_losses(q_all, d_all, rows, self.scale), batch, n_chunks
                )

        total = self.backpropagate(chunks())
        grads = [q_all.grad, *d_all.grad.unbind(0)]  # type: ignore[union-attr]
        return total, [reduce_scatter_sum(g, rank, size) for g in grads]

    # ----------------------------------------------------------- backward (CACHE-2)
    def upstream(self, cached: torch.Tensor, grad_output: torch.Tensor) -> torch.Tensor:
        """The gradient sent into one mini-batch's re-embedding: linear in ``grad_output``."""
        return cached * grad_output

    def backward_hook(self, grad_output: torch.Tensor, token: Any) -> None:
        state = self.recall(token)
        with torch.enable_grad():
            for x, rng_states, grad in zip(state.columns, state.rng_states, state.grads, strict=True):
                for (start, stop), rng_state in zip(state.ranges, rng_states, strict=True):
                    with self.replay_rng(rng_state):
                        reps = self.encoder(x[start:stop])
                    reps.backward(self.upstream(grad[start:stop], grad_output))

    # ----------------------------------------------------------- forward
    def __call__(self, x_queries: torch.Tensor, x_docs: torch.Tensor) -> torch.Tensor:
        columns = [x_queries, *x_docs.unbind(0)]
        n = x_queries.shape[0]
        ranges = [
            (start, min(start + self.mini_batch_size, n)) for start in range(0, n, self.mini_batch_size)
        ]
        reps, rng_states = [], []
        for x in columns:
            parts, states = [], []
            for start, stop in ranges:
                states.append(self.capture_rng())
                with torch.no_grad():
                    parts.append(self.encoder(x[start:stop]))
            reps.append(torch.cat(parts))
            rng_states.append(states)
        value, grads = self.loss_stage(reps[0], torch.stack(reps[1:]))
        token = self.remember(CacheState(columns, ranges, rng_states, grads))
        loss = value.detach().requires_grad_()
        loss.register_hook(lambda grad_output: self.backward_hook(grad_output, token))
        return loss
