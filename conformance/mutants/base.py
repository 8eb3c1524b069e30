"""A compact, correct torch InfoNCE / GTE loss with overridable hooks: the trunk every mutant grows from.

Written the way these losses are written in practice -- sentence-transformers 6.2.0
``MultipleNegativesRankingLoss`` is the model: full similarity blocks against the (gathered) batch,
boolean masks filled with ``-inf``, a hardness penalty from detached similarities, ``logsumexp`` and
a mean. It is deliberately *not* the project's own torch implementation (``infonce_spec.adapters``,
which the conformance package must not import): the mutants need an implementation of their own.

Every step that a real implementation has got wrong at some point is a method, so that a mutant
(:mod:`.catalogue`) is a subclass that overrides exactly one of them:

* data parallel (DP-1 .. DP-3): :meth:`InfoNCE.all_gather`, :meth:`InfoNCE.gather_docs`,
  :meth:`InfoNCE.rank_offset`, :meth:`InfoNCE.loss_rows`;
* similarity and scale (SIM-1, SIM-2, SCALE-1, SCALE-2): :meth:`InfoNCE.normalize`,
  :meth:`InfoNCE.apply_scale`, :meth:`InfoNCE.direction_scale`;
* rows and masks (QD-1, QQ-1, MASK-QQ-1, DQ-1, DD-1, MASK-DD-1, MASK-DD-2): :meth:`InfoNCE.candidates`,
  :meth:`InfoNCE.query_to_query_mask`,
  :meth:`InfoNCE.doc_to_query`, :meth:`InfoNCE.doc_to_doc_mask`, :meth:`InfoNCE.own_mask`;
* hardness (HARD-2 .. HARD-5): :meth:`InfoNCE.hardness_value`, :meth:`InfoNCE.hardness_selection`;
* partition and reduction (PART-2, PART-3, LOSS-1, NUM-1, DP-2): :meth:`InfoNCE.logsumexp`,
  :meth:`InfoNCE.log_partition`, :meth:`InfoNCE.per_query_losses`, :meth:`InfoNCE.reduce`.

The GradCache form (CACHE-1 .. CACHE-5) is :mod:`.cached`; the conformance adapter is :mod:`.adapter`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from infonce_spec.vocabulary import DIRECTIONS

__all__ = ["DIRECTIONS", "AllGatherWithGrad", "InfoNCE", "Options", "all_gather_no_grad", "world"]


@dataclass(frozen=True)
class Options:
    """The loss options under the spec's names (``scale`` travels separately: it may be a tensor)."""

    directions: tuple[str, ...] = ("query_to_doc",)
    partition_mode: str = "joint"
    similarity: str = "cos"
    hardness_mode: str | None = None
    hardness_strength: float = 0.0

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> Options:
        """From a case's ``loss_kwargs()``; directions are deduplicated in canonical order (DIR-2)."""
        wanted = set(kwargs["directions"])
        return cls(
            directions=tuple(d for d in DIRECTIONS if d in wanted),
            partition_mode=kwargs["partition_mode"],
            similarity=kwargs["similarity"],
            hardness_mode=kwargs["hardness_mode"],
            hardness_strength=float(kwargs["hardness_strength"]),
        )

    @property
    def hardness_active(self) -> bool:
        """HARD-6: no mode, or alpha 0, is no hardness."""
        return self.hardness_mode is not None and self.hardness_strength > 0.0


def world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Every rank's ``x`` (B, ...) concatenated in rank order, as a constant."""
    _, size = world()
    if size == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(size)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


class AllGatherWithGrad(torch.autograd.Function):
    """All-gather whose backward is a reduce-scatter **sum**: rank r receives the sum over ranks of the
    gradients with respect to its slot, i.e. ``W * dL/d(local)`` (DP-3)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return all_gather_no_grad(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        rank, size = world()
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad.chunk(size)[rank]


class InfoNCE:
    """The loss of one rank's queries against the (gathered) batch.

    ``loss(queries (B, D), docs (K, B, D), scale)`` is ``L_r``: the mean of ``l_g`` over the local
    queries, each against every candidate of the global batch (DP-2; single process: L, LOSS-1).
    ``per_query_losses(q_all, d_all, rows, scale)`` is the building block (also of the cached loss
    stage, which calls it ``mini_batch_size`` rows at a time).
    """

    def __init__(self, options: Options, *, gather: bool = False) -> None:
        self.options = options
        self.gather = gather

    # ----------------------------------------------------------- data parallel (DP-1 .. DP-3)
    def world(self) -> tuple[int, int]:
        return world() if self.gather else (0, 1)

    def all_gather(self, x: torch.Tensor) -> torch.Tensor:
        """Gather ``x`` from every rank, differentiably (DP-3)."""
        return AllGatherWithGrad.apply(x)

    def gather_docs(self, docs: torch.Tensor) -> torch.Tensor:
        """(K, B, D) -> (K, N, D), each column gathered on its own (DP-1, LAYOUT-3)."""
        return torch.stack([self.all_gather(column) for column in docs.unbind(0)])

    def rank_offset(self, rank: int, batch_size: int) -> int:
        """The global index of this rank's first query (DP-1)."""
        return rank * batch_size

    def gather_batch(
        self, queries: torch.Tensor, docs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """``(queries (N, D), docs (K, N, D), offset)`` of the global batch."""
        rank, size = self.world()
        if size == 1:
            return queries, docs, 0
        return self.all_gather(queries), self.gather_docs(docs), self.rank_offset(rank, queries.shape[0])

    def loss_rows(self, offset: int, batch_size: int, n: int) -> torch.Tensor:
        """The global indices of the queries whose losses this rank reports: its own (DP-2, L_r)."""
        return torch.arange(offset, offset + batch_size)

    # ----------------------------------------------------------- similarity and scale (SIM, SCALE)
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``x / max(||x||, 1e-12)`` (SIM-1; its backward is GRAD-3)."""
        return F.normalize(x, p=2.0, dim=-1, eps=1e-12)

    def similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(m, D) x (n, D) -> (m, n): cos (SIM-1) or dot (SIM-2)."""
        if self.options.similarity == "cos":
            a, b = self.normalize(a), self.normalize(b)
        return a @ b.T

    def apply_scale(self, sim: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Logits are ``scale * s`` (SCALE-1)."""
        return sim * scale

    def direction_scale(self, name: str, scale: torch.Tensor) -> torch.Tensor:
        """The scale of one direction's logits: the same learnable scale in every direction (SCALE-2)."""
        return scale

    # ----------------------------------------------------------- rows and masks
    def candidates(self, d_all: torch.Tensor) -> torch.Tensor:
        """(K, N, D) -> (K N, D): document ``d[k, j]`` is candidate ``k * N + j`` (LAYOUT-3)."""
        k, n, dim = d_all.shape
        return d_all.reshape(k * n, dim)

    def own_mask(self, rows: torch.Tensor, n: int) -> torch.Tensor:
        """(m, N) boolean: ``own[i, j] = (j == rows[i])``, from index vectors (O(m N), CACHE-5)."""
        return torch.arange(n, device=rows.device).unsqueeze(0) == rows.unsqueeze(1)

    def query_to_query_mask(self, own: torch.Tensor) -> torch.Tensor | None:
        """The excluded query_to_query entries: the query itself (MASK-QQ-1)."""
        return own

    def doc_to_query(self, sims: dict[str, torch.Tensor], ctx: dict[str, Any]) -> torch.Tensor:
        """``s(d[0, g], q_j)`` for every j, j = g included (DQ-1)."""
        return self.similarity(ctx["positives"], ctx["q_all"])

    def doc_to_doc_mask(self, own: torch.Tensor, k: int) -> torch.Tensor:
        """The excluded doc_to_doc entries: every document of the query itself, in every column
        (MASK-DD-1 for k = 0, MASK-DD-2 for k >= 1)."""
        return own.repeat(1, k)

    # ----------------------------------------------------------- hardness (HARD-2 .. HARD-5)
    def hardness_value(self, sim_qd: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """``alpha * stopgrad(s)``, not multiplied by scale (HARD-2, HARD-5)."""
        return self.options.hardness_strength * sim_qd.detach()

    def hardness_selection(self, own: torch.Tensor, k: int) -> torch.Tensor:
        """(m, K N) boolean: the query_to_doc entries that carry h (HARD-3); never the positive (HARD-4)."""
        own_docs = own.repeat(1, k)
        n = own.shape[1]
        column0 = torch.zeros_like(own_docs)
        column0[:, :n] = True
        mode = self.options.hardness_mode
        if mode == "in_batch_negatives":
            return ~own_docs
        if mode == "hard_negatives":
            return own_docs & ~column0
        return ~(own_docs & column0)  # all_negatives: everything but the positive (0, g)

    # ----------------------------------------------------------- logits
    def logits(
        self, q_all: torch.Tensor, d_all: torch.Tensor, rows: torch.Tensor, scale: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The selected rows of the queries ``rows`` (m,) and their positive logits p_g (QD-2)."""
        k, n, _ = d_all.shape
        docs_flat = self.candidates(d_all)
        own = self.own_mask(rows, n)
        ctx = {"q_all": q_all, "docs_flat": docs_flat, "rows": rows, "k": k, "positives": d_all[0][rows]}
        directions = self.options.directions
        sims = {"query_to_doc": self.similarity(q_all[rows], docs_flat)}  # QD-1
        if "query_to_query" in directions:
            sims["query_to_query"] = self.similarity(q_all[rows], q_all)  # QQ-1
        if "doc_to_query" in directions:
            sims["doc_to_query"] = self.doc_to_query(sims, ctx)
        if "doc_to_doc" in directions:
            sims["doc_to_doc"] = self.similarity(ctx["positives"], docs_flat)  # DD-1
        masks = {
            "query_to_query": self.query_to_query_mask(own),
            "doc_to_doc": self.doc_to_doc_mask(own, k),
        }
        logits = {}
        for name, sim in sims.items():
            logit = self.apply_scale(sim, self.direction_scale(name, scale))
            mask = masks.get(name)
            if mask is not None:
                logit = logit.masked_fill(mask, float("-inf"))  # after scaling: no 0 * inf in dL/dscale
            logits[name] = logit
        if self.options.hardness_active:
            selected = self.hardness_selection(own, k)
            penalty = self.hardness_value(sims["query_to_doc"], scale)
            logits["query_to_doc"] = logits["query_to_doc"] + penalty.masked_fill(~selected, 0.0)
        positive = logits["query_to_doc"].gather(1, rows.unsqueeze(1)).squeeze(1)  # (0, g): column g
        return logits, positive

    # ----------------------------------------------------------- partition and loss
    def logsumexp(self, x: torch.Tensor) -> torch.Tensor:
        """Row-wise log-sum-exp, max-shifted (NUM-1)."""
        return torch.logsumexp(x, dim=1)

    def log_partition(self, logits: dict[str, torch.Tensor]) -> torch.Tensor:
        """joint: one partition over all rows (PART-2); per_direction: the mean of one per direction
        (PART-3); per_anchor: the mean of one per row vector, q_g's rows and d[0, g]'s rows (PART-5)."""
        if self.options.partition_mode == "joint":
            return self.logsumexp(torch.cat(list(logits.values()), dim=1))
        if self.options.partition_mode == "per_anchor":
            anchors = [
                [z for name, z in logits.items() if name.startswith(side)] for side in ("query_", "doc_")
            ]
            return torch.stack([self.logsumexp(torch.cat(rows, dim=1)) for rows in anchors if rows]).mean(0)
        return torch.stack([self.logsumexp(row) for row in logits.values()]).mean(0)

    def per_query_losses(
        self, q_all: torch.Tensor, d_all: torch.Tensor, rows: torch.Tensor, scale: torch.Tensor
    ) -> torch.Tensor:
        """``l_g = log Z_g - p_g`` for the global queries ``rows`` (LOSS-2)."""
        logits, positive = self.logits(q_all, d_all, rows, scale)
        return self.log_partition(logits) - positive

    def reduce(self, per_query: torch.Tensor) -> torch.Tensor:
        """The mean over this rank's queries (LOSS-1, DP-2)."""
        return per_query.mean()

    def loss(self, queries: torch.Tensor, docs: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """``L_r`` of local ``queries`` (B, D) and ``docs`` (K, B, D)."""
        q_all, d_all, offset = self.gather_batch(queries, docs)
        rows = self.loss_rows(offset, queries.shape[0], q_all.shape[0]).to(queries.device)
        return self.reduce(self.per_query_losses(q_all, d_all, rows, scale))
