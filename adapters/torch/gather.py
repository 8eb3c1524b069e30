"""Data-parallel gather with gradient (clauses DP-1, DP-3, DP-5).

Rank r owns global queries ``[r * B, (r + 1) * B)`` (DP-1). Every column is gathered on its own
(queries, docs[0], docs[1], ...), so the global candidate layout stays column-blocked,
``k * N + j`` (LAYOUT-3); concatenating the columns before one gather would interleave them.

The gather's backward is a reduce-scatter SUM: rank r receives ``sum over ranks r' of
dL_{r'}/d(its slot)``, which is ``W * dL/d(local)`` for ``L = mean_r L_r`` (DP-3). We use torch's
autograd-capable functional collective where present and fall back to :class:`_AllGatherWithGrad`
(all_gather forward; all_reduce SUM and slice backward). Both work with gloo and NCCL.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from infonce_spec.errors import SpecViolation

__all__ = [
    "all_gather_no_grad",
    "all_gather_with_grad",
    "check_equal_local_batch",
    "process_group_info",
    "reduce_scatter_sum",
]

try:  # torch >= 2.6 has the non-deprecated name; older releases the *_tensor_autograd one.
    from torch.distributed import _functional_collectives as _fc

    _AUTOGRAD_GATHER = getattr(_fc, "all_gather_single_autograd", None) or getattr(
        _fc, "all_gather_tensor_autograd", None
    )
    _REDUCE_SCATTER = getattr(_fc, "reduce_scatter_single", None) or getattr(
        _fc, "reduce_scatter_tensor", None
    )
except ImportError:  # pragma: no cover - torch built without distributed
    _fc = None
    _AUTOGRAD_GATHER = None
    _REDUCE_SCATTER = None


def _group(group: Any) -> Any:
    return dist.group.WORLD if group is None else group


def process_group_info(group: Any = None) -> tuple[int, int]:
    """``(rank, world_size)`` in ``group``; ``(0, 1)`` without an initialised process group."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(_group(group)), dist.get_world_size(_group(group))


def check_equal_local_batch(queries: torch.Tensor, columns: list[torch.Tensor], group: Any = None) -> None:
    """DP-5: every rank must hold the same local shapes (B, K, D); raise a SpecViolation if not.

    One all_gather of a 3-element int64 tensor (on the embeddings' device, so it works with NCCL)
    per step, before any embedding is gathered: every rank sees every shape and raises the same
    error, instead of a hang or a silently misaligned layout.
    """
    _, world = process_group_info(group)
    if world == 1:
        return
    b, d = queries.shape
    mine = torch.tensor([b, len(columns), d], dtype=torch.int64, device=queries.device)
    shapes = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(shapes, mine, group=_group(group))
    values = [tuple(int(v) for v in s.tolist()) for s in shapes]
    if len(set(values)) != 1:
        described = ", ".join(f"rank {r}: B={s[0]} K={s[1]} D={s[2]}" for r, s in enumerate(values))
        raise SpecViolation(
            "DP-5", f"local batch shapes differ across ranks ({described}); they must be equal"
        )


def all_gather_no_grad(x: torch.Tensor, group: Any = None) -> torch.Tensor:
    """Concatenate ``x`` (B, ...) of every rank along dim 0, rank order, without autograd."""
    _, world = process_group_info(group)
    if world == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.contiguous(), group=_group(group))
    return torch.cat(parts, dim=0)


def reduce_scatter_sum(x: torch.Tensor, group: Any = None) -> torch.Tensor:
    """The adjoint of :func:`all_gather_no_grad`: sum ``x`` (W * B, ...) over ranks, keep own slot."""
    rank, world = process_group_info(group)
    if world == 1:
        return x
    if _REDUCE_SCATTER is not None:
        out = _REDUCE_SCATTER(x.contiguous(), "sum", 0, _group(group))
        return out.wait() if hasattr(out, "wait") else out
    total = x.contiguous().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM, group=_group(group))
    return total.chunk(world, dim=0)[rank].clone()


class _AllGatherWithGrad(torch.autograd.Function):
    """Fallback autograd gather: all_gather forward, all_reduce SUM + own slice backward (DP-3)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, group: Any) -> torch.Tensor:
        ctx.group = group
        return all_gather_no_grad(x, group)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        rank, world = process_group_info(ctx.group)
        total = grad.contiguous().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=_group(ctx.group))
        return total.chunk(world, dim=0)[rank], None


def all_gather_with_grad(x: torch.Tensor, group: Any = None, *, use_functional: bool = True) -> torch.Tensor:
    """Gather ``x`` (B, ...) from every rank into (W * B, ...), differentiably (DP-1, DP-3).

    ``use_functional=False`` forces the fallback :class:`_AllGatherWithGrad` (tests compare both).
    """
    _, world = process_group_info(group)
    if world == 1:
        return x
    if use_functional and _AUTOGRAD_GATHER is not None:
        out = _AUTOGRAD_GATHER(x.contiguous(), 0, _group(group))
        return out
    return _AllGatherWithGrad.apply(x, group)
