"""Conformance adapters for sentence-transformers 6.2.0 (``MultipleNegativesRankingLoss`` and
``CachedMultipleNegativesRankingLoss``), the spec's behavioural anchor.

Run the suite against them (no model is downloaded; see docs/sentence-transformers.md)::

    infonce-conformance run --adapter infonce_spec.adapters.sentence_transformers:mnrl --profile ci
    infonce-conformance run --adapter infonce_spec.adapters.sentence_transformers:cached_mnrl --profile ci

The adapters (module-level objects, so spawned data-parallel workers can import them by name):

* ``mnrl`` (float64), ``mnrl_float32``, ``mnrl_bfloat16`` -- ``MultipleNegativesRankingLoss``.
  Level 1 calls its ``compute_loss_from_embeddings`` and differentiates with torch autograd; level 2
  drives the real ``forward(sentence_features, labels)`` path through :class:`TinySentenceEncoder`;
  level 3 sets ``gather_across_devices=True`` inside the suite's process group (DP-1 .. DP-4).
* ``cached_mnrl``, ``cached_mnrl_float32``, ``cached_mnrl_bfloat16`` --
  ``CachedMultipleNegativesRankingLoss`` (GradCache, CACHE-1 .. CACHE-4, with its ``RandContext``
  RNG replay for dropout, CACHE-3) whenever the case carries a ``mini_batch_size``, and at levels 1
  and 3 through a pass-through model; with ``mini_batch_size`` ``None`` it is ``mnrl``'s path.

What is claimed is what the library supports: all four directions, in any order (DIR-2), both
partition modes (PART-2 .. PART-4), ``cos`` = ``util.cos_sim`` and ``dot`` = ``util.dot_score``
(SIM-1, SIM-2), the three hardness modes (HARD-2 .. HARD-6), any number of hard-negative columns. Not
claimed: dL/dscale (SCALE-2; the library's ``scale`` is a plain float, never a parameter), input
validation (VAL-1, DP-5; it does not check finiteness or equal local batch sizes), and a float32
loss stage for bfloat16 embeddings (the gradients are summed in bfloat16).

This module never copies the library: it only calls its public classes.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np
import torch
from torch import nn

from infonce_spec.conformance.protocol import (
    Capabilities,
    DropoutCase,
    EmbeddingCase,
    EncoderCase,
    EncoderGrads,
    LossGrads,
    RankCase,
    RankEncoderCase,
)

try:
    from sentence_transformers import util as st_util
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "infonce_spec.adapters.sentence_transformers needs sentence-transformers 6.2.0: "
        "pip install 'infonce-spec[peers]'"
    ) from exc

__all__ = [
    "SIMILARITY_FCTS",
    "LinearEmbedding",
    "PassThroughEmbedding",
    "SentenceTransformersAdapter",
    "TinySentenceEncoder",
    "cached_mnrl",
    "cached_mnrl_bfloat16",
    "cached_mnrl_float32",
    "mnrl",
    "mnrl_bfloat16",
    "mnrl_float32",
]

#: The spec's similarity names and the library functions that implement them (SIM-1, SIM-2).
SIMILARITY_FCTS = {"cos": st_util.cos_sim, "dot": st_util.dot_score}

_TORCH_DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16}
_FEATURE = "x"


class LinearEmbedding(nn.Module):
    """The one module of the stand-in model: ``{"x": (n, F)} -> {"sentence_embedding": dropout(x) @ W.T}``.

    ``W`` is ``(D, F)`` (the ``nn.Linear(F, D, bias=False)`` convention of the protocol's encoder
    level). ``nn.Dropout`` (inverted scaling) runs only when ``p > 0``, in training mode.
    """

    def __init__(self, weight: torch.Tensor, p: float = 0.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.dropout = nn.Dropout(p) if p > 0 else nn.Identity()

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = self.dropout(features[_FEATURE])
        return {**features, "sentence_embedding": x @ self.weight.T}


class PassThroughEmbedding(nn.Module):
    """``{"x": (n, D)} -> {"sentence_embedding": x}``: the embeddings *are* the input, so the
    gradient that reaches ``x`` is dL/d(embeddings) (how level 1 goes through the cached loss)."""

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {**features, "sentence_embedding": features[_FEATURE]}


class TinySentenceEncoder(nn.Sequential):
    """The smallest offline stand-in for a ``SentenceTransformer`` that both losses accept.

    Like the real model it is a sequence of modules passing a features dict along, so the losses'
    ``model(features)["sentence_embedding"]`` works, and ``model[0]`` (which the cached loss
    inspects to reject ``StaticEmbedding`` models) is an ordinary module. The features carry one
    tensor, ``"x"``; with no ``input_ids`` the library embeds each column in its own forward pass,
    in column order (queries, then each document column), and slices mini-batches along rows.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__(module)


@contextmanager
def _quiet_hardness_warning() -> Iterator[None]:
    """The library logs a warning for a hardness mode with strength 0; the suite means it (HARD-6)."""
    st_logger = logging.getLogger(MultipleNegativesRankingLoss.__module__)
    previous = st_logger.level
    st_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        st_logger.setLevel(previous)


@contextmanager
def _quiet_gather_deprecation() -> Iterator[None]:
    """sentence-transformers 6.2.0 gathers with ``torch.distributed.nn.all_gather``, which torch 2.13
    deprecates (FutureWarning at every call); silenced inside the adapter only, documented in
    docs/sentence-transformers.md. The gather itself is what DP-1 .. DP-4 check."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*all_gather is deprecated", category=FutureWarning)
        yield


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


class SentenceTransformersAdapter:
    """One adapter over the library's losses; every call builds a fresh model and loss (no state).

    ``capabilities.cached`` picks ``CachedMultipleNegativesRankingLoss`` for every case that
    carries a ``mini_batch_size`` and, at levels 1 and 3, for the embeddings too: they are fed
    through :class:`PassThroughEmbedding` in mini-batches of ``embedding_mini_batch_size`` (2 does
    not divide odd N), so the cached loss's own chunked loss stage meets every drawn config.
    """

    def __init__(self, capabilities: Capabilities, *, embedding_mini_batch_size: int = 2) -> None:
        self.capabilities = capabilities
        self.embedding_mini_batch_size = embedding_mini_batch_size
        self._dtype = _TORCH_DTYPES[capabilities.dtype]

    def __repr__(self) -> str:
        return f"SentenceTransformersAdapter({self.capabilities.name!r})"

    def make_loss(
        self, model: nn.Module, config: Any, *, mini_batch_size: int | None = None, gather: bool = False
    ) -> nn.Module:
        """The library's loss for ``config`` (a reference ``Config``; directions passed as given)."""
        kwargs: dict[str, Any] = {
            "scale": float(config.scale),
            "similarity_fct": SIMILARITY_FCTS[config.similarity],
            "gather_across_devices": gather,
            "directions": tuple(config.directions),
            "partition_mode": config.partition_mode,
            "hardness_mode": config.hardness_mode,
            "hardness_strength": float(config.hardness_strength),
        }
        with _quiet_hardness_warning():
            if self.capabilities.cached and mini_batch_size is not None:
                return CachedMultipleNegativesRankingLoss(model, mini_batch_size=mini_batch_size, **kwargs)
            return MultipleNegativesRankingLoss(model, **kwargs)

    def _tensor(self, x: np.ndarray, device: str = "cpu", *, grad: bool = False) -> torch.Tensor:
        return torch.tensor(np.asarray(x), dtype=self._dtype, device=device, requires_grad=grad)

    # -- levels 1 and 3: embeddings -------------------------------------------------------------

    def _embeddings(
        self, queries: np.ndarray, docs: np.ndarray, config: Any, gather: bool, device: str
    ) -> LossGrads:
        q = self._tensor(queries, device, grad=True)
        cols = [self._tensor(c, device, grad=True) for c in docs]
        model = TinySentenceEncoder(PassThroughEmbedding())
        with _quiet_gather_deprecation() if gather else nullcontext():
            if self.capabilities.cached:
                m = self.embedding_mini_batch_size
                loss_fn = self.make_loss(model, config, mini_batch_size=m, gather=gather)
                loss = loss_fn([{_FEATURE: x} for x in (q, *cols)], None)
            else:
                loss_fn = self.make_loss(model, config, gather=gather)
                loss = loss_fn.compute_loss_from_embeddings([q, *cols], None)
            loss.backward()
        grads = [x.grad if x.grad is not None else torch.zeros_like(x) for x in (q, *cols)]
        return LossGrads(
            loss=float(loss.detach()),
            grad_queries=_numpy(grads[0]),
            grad_docs=_numpy(torch.stack(grads[1:])),
        )

    def embeddings(self, case: EmbeddingCase) -> LossGrads:
        """Level 1: ``compute_loss_from_embeddings([queries, docs[0], ..., docs[K-1]], None)``
        (cached: the loss's ``forward`` over the pass-through model), then ``backward()``."""
        return self._embeddings(case.queries, case.docs, case.config, gather=False, device="cpu")

    def rank_embeddings(self, case: RankCase) -> LossGrads:
        """DP-1 .. DP-3: this rank's local embeddings with ``gather_across_devices=True``."""
        return self._embeddings(case.queries, case.docs, case.config, gather=True, device=case.device)

    # -- levels 2 and 3: the linear encoder -----------------------------------------------------

    def _encoder(
        self,
        weight: np.ndarray,
        steps: Sequence[tuple[np.ndarray, np.ndarray, float]],
        config: Any,
        mini_batch_size: int | None,
        *,
        gather: bool = False,
        device: str = "cpu",
        p: float = 0.0,
        seed: int | None = None,
    ) -> EncoderGrads:
        layer = LinearEmbedding(self._tensor(weight, device), p)
        loss_fn = self.make_loss(
            TinySentenceEncoder(layer), config, mini_batch_size=mini_batch_size, gather=gather
        )
        losses = []
        for x_queries, x_docs, _ in steps:  # every forward first (CACHE-4 re-entrancy) ...
            features = [{_FEATURE: self._tensor(x, device)} for x in (x_queries, *x_docs)]
            if seed is not None:
                torch.manual_seed(seed)
            with _quiet_gather_deprecation() if gather else nullcontext():
                losses.append(loss_fn(features, None))
        for loss, (_, _, upstream) in zip(losses, steps, strict=True):  # ... then every backward
            with _quiet_gather_deprecation() if gather else nullcontext():
                (loss * upstream).backward()
        grad = layer.weight.grad
        return EncoderGrads(
            losses=[float(loss.detach()) for loss in losses],
            grad_weight=_numpy(grad) if grad is not None else np.zeros(np.shape(weight)),
        )

    def encoder(self, case: EncoderCase) -> EncoderGrads:
        """Level 2: ``loss(sentence_features, None)``, features ``[{"x": x_q}, {"x": x_d0}, ...]``."""
        steps = [(s.x_queries, s.x_docs, s.upstream) for s in case.steps]
        return self._encoder(case.weight, steps, case.config, case.mini_batch_size)

    def dropout_encoder(self, case: DropoutCase) -> EncoderGrads:
        """CACHE-3: ``nn.Dropout(p)`` in front of the layer; ``torch.manual_seed(seed)`` right before the call."""
        steps = [(case.x_queries, case.x_docs, case.upstream)]
        return self._encoder(case.weight, steps, case.config, case.mini_batch_size, p=case.p, seed=case.seed)

    def rank_encoder(self, case: RankEncoderCase) -> EncoderGrads:
        """DP-4: this rank's weight gradient (the suite averages it over ranks)."""
        steps = [(case.x_queries, case.x_docs, 1.0)]
        return self._encoder(
            case.weight, steps, case.config, case.mini_batch_size, gather=True, device=case.device
        )


def _capabilities(name: str, *, dtype: str, cached: bool) -> Capabilities:
    return Capabilities(
        name=name,
        # What the library supports (see the module docstring), listed: a name the spec adds later is
        # not claimed until the library has it.
        directions=frozenset({"query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc"}),
        partition_modes=frozenset({"joint", "per_direction"}),
        similarities=frozenset(SIMILARITY_FCTS),
        hardness_modes=frozenset({"in_batch_negatives", "hard_negatives", "all_negatives"}),
        dtype=dtype,
        # util.cos_sim / util.dot_score upcast bfloat16 embeddings to float32 for each call, but the
        # gradients of those calls are summed in bfloat16, so the float32 loss-stage bound does not
        # hold (docs/sentence-transformers.md, finding 1): bfloat16 is claimed throughout.
        compute_dtype=None,
        grad_scale=False,
        encoder=True,
        cached=cached,
        dropout=True,
        data_parallel=True,
        validates_inputs=False,
        # Plain torch: the suite's peak-memory meter sees every allocation (CACHE-5 for the cached loss).
        torch_memory=True,
    )


#: ``MultipleNegativesRankingLoss`` in float64 (levels 1-3, dropout).
mnrl = SentenceTransformersAdapter(_capabilities("sentence-transformers MNRL", dtype="float64", cached=False))
#: ``MultipleNegativesRankingLoss`` on float32 embeddings.
mnrl_float32 = SentenceTransformersAdapter(
    _capabilities("sentence-transformers MNRL (float32)", dtype="float32", cached=False)
)
#: ``MultipleNegativesRankingLoss`` on bfloat16 embeddings (bfloat16 tolerances, see :func:`_capabilities`).
mnrl_bfloat16 = SentenceTransformersAdapter(
    _capabilities("sentence-transformers MNRL (bfloat16)", dtype="bfloat16", cached=False)
)
#: ``CachedMultipleNegativesRankingLoss`` in float64 (GradCache for cases with a mini_batch_size).
cached_mnrl = SentenceTransformersAdapter(
    _capabilities("sentence-transformers CachedMNRL", dtype="float64", cached=True)
)
#: ``CachedMultipleNegativesRankingLoss`` on float32 embeddings.
cached_mnrl_float32 = SentenceTransformersAdapter(
    _capabilities("sentence-transformers CachedMNRL (float32)", dtype="float32", cached=True)
)
#: ``CachedMultipleNegativesRankingLoss`` on bfloat16 embeddings (bfloat16 tolerances).
cached_mnrl_bfloat16 = SentenceTransformersAdapter(
    _capabilities("sentence-transformers CachedMNRL (bfloat16)", dtype="bfloat16", cached=True)
)
