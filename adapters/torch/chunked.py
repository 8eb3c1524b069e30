"""The chunked loss stage of the cached loss (clauses CACHE-1, CACHE-5, DP-1 .. DP-3).

Given detached embeddings, compute the local loss ``L_r`` and its gradients with respect to the
global embeddings, ``chunk_size`` query rows at a time. Each chunk builds only its own
(chunk_size x candidates) logits (CACHE-5) and is differentiated by autograd on detached leaf
copies of the unit rows; the gradients of the unit rows are summed over chunks and pulled back
through the normalisation once at the end. Nothing here keeps a graph after it returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .autocast import loss_stage_precision
from .batching import check_mini_batch_size
from .config import LossConfig
from .functional import common_compute_dtype, scale_in
from .gather import all_gather_no_grad, check_equal_local_batch, process_group_info
from .layout import validate_embeddings
from .logits import Candidates, query_rows
from .partition import per_query_loss
from .similarity import unit_rows

__all__ = ["ChunkedResult", "chunked_loss_and_grads"]


@dataclass(frozen=True)
class ChunkedResult:
    """``loss`` = L_r (0-d); ``per_query_loss`` (B,); gradients of ``L_r`` (not yet W-scaled).

    ``grad_queries`` (N, D) and ``grad_docs`` (K, N, D) are dL_r/d(global embeddings) in the compute
    precision, ``None`` when not requested; ``grad_scale`` is dL_r/d(scale) for a tensor scale
    that requires grad, else ``None``. ``rank`` and ``world_size`` describe the layout (DP-1).
    """

    loss: torch.Tensor
    per_query_loss: torch.Tensor
    grad_queries: torch.Tensor | None
    grad_docs: torch.Tensor | None
    grad_scale: torch.Tensor | None
    rank: int
    world_size: int


def chunked_loss_and_grads(
    queries: torch.Tensor,
    docs: torch.Tensor | Sequence[torch.Tensor],
    config: LossConfig,
    chunk_size: int,
    *,
    need_grad: bool = True,
    check_finite: bool = True,
) -> ChunkedResult:
    """``L_r`` and dL_r/d(global embeddings) of local ``queries`` (B, D) and ``docs``, in row chunks.

    With ``gather_across_devices`` the embeddings are gathered without autograd (column by
    column, DP-1); the caller turns the global gradients into local ones (reduce-scatter SUM,
    DP-3). Peak memory beyond the inputs: O(chunk_size x candidates + N x D) (CACHE-5).
    """
    check_mini_batch_size(chunk_size)
    q, columns = validate_embeddings(queries, docs, check_finite=check_finite)
    with loss_stage_precision(q.device):
        return _chunked(q, columns, config, chunk_size, need_grad)


def _chunked(
    q: torch.Tensor, columns: list[torch.Tensor], config: LossConfig, chunk_size: int, need_grad: bool
) -> ChunkedResult:
    b = q.shape[0]
    rank, world = process_group_info(config.group) if config.gather_across_devices else (0, 1)
    if world > 1:
        check_equal_local_batch(q, columns, config.group)
        q = all_gather_no_grad(q.detach(), config.group)
        columns = [all_gather_no_grad(c.detach(), config.group) for c in columns]
    dtype = common_compute_dtype([q, *columns])
    k, n, d = len(columns), q.shape[0], q.shape[1]
    want_scale = need_grad and config.scale_requires_grad

    with torch.enable_grad():
        q_raw = q.detach().to(dtype).requires_grad_(need_grad)
        d_raw = torch.cat([c.detach().to(dtype) for c in columns], dim=0).requires_grad_(need_grad)
        q_unit = unit_rows(q_raw, config.similarity)
        d_unit = unit_rows(d_raw, config.similarity)
    q_leaf = q_unit.detach().requires_grad_(need_grad)
    d_leaf = d_unit.detach().requires_grad_(need_grad)
    scale = scale_in(config, dtype)
    if isinstance(scale, torch.Tensor):
        scale = scale.detach().requires_grad_(want_scale)
    cands = Candidates(queries=q_leaf, docs=d_leaf)

    grad_q_unit = torch.zeros_like(q_leaf) if need_grad else None
    grad_d_unit = torch.zeros_like(d_leaf) if need_grad else None
    grad_scale = torch.zeros((), dtype=dtype, device=q.device) if want_scale else None
    losses = []
    for start in range(rank * b, (rank + 1) * b, chunk_size):
        stop = min(start + chunk_size, (rank + 1) * b)
        with torch.set_grad_enabled(need_grad):
            chunk = per_query_loss(query_rows(cands, start, stop, config, scale), config.partition_mode)
        losses.append(chunk.detach())
        if need_grad:
            inputs = [q_leaf, d_leaf, *([scale] if want_scale else [])]
            grads = torch.autograd.grad(chunk.sum() / b, inputs)
            grad_q_unit.add_(grads[0])  # type: ignore[union-attr]
            grad_d_unit.add_(grads[1])  # type: ignore[union-attr]
            if want_scale:
                grad_scale.add_(grads[2])  # type: ignore[union-attr]
        del chunk

    per_query = torch.cat(losses)
    if not need_grad:
        return ChunkedResult(per_query.mean(), per_query, None, None, None, rank, world)
    if config.similarity == "dot":
        grad_q, grad_d = grad_q_unit, grad_d_unit
    else:
        grad_q, grad_d = torch.autograd.grad([q_unit, d_unit], [q_raw, d_raw], [grad_q_unit, grad_d_unit])
    return ChunkedResult(
        loss=per_query.mean(),
        per_query_loss=per_query,
        grad_queries=grad_q,
        grad_docs=grad_d.view(k, n, d),  # type: ignore[union-attr]
        grad_scale=grad_scale,
        rank=rank,
        world_size=world,
    )
