"""The catalogue: faulty implementations the conformance suite must catch, each tagged with its clause.

Every mutant is a subclass of :class:`~.base.InfoNCE`, :class:`~.cached.GradCache` or the adapter
:class:`~.adapter.TorchAdapter` that overrides exactly one hook, registered with :func:`mutant`: an
``id``, the clause the suite must diagnose as the only root cause, a description, and the public bug
it mirrors where there is one (its provenance). Each is reachable as an adapter under
``infonce_spec.conformance.mutants.catalogue:adapters.<id>`` (spawned data-parallel workers import it
by that name).

The correct implementations are :data:`CORRECT`: the mutants' own base adapter, the bundled torch
adapters, and the *correct variants* registered with :func:`variant` -- implementations that differ
from the base in a way the spec allows (``...catalogue:variants.<id>``); each must pass with no
failure at all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, TypeVar

import torch

from ..protocol import EmbeddingCase, LossGrads
from .adapter import CAPABILITIES, TorchAdapter, adapter_for
from .base import InfoNCE, all_gather_no_grad, world
from .cached import CacheState, GradCache

__all__ = [
    "CATALOGUE",
    "CORRECT",
    "FAULT",
    "MODULE",
    "VARIANTS",
    "Mutant",
    "Variant",
    "adapters",
    "mutant",
    "variant",
    "variants",
]

MODULE = "infonce_spec.conformance.mutants.catalogue"
#: The root-cause label of an adapter fault that breaks no output contract (an exception, a hang).
FAULT = "adapter fault"


@dataclass(frozen=True)
class Mutant:
    """One faulty implementation: ``clause`` is the clause it breaks, ``level`` the adapter level that
    exposes it, ``reference`` its provenance (the public bug it mirrors, or how such code is written).

    ``fault``: the bug makes the adapter misbehave instead of answering (an exception on a valid
    input); a right diagnosis is then one adapter-fault root cause and no FAIL (an exception breaks
    no output contract), and ``clause`` names the rule whose valid inputs it refuses.
    :attr:`expected_roots` is what the diagnosis must find: exactly that, nothing else.
    """

    id: str
    clause: str
    level: str
    description: str
    reference: str = ""
    fault: bool = False
    adapter: Any = field(default=None, repr=False, compare=False)

    @property
    def spec(self) -> str:
        return f"{MODULE}:adapters.{self.id}"

    @property
    def expected_roots(self) -> frozenset[str]:
        """The root causes a right diagnosis finds: the tagged clause, or :data:`FAULT`."""
        return frozenset({FAULT if self.fault else self.clause})


@dataclass(frozen=True)
class Variant:
    """A correct implementation that differs from the base where the spec allows it."""

    id: str
    clause: str
    description: str
    reference: str = ""

    @property
    def spec(self) -> str:
        return f"{MODULE}:variants.{self.id}"


CATALOGUE: dict[str, Mutant] = {}
VARIANTS: dict[str, Variant] = {}
adapters = SimpleNamespace()
variants = SimpleNamespace()
T = TypeVar("T", bound=type)


def _adapter(id: str, cls: type) -> tuple[TorchAdapter, str]:
    if issubclass(cls, GradCache):
        return adapter_for(id, cache_class=cls), "encoder"
    if issubclass(cls, TorchAdapter):
        return cls(), "embeddings"
    return adapter_for(id, loss_class=cls), "embeddings"


def mutant(
    id: str,
    clause: str,
    description: str,
    reference: str = "",
    *,
    level: str = "",
    fault: bool = False,
) -> Callable[[T], T]:
    """Register a subclass of :class:`InfoNCE`, :class:`GradCache` or :class:`TorchAdapter` (whose
    ``capabilities`` must name it) as a mutant."""

    def register(cls: T) -> T:
        adapter, lvl = _adapter(id, cls)
        if id in CATALOGUE:
            raise ValueError(f"duplicate mutant {id}")
        CATALOGUE[id] = Mutant(id, clause, level or lvl, description, reference, fault, adapter)
        setattr(adapters, id, adapter)
        return cls

    return register


def variant(id: str, clause: str, description: str, reference: str = "") -> Callable[[T], T]:
    """Register a correct variant (a subclass of :class:`InfoNCE` or :class:`GradCache`); ``clause``
    is the clause that allows it."""

    def register(cls: T) -> T:
        adapter, _ = _adapter(f"variant.{id}", cls)
        if id in VARIANTS:
            raise ValueError(f"duplicate variant {id}")
        VARIANTS[id] = Variant(id, clause, description, reference)
        setattr(variants, id, adapter)
        return cls

    return register


# =========================================================================== rows and masks
@mutant(
    "dq_transposed_qd_block",
    "DQ-1",
    "doc_to_query taken from the transposed query_to_doc block of every document column: with hard "
    "negatives (K > 1) the row of query g holds s(d[k, g], q_j) for all k, so its hard negatives act as anchors",
    "sentence-transformers PR #3607 review (doc_to_query from the transposed query_to_doc scores)",
)
class DocToQueryFromTransposedBlock(InfoNCE):
    def doc_to_query(self, sims: dict[str, torch.Tensor], ctx: dict[str, Any]) -> torch.Tensor:
        k, n, m = ctx["k"], ctx["q_all"].shape[0], len(ctx["rows"])
        anchors = ctx["docs_flat"].reshape(k, n, -1)[:, ctx["rows"]]  # every column's d[k, g] of the rows
        block = self.similarity(anchors.reshape(k * m, -1), ctx["q_all"])  # (K m, N): O(rows x N)
        return block.reshape(k, m, n).transpose(0, 1).reshape(m, k * n)


@mutant(
    "dd_keeps_own_hard_negatives",
    "MASK-DD-2",
    "doc_to_doc masks only the own positive; the query's own hard negatives stay in its doc_to_doc row",
    "sentence-transformers PR #3607 (an intermediate revision; discussed in the PR, spec §13.2)",
)
class DocToDocKeepsOwnHardNegatives(InfoNCE):
    def doc_to_doc_mask(self, own: torch.Tensor, k: int) -> torch.Tensor:
        return torch.cat([own, torch.zeros_like(own).repeat(1, k - 1)], dim=1)


@mutant(
    "dd_drops_all_hard_negatives",
    "DD-1",
    "doc_to_doc masks every hard-negative column (all queries'), not only the query's own documents",
    "sentence-transformers PR #3607 (an intermediate revision)",
)
class DocToDocDropsAllHardNegatives(InfoNCE):
    def doc_to_doc_mask(self, own: torch.Tensor, k: int) -> torch.Tensor:
        return torch.cat([own, torch.ones_like(own).repeat(1, k - 1)], dim=1)


@mutant(
    "qq_without_self_mask",
    "MASK-QQ-1",
    "query_to_query keeps q_g . q_g (the self-similarity) in the row of query g",
)
class QueryToQueryWithoutSelfMask(InfoNCE):
    def query_to_query_mask(self, own: torch.Tensor) -> torch.Tensor | None:
        return None


@mutant(
    "hard_negatives_by_cat",
    "LAYOUT-2",
    "the candidates are built as the positives followed by torch.cat(hard-negative columns): with no hard "
    "negatives (K = 1, a valid batch) torch.cat gets an empty list and raises",
    "torch.cat on an empty list ('expected a non-empty list of Tensors'), the crash of code written for "
    "batches that always carry hard negatives (sentence-transformers' MNRL concatenates embeddings[1:])",
    fault=True,
)
class HardNegativesByCat(InfoNCE):
    def candidates(self, d_all: torch.Tensor) -> torch.Tensor:
        return torch.cat([d_all[0], torch.cat(list(d_all[1:].unbind(0)))])


@mutant(
    "shape_crash_varying",
    "DQ-1",
    "doc_to_query scores stacked with the query_to_doc block to process both directions together, code "
    "written for K = 1 where both are N x N: with hard negatives (K >= 2) torch.stack raises a size "
    "mismatch whose message carries the shapes, so it differs from batch to batch",
    "CLIP-style symmetric losses that handle the two directions as one stacked (2, N, N) tensor, then "
    "given a batch with hard negatives",
    fault=True,
)
class ShapeCrashVarying(InfoNCE):
    def doc_to_query(self, sims: dict[str, torch.Tensor], ctx: dict[str, Any]) -> torch.Tensor:
        scores = self.similarity(ctx["positives"], ctx["q_all"])
        return torch.stack([sims["query_to_doc"], scores])[1]


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
        if self.options.partition_mode != "per_direction":
            return super().log_partition(logits)
        return torch.stack([self.logsumexp(row) for row in logits.values()]).sum(0)


@mutant(
    "partition_without_positive",
    "QD-1",
    "the softmax denominator leaves out the positive: log Z_g sums over the negatives only (the decoupled "
    "contrastive loss used where InfoNCE is meant), so every loss and gradient is off, masks or not",
    "DCL, decoupled contrastive learning (Yeh et al. 2022, Eq. 2) drops the positive from the denominator",
)
class PartitionWithoutPositive(InfoNCE):
    def per_query_losses(
        self, q_all: torch.Tensor, d_all: torch.Tensor, rows: torch.Tensor, scale: torch.Tensor
    ) -> torch.Tensor:
        logits, positive = self.logits(q_all, d_all, rows, scale)
        column = rows.unsqueeze(1)
        negatives = logits["query_to_doc"].scatter(1, column, float("-inf"))
        return self.log_partition({**logits, "query_to_doc": negatives}) - positive


@mutant(
    "per_anchor_sum_groups",
    "PART-5",
    "per_anchor adds the loss over the query anchors and the loss over the doc anchors instead of "
    "averaging them: twice the spec's L (and gradients) whenever both anchor groups are present",
    "tensorflow_similarity 0.17.1 SimCLRLoss: loss = loss_a + loss_b",
)
class PerAnchorSumGroups(InfoNCE):
    def per_query_losses(
        self, q_all: torch.Tensor, d_all: torch.Tensor, rows: torch.Tensor, scale: torch.Tensor
    ) -> torch.Tensor:
        if self.options.partition_mode != "per_anchor":
            return super().per_query_losses(q_all, d_all, rows, scale)
        logits, positive = self.logits(q_all, d_all, rows, scale)
        groups = [[z for name, z in logits.items() if name.startswith(side)] for side in ("query_", "doc_")]
        return sum(self.logsumexp(torch.cat(group, dim=1)) - positive for group in groups if group)


@mutant(
    "scale_detached_dq",
    "SCALE-2",
    "doc_to_query scale detached: the doc_to_query logits are scale.detach() * s, so only dL/dscale is "
    "wrong (it misses the doc_to_query rows' share)",
    "a CLIP-style loss with a learnable logit scale that builds the text-side logits from a detached "
    "copy of the scale",
)
class ScaleDetachedDocToQuery(InfoNCE):
    def direction_scale(self, name: str, scale: torch.Tensor) -> torch.Tensor:
        return scale.detach() if name == "doc_to_query" else scale


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
)
class CosWithoutEps(InfoNCE):
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return x / x.norm(dim=-1, keepdim=True)


@mutant(
    "cos_eps_squared_norm",
    "SIM-1",
    "cos floors the squared norm at float64 eps: x / sqrt(max(||x||^2, 2.2e-16)), a norm floor of 1.49e-8 "
    "instead of 1e-12, so rows with norms below 1.49e-8 get other unit rows and gradients",
    "optax 0.2.8 losses.ntxent (its cosine similarity floors the squared norm at finfo.eps)",
)
class CosEpsSquaredNorm(InfoNCE):
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        squared = (x * x).sum(dim=-1, keepdim=True)
        return x / torch.sqrt(torch.clamp(squared, min=torch.finfo(x.dtype).eps))


@mutant(
    "norm_floor_1e6",
    "SIM-1",
    "cos as x * rsqrt(max(||x||^2, 1e-12)): a norm floor of 1e-6 instead of 1e-12",
    "tf.math.l2_normalize (epsilon 1e-12 on the squared norm), used by tensorflow_similarity 0.17.1 SimCLRLoss",
)
class NormFloor1e6(InfoNCE):
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        squared = (x * x).sum(dim=-1, keepdim=True)
        return x * torch.rsqrt(torch.clamp(squared, min=1e-12))


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
    level="data_parallel",
)
class LossTimesWorld(InfoNCE):
    def reduce(self, per_query: torch.Tensor) -> torch.Tensor:
        return per_query.mean() * self.world()[1]


@variant(
    "dp_global_loss_every_rank",
    "DP-2",
    "every rank computes the loss of the whole gathered batch (all N queries, through the gradient-carrying "
    "gather): each rank reports the global L, and the gather's reduce-scatter backward makes the local "
    "gradient W * dL/d(local) -- correct (DP-2 allows the global L, DP-3 holds)",
    "open_clip ClipLoss(local_loss=False, gather_with_grad=True): the loss of the full gathered batch on "
    "every rank",
)
class GlobalLossEveryRank(InfoNCE):
    def loss_rows(self, offset: int, batch_size: int, n: int) -> torch.Tensor:
        return torch.arange(n)


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


# =========================================================================== the adapter's output contract
@mutant(
    "scale_grad_none",
    "SCALE-2",
    "the scale is held as a Python float (a fixed hyper-parameter), so it gets no gradient; the adapter "
    "claims grad_scale and returns grad_scale=None",
    "sentence-transformers' MultipleNegativesRankingLoss keeps `scale` as a float attribute (no gradient); "
    "an adapter copied from a template that claims grad_scale",
)
class ScaleGradNone(TorchAdapter):
    capabilities = CAPABILITIES.with_(name="mutants.scale_grad_none")

    def embeddings(self, case: EmbeddingCase) -> LossGrads:
        kwargs = case.loss_kwargs()
        q = torch.tensor(case.queries, dtype=torch.float64, requires_grad=True)
        d = torch.tensor(case.docs, dtype=torch.float64, requires_grad=True)
        loss = self.make_loss(kwargs).loss(q, d, torch.tensor(float(kwargs["scale"]), dtype=torch.float64))
        loss.backward()
        assert q.grad is not None and d.grad is not None
        return LossGrads(float(loss.item()), q.grad.numpy(), d.grad.numpy(), None)


class _AnchorRowsSplit(InfoNCE):
    def log_partition(self, logits: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.options.partition_mode != "per_anchor":
            return super().log_partition(logits)
        return torch.stack([self.logsumexp(row) for row in logits.values()]).mean(0)  # one per direction


@mutant(
    "per_anchor_split_rows",
    "PART-5",
    "per_anchor (SimCLR NT-Xent) takes one softmax per direction instead of one per anchor: each anchor's "
    "row over the other view and its row over its own view are two partitions, averaged over four",
    "NT-Xent written as the mean of separate cross-entropies per block of the 2N x 2N similarity matrix",
)
class PerAnchorSplitRows(TorchAdapter):
    loss_class = _AnchorRowsSplit
    capabilities = CAPABILITIES.with_(name="mutants.per_anchor_split_rows")


#: The correct implementations the suite must pass (``module:attr`` specs).
CORRECT: tuple[str, ...] = (
    "infonce_spec.conformance.mutants.adapter:TorchAdapter",
    "infonce_spec.adapters.bundled:uncached",
    "infonce_spec.adapters.bundled:data_parallel",  # cached + data parallel + dropout: claims everything
    *(v.spec for v in VARIANTS.values()),
)
