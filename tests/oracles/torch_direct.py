"""The loss written directly from the spec in torch float64, differentiated by torch autograd.

Independent of the reference (which uses closed-form gradients and masked matrices): here every
query ``g`` gets its rows built element by element as Python lists of 0-d tensors -- exactly the
candidate lists of QD-1, QQ-1, DQ-1 and DD-1, with masked candidates simply *left out* (MASK-*) --
then ``torch.logsumexp`` over each list. The hardness term is ``alpha * s.detach()`` (HARD-2,
HARD-5). ``scale`` is a 0-d tensor with ``requires_grad`` so autograd also yields dL/dscale
(SCALE-2). The SIM-1 floor is a branch on the value, so below it the divisor is a constant (GRAD-3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["DirectResult", "direct_loss", "direct_loss_and_grad"]

COS_EPS = 1e-12


def _unit(x: torch.Tensor, similarity: str) -> torch.Tensor:
    """SIM-1: ``x / max(||x||_2, 1e-12)``; SIM-2: ``x`` itself."""
    if similarity == "dot":
        return x
    norm = torch.sqrt(torch.sum(x * x))
    if float(norm.detach()) >= COS_EPS:
        return x / norm
    return x / COS_EPS


def _hardness_selected(mode: str, g: int, k: int, j: int) -> bool:
    """HARD-3 (the positive (0, g) is never selected, HARD-4)."""
    if mode == "in_batch_negatives":
        return j != g
    if mode == "hard_negatives":
        return j == g and k >= 1
    if mode == "all_negatives":
        return not (k == 0 and j == g)
    raise ValueError(f"unknown hardness mode {mode!r}")


def direct_loss(
    queries: torch.Tensor,
    docs: torch.Tensor,
    scale: torch.Tensor,
    *,
    directions: Sequence[str],
    partition_mode: str,
    similarity: str,
    hardness_mode: str | None = None,
    hardness_strength: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L, l)`` with ``l`` the (N,) per-query losses, for queries (N, D) and docs (K, N, D)."""
    n = queries.shape[0]
    k_cols = docs.shape[0]
    q = [_unit(queries[g], similarity) for g in range(n)]
    d = [[_unit(docs[k, j], similarity) for j in range(n)] for k in range(k_cols)]

    def s(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.dot(a, b)

    hard = hardness_mode is not None and hardness_strength > 0.0  # HARD-6
    wanted = set(directions)
    losses = []
    for g in range(n):
        rows: dict[str, list[torch.Tensor]] = {}
        qd = []
        for k in range(k_cols):  # candidate index k*N + j (LAYOUT-3); order is irrelevant to logsumexp
            for j in range(n):
                sim = s(q[g], d[k][j])
                logit = scale * sim  # QD-1
                if hard and _hardness_selected(hardness_mode, g, k, j):  # type: ignore[arg-type]
                    logit = logit + hardness_strength * sim.detach()  # HARD-2, HARD-5
                qd.append(logit)
        rows["query_to_doc"] = qd
        if "query_to_query" in wanted:
            rows["query_to_query"] = [scale * s(q[g], q[j]) for j in range(n) if j != g]
        if "doc_to_query" in wanted:
            rows["doc_to_query"] = [scale * s(d[0][g], q[j]) for j in range(n)]
        if "doc_to_doc" in wanted:
            rows["doc_to_doc"] = [
                scale * s(d[0][g], d[k][j]) for k in range(k_cols) for j in range(n) if j != g
            ]
        positive = scale * s(q[g], d[0][g])  # QD-2
        nonempty = {name: torch.stack(row) for name, row in rows.items() if row}
        if partition_mode == "joint":  # PART-2
            losses.append(torch.logsumexp(torch.cat(list(nonempty.values())), dim=0) - positive)
        elif partition_mode == "per_direction":  # PART-3 (every allowed row holds >= 1 candidate)
            parts = [torch.logsumexp(nonempty[name], dim=0) for name in sorted(wanted)]
            losses.append(torch.stack(parts).mean() - positive)
        elif partition_mode == "per_anchor":  # PART-5: the rows of q_g together, those of d[0, g] together
            by_anchor = [
                [z for name in ("query_to_doc", "query_to_query") for z in rows.get(name, [])],
                [z for name in ("doc_to_query", "doc_to_doc") for z in rows.get(name, [])],
            ]
            anchors = [torch.logsumexp(torch.stack(zs), dim=0) for zs in by_anchor if zs]
            losses.append(torch.stack(anchors).mean() - positive)
        else:
            raise ValueError(f"unknown partition mode {partition_mode!r}")
    per_query = torch.stack(losses)
    return per_query.mean(), per_query  # LOSS-1


@dataclass(frozen=True)
class DirectResult:
    loss: float
    per_query_loss: np.ndarray
    grad_queries: np.ndarray
    grad_docs: np.ndarray
    grad_scale: float


def direct_loss_and_grad(
    queries: np.ndarray,
    docs: np.ndarray,
    *,
    scale: float,
    directions: Sequence[str],
    partition_mode: str,
    similarity: str,
    hardness_mode: str | None = None,
    hardness_strength: float = 0.0,
) -> DirectResult:
    """:func:`direct_loss` and its autograd gradients (queries, docs, scale), as float64 NumPy."""
    q = torch.tensor(np.asarray(queries), dtype=torch.float64, requires_grad=True)
    d = torch.tensor(np.asarray(docs), dtype=torch.float64, requires_grad=True)
    sc = torch.tensor(float(scale), dtype=torch.float64, requires_grad=True)
    loss, per_query = direct_loss(
        q,
        d,
        sc,
        directions=directions,
        partition_mode=partition_mode,
        similarity=similarity,
        hardness_mode=hardness_mode,
        hardness_strength=hardness_strength,
    )
    gq, gd, gs = torch.autograd.grad(loss, (q, d, sc))
    return DirectResult(
        loss=float(loss.detach()),
        per_query_loss=per_query.detach().numpy(),
        grad_queries=gq.numpy(),
        grad_docs=gd.numpy(),
        grad_scale=float(gs),
    )
