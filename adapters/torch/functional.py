"""The uncached loss on embeddings: :func:`infonce_loss` (clauses LOSS-1, DP-1, DP-2, DP-3).

Autograd provides every gradient: the loss is built from differentiable torch operations
(GRAD-1), masked entries are ``-inf`` with exact zero gradient (GRAD-2), the hardness term is
detached (HARD-5) and a tensor ``scale`` gets its gradient too (SCALE-2).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import reduce
from typing import Any, Literal

import torch

from .autocast import loss_stage_precision
from .config import LossConfig, ScaleLike
from .gather import all_gather_with_grad, check_equal_local_batch, process_group_info
from .layout import compute_dtype, validate_embeddings
from .logits import Candidates, query_rows
from .partition import per_query_loss
from .similarity import unit_rows

__all__ = ["infonce_loss", "loss_from_config", "scale_in"]


def scale_in(config: LossConfig, dtype: torch.dtype) -> float | torch.Tensor:
    """``config.scale`` as used in the logits: a float, or the tensor cast to ``dtype`` (SCALE-1)."""
    return config.scale.to(dtype) if isinstance(config.scale, torch.Tensor) else config.scale


def common_compute_dtype(tensors: Sequence[torch.Tensor]) -> torch.dtype:
    """The loss-stage precision for a set of embeddings: their promoted dtype, at least float32."""
    return compute_dtype(reduce(torch.promote_types, (t.dtype for t in tensors)))


def loss_from_config(
    queries: Any,
    docs: Any,
    config: LossConfig,
    *,
    check_finite: bool = True,
    reduction: Literal["mean", "none"] = "mean",
) -> torch.Tensor:
    """The local loss ``L_r`` (or the local ``l_g`` with ``reduction="none"``) for validated options.

    Without a process group (or ``gather_across_devices=False``) ``L_r`` is the loss ``L`` of the
    batch (LOSS-1). With one, each column is gathered with gradient (DP-1, DP-3) and the rows are
    this rank's queries ``[r * B, (r + 1) * B)``, so ``L_r`` is the mean of its own ``l_g`` (DP-2).
    """
    q, columns = validate_embeddings(queries, docs, check_finite=check_finite)
    with loss_stage_precision(q.device):
        losses = _local_losses(q, columns, config)
    if reduction == "none":
        return losses
    if reduction != "mean":
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    return losses.mean()


def _local_losses(q: torch.Tensor, columns: list[torch.Tensor], config: LossConfig) -> torch.Tensor:
    """The per-query losses of this rank's queries (autocast already disabled)."""
    b = q.shape[0]
    rank, world = process_group_info(config.group) if config.gather_across_devices else (0, 1)
    # Upcast before the gather: its backward (a reduce-scatter SUM over W ranks) then adds in the
    # compute precision and the gradient is rounded to a half input dtype once, at the end.
    dtype = common_compute_dtype([q, *columns])
    q, columns = q.to(dtype), [c.to(dtype) for c in columns]
    if world > 1:
        check_equal_local_batch(q, columns, config.group)
        q = all_gather_with_grad(q, config.group)
        columns = [all_gather_with_grad(c, config.group) for c in columns]
    cands = Candidates(
        queries=unit_rows(q, config.similarity),
        docs=unit_rows(torch.cat(columns, dim=0), config.similarity),
    )
    block = query_rows(cands, rank * b, (rank + 1) * b, config, scale_in(config, dtype))
    return per_query_loss(block, config.partition_mode)


def infonce_loss(
    queries: torch.Tensor,
    docs: torch.Tensor | Sequence[torch.Tensor],
    *,
    directions: Sequence[str] = ("query_to_doc",),
    partition_mode: str = "joint",
    scale: ScaleLike = 20.0,
    similarity: str = "cos",
    hardness_mode: str | None = None,
    hardness_strength: float = 0.0,
    gather_across_devices: bool = False,
    group: Any = None,
    check_finite: bool = True,
    reduction: Literal["mean", "none"] = "mean",
) -> torch.Tensor:
    """The InfoNCE / GTE in-batch contrastive loss of ``queries`` (B, D) against ``docs``.

    ``docs`` is a (K, B, D) tensor or a list of K (B, D) tensors: column 0 holds the positives,
    columns 1.. hard negatives (LAYOUT-2). Options as in the spec (DIR-1, PART-1, SCALE-1, SIM-3,
    HARD-1); invalid ones raise :class:`~infonce_spec.errors.SpecViolation` naming the clause.
    Returns the local loss as a 0-d tensor in the compute precision (float32 for half inputs,
    else the input's); ``reduction="none"`` returns the per-query losses ``l_g`` (B,) instead.
    With ``gather_across_devices=True`` and an initialised process group this is rank r's
    ``L_r`` (DP-2) and ``backward`` gives ``W * dL/d(local embeddings)`` (DP-3).
    """
    config = LossConfig(
        directions=directions,  # type: ignore[arg-type]
        partition_mode=partition_mode,
        scale=scale,
        similarity=similarity,
        hardness_mode=hardness_mode,
        hardness_strength=hardness_strength,
        gather_across_devices=gather_across_devices,
        group=group,
    )
    return loss_from_config(queries, docs, config, check_finite=check_finite, reduction=reduction)
