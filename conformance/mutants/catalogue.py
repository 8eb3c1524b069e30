"""The catalogue: faulty implementations the conformance suite must catch, each tagged with its clause.

Every mutant is a subclass of :class:`~.base.InfoNCE` or :class:`~.cached.GradCache` that overrides
exactly one hook, registered with :func:`mutant`: an ``id``, the clause the suite must flag, a
description, and the public bug it mirrors where there is one. Each is reachable as an adapter under
``infonce_spec.conformance.mutants.catalogue:adapters.<id>`` (spawned data-parallel workers import it
by that name). The correct adapters are :data:`CORRECT`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, TypeVar

import torch

from .adapter import adapter_for
from .base import InfoNCE, all_gather_no_grad, world
from .cached import CacheState, GradCache

__all__ = ["CATALOGUE", "CORRECT", "MODULE", "Mutant", "adapters", "mutant"]

MODULE = "infonce_spec.conformance.mutants.catalogue"
#: The correct implementations the suite must pass (``module:attr`` specs).
CORRECT = (
    "infonce_spec.conformance.mutants.adapter:TorchAdapter",
    "infonce_spec.adapters.bundled:uncached",
    "infonce_spec.adapters.bundled:data_parallel",  # cached + data parallel + dropout: claims everything
)


@dataclass(frozen=True)
class Mutant:
    """One faulty implementation: ``clause`` is what the suite must flag (``also``: other clauses a
    correct verdict may file it under), ``level`` the adapter level that exposes it."""

    id: str
    clause: str
    level: str
    description: str
    reference: str = ""
    also: tuple[str, ...] = ()
    adapter: Any = field(default=None, repr=False, compare=False)

    @property
    def spec(self) -> str:
        return f"{MODULE}:adapters.{self.id}"

    @property
    def clauses(self) -> tuple[str, ...]:
        return (self.clause, *self.also)


CATALOGUE: dict[str, Mutant] = {}
adapters = SimpleNamespace()
T = TypeVar("T", bound=type)


def mutant(
    id: str,
    clause: str,
    description: str,
    reference: str = "",
    *,
    also: tuple[str, ...] = (),
    level: str = "",
) -> Callable[[T], T]:
    """Register a subclass of :class:`InfoNCE` or :class:`GradCache` as a mutant."""

    def register(cls: T) -> T:
        if issubclass(cls, GradCache):
            adapter, lvl = adapter_for(id, cache_class=cls), "encoder"
        else:
            adapter, lvl = adapter_for(id, loss_class=cls), "embeddings"
        entry = Mutant(id, clause, level or lvl, description, reference, also, adapter)
        if id in CATALOGUE:
            raise ValueError(f"duplicate mutant {id}")
        CATALOGUE[id] = entry
        setattr(adapters, id, adapter)
        return cls

    return register


# =========================================================================== rows and masks
@mutant(
    "dq_transposed_qd_block",
    "DQ-1",
    "doc_to_query taken from the transposed query_to_doc block of every document column: with hard "
    "negatives (K > 1) the row of query g holds s(d[k, g], q_j) for all k, so its hard negatives act as anchors",
    "sentence-transformers PR #3607 review (doc_to_query from the transposed query_to_doc scores)",
    also=("ROW-1",),
)
class DocToQueryFromTransposedBlock(InfoNCE):
    def doc_to_query(self, sims: dict[str, torch.Tensor], ctx: dict[str, Any]) -> torch.Tensor:
        block = self.similarity(ctx["q_all"], ctx["docs_flat"]).T  # (K N, N)
        k, n = ctx["k"], ctx["q_all"].shape[0]
        return block.reshape(k, n, n)[:, ctx["rows"]].transpose(0, 1).reshape(len(ctx["rows"]), k * n)


@mutant(
    "dd_keeps_own_hard_negatives",
    "MASK-DD-2",
    "doc_to_doc masks only the own positive; the query's own hard negatives stay in its doc_to_doc row",
    "sentence-transformers PR #3607 (an intermediate revision; discussed in the PR, spec §13.2)",
    also=("DD-1",),
)
class DocToDocKeepsOwnHardNegatives(InfoNCE):
    def doc_to_doc_mask(self, own: torch.Tensor, k: int) -> torch.Tensor:
        return torch.cat([own, torch.zeros_like(own).repeat(1, k - 1)], dim=1)


@mutant(
    "dd_drops_all_hard_negatives",
    "DD-1",
    "doc_to_doc masks every hard-negative column (all queries'), not only the query's own documents",
    "sentence-transformers PR #3607 (an intermediate revision)",
    also=("MASK-DD-2",),
)
class DocToDocDropsAllHardNegatives(InfoNCE):
    def doc_to_doc_mask(self, own: torch.Tensor, k: int) -> torch.Tensor:
        return torch.cat([own, torch.ones_like(own).repeat(1, k - 1)], dim=1)


@mutant(
    "qq_without_self_mask",
    "MASK-QQ-1",
    "query_to_query keeps q_g . q_g (the self-similarity) in the row of query g",
    also=("QQ-1",),
)
class QueryToQueryWithoutSelfMask(InfoNCE):
    def query_to_query_mask(self, own: torch.Tensor) -> torch.Tensor | None:
        return None


# =========================================================================== hardness
@mutant(
    "hardness_not_detached",
    "HARD-5",
    "hardness penalty alpha*s without stop-gradient: the loss is right, the gradient is not",
)
class HardnessNotDetached(InfoNCE):
    def hardness_value(self, sim_qd: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return self.options.hardness_strength * sim_qd


@mutant(
    "hardness_times_scale",
    "HARD-2",
    "hardness penalty added after temperature scaling, i.e. scale*alpha*s instead of alpha*s",
    "LLaVE (Lan et al. 2025) Eq. 5 puts alpha outside the temperature; spec §13.4",
)
class HardnessTimesScale(InfoNCE):
    def hardness_value(self, sim_qd: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return self.options.hardness_strength * sim_qd.detach() * scale.detach()


@mutant(
    "hardness_on_positive",
    "HARD-4",
    "the positive (0, g) also carries the hardness term (in numerator and partition)",
)
class HardnessOnPositive(InfoNCE):
    def hardness_selection(self, own: torch.Tensor, k: int) -> torch.Tensor:
        n = own.shape[1]
        selected = super().hardness_selection(own, k).clone()
        selected[:, :n] |= own
        return selected


@mutant(
    "hard_negatives_mode_all_columns",
    "HARD-3",
    "hardness_mode='hard_negatives' penalizes every hard-negative column, other queries' hard negatives too",
    "sentence-transformers PR #3667 (draft revision of hardness weighting)",
)
class HardNegativesModeAllColumns(InfoNCE):
    def hardness_selection(self, own: torch.Tensor, k: int) -> torch.Tensor:
        if self.options.hardness_mode != "hard_negatives":
            return super().hardness_selection(own, k)
        n = own.shape[1]
        selected = torch.ones_like(own).repeat(1, k)
        selected[:, :n] = False
        return selected


# =========================================================================== partition, scale, numerics
@mutant(
    "per_direction_sum",
    "PART-3",
    "per_direction adds the per-direction log-partitions instead of averaging them",
)
class PerDirectionSum(InfoNCE):
    def log_partition(self, logits: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.options.partition_mode == "joint":
            return super().log_partition(logits)
        return torch.stack([self.logsumexp(row) for row in logits.values()]).sum(0)


@mutant(
    "temperature_as_scale",
    "SCALE-1",
    "the scale argument is used as a temperature: logits s / scale instead of scale * s",
    "the scale = 1/temperature convention (sentence-transformers `temperature` property)",
)
class TemperatureAsScale(InfoNCE):
    def apply_scale(self, sim: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return sim / scale


@mutant(
    "cos_without_eps",
    "SIM-1",
    "cos normalises with x / ||x|| (no eps): a zero vector gives NaN loss and gradients",
    also=("GRAD-3", "NUM-1", "GRAD-2"),
)
class CosWithoutEps(InfoNCE):
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return x / x.norm(dim=-1, keepdim=True)


@mutant(
    "logsumexp_unshifted",
    "NUM-1",
    "log(sum(exp(x))) without the max shift: overflows for large logits",
)
class LogSumExpUnshifted(InfoNCE):
    def logsumexp(self, x: torch.Tensor) -> torch.Tensor:
        return x.exp().sum(dim=1).log()


@mutant(
    "loss_summed",
    "LOSS-1",
    "the per-query losses are summed instead of averaged",
)
class LossSummed(InfoNCE):
    def reduce(self, per_query: torch.Tensor) -> torch.Tensor:
        return per_query.sum()


# =========================================================================== data parallel
@mutant(
    "dp_concat_columns_then_gather",
    "DP-1",
    "document columns concatenated on each rank before one gather: ranks and columns interleave, so on "
    "rank > 0 a query's 'positive' is another rank's document or a hard negative",
    "sentence-transformers PR #3442 (reported there, fixed in #3453)",
    level="data_parallel",
)
class ConcatColumnsThenGather(InfoNCE):
    def gather_docs(self, docs: torch.Tensor) -> torch.Tensor:
        k, b, dim = docs.shape
        gathered = self.all_gather(docs.reshape(k * b, dim))  # [rank 0: d0, d1, ...; rank 1: d0, d1, ...]
        return gathered.reshape(k, -1, dim)  # read as if it were column-blocked


class _GatherLocalBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return all_gather_no_grad(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        rank, size = world()
        return grad.chunk(size)[rank].clone()  # no all_reduce: only this rank's own loss reaches it


@mutant(
    "dp_gather_backward_local_slice",
    "DP-3",
    "autograd gather whose backward returns the local slice of the local gradient, without the all-reduce",
    "SimCLR GatherLayer (Spijkervet/SimCLR gather.py); lightly-ai/lightly #1528, fixed in #1531",
    level="data_parallel",
)
class GatherBackwardLocalSlice(InfoNCE):
    def all_gather(self, x: torch.Tensor) -> torch.Tensor:
        return _GatherLocalBackward.apply(x)


@mutant(
    "dp_gather_no_grad_local_slice",
    "DP-3",
    "gather without autograd, the local slice put back so that only the local rank keeps its graph",
    "mlfoundations/open_clip #616; sentence-transformers util.all_gather(with_grad=False)",
    level="data_parallel",
)
class GatherNoGradLocalSlice(InfoNCE):
    def all_gather(self, x: torch.Tensor) -> torch.Tensor:
        rank, size = world()
        parts = list(all_gather_no_grad(x.detach()).chunk(size))
        parts[rank] = x
        return torch.cat(parts)


@mutant(
    "dp_rank_offset",
    "DP-1",
    "the local queries' global offset is the rank, not rank * B (right only for B = 1)",
    level="data_parallel",
)
class WrongRankOffset(InfoNCE):
    def rank_offset(self, rank: int, batch_size: int) -> int:
        return rank


@mutant(
    "dp_loss_times_world",
    "DP-2",
    "the rank loss multiplied by the world size (to undo DDP's averaging) on top of a gradient-carrying gather",
    "the `loss * world_size` compensation of no-grad gathers (open_clip #616 discussion) kept with a grad gather",
    also=("DP-3", "DP-4"),
    level="data_parallel",
)
class LossTimesWorld(InfoNCE):
    def reduce(self, per_query: torch.Tensor) -> torch.Tensor:
        return per_query.mean() * self.world()[1]


# =========================================================================== cached (GradCache)
@mutant(
    "cache_chunk_mean",
    "CACHE-1",
    "each loss-stage chunk contributes mean(l) / n_chunks: wrong when mini_batch_size does not divide B",
)
class CacheChunkMean(GradCache):
    def chunk_loss(
        self, per_query: torch.Tensor, batch_size: int, n_chunks: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        share = per_query.mean() / n_chunks
        return share, share


@mutant(
    "cache_grad_times_batch",
    "CACHE-1",
    "the loss stage backpropagates sum(l) (not sum(l) / B): the loss is right, the cached gradients are B times too large",
)
class CacheGradTimesBatch(GradCache):
    def chunk_loss(
        self, per_query: torch.Tensor, batch_size: int, n_chunks: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return per_query.sum() / batch_size, per_query.sum()


@mutant(
    "cache_ignores_upstream",
    "CACHE-2",
    "the backward hook sends the cached gradients into the encoder without multiplying by grad_output",
    "sentence-transformers gradcache `_backward_hook` (scales every mini-batch by grad_output for fp16 "
    "scalers and gradient accumulation)",
)
class CacheIgnoresUpstream(GradCache):
    def upstream(self, cached: torch.Tensor, grad_output: torch.Tensor) -> torch.Tensor:
        return cached


@mutant(
    "cache_no_rng_replay",
    "CACHE-3",
    "the second (gradient) forward does not replay the first forward's RNG state: fresh dropout masks",
    "GradCache RandContext (Gao et al. 2021); sentence-transformers RandContext",
)
class CacheNoRngReplay(GradCache):
    @contextlib.contextmanager
    def replay_rng(self, state: torch.Tensor) -> Iterator[None]:
        yield


@mutant(
    "cache_on_module",
    "CACHE-4",
    "the cache lives in one shared place (the loss object) that the backward hook reads: with two forwards "
    "before their backwards, both backwards use the last forward's cached gradients and RNG states",
    "sentence-transformers CachedMultipleNegativesRankingLoss before its hook took the cache as an "
    "argument (gradcache.py `_backward_hook` docstring)",
)
class CacheOnModule(GradCache):
    shared: dict[str, CacheState] = {}  # noqa: RUF012 -- a module-level cache is the bug

    def remember(self, state: CacheState) -> Any:
        CacheOnModule.shared["last"] = state
        return None

    def recall(self, token: Any) -> CacheState:
        return CacheOnModule.shared["last"]


@mutant(
    "cache_full_mask",
    "CACHE-5",
    "the loss stage builds its own-document mask from a full (N x N) identity, per chunk: "
    "O(N^2) memory instead of O(mini_batch_size x candidates) (values are right)",
    "sentence-transformers MultipleNegativesRankingLoss `torch.eye(world_batch_size)[local_indices]` masks",
    level="encoder",
)
class CacheFullMask(InfoNCE):
    def own_mask(self, rows: torch.Tensor, n: int) -> torch.Tensor:
        return torch.eye(n, device=rows.device)[rows].bool()  # an (N, N) identity for every chunk


@mutant(
    "cache_backward_once",
    "CACHE-5",
    "the loss stage computes every chunk, then backpropagates their sum once: every chunk's graph is alive "
    "at the same time, O(N x candidates) memory (values are right)",
    "GradCache's point (Gao et al. 2021, §3.2): the loss stage must not hold the full score matrix's graph",
)
class CacheBackwardOnce(GradCache):
    def backpropagate(self, chunks: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        reported, objectives = zip(*chunks, strict=True)
        torch.stack(objectives).sum().backward()
        return torch.stack(reported).sum().detach()
