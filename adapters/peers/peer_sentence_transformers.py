"""Peer adapter: released sentence-transformers versions before 6 (3.x, 4.x, 5.x), whose losses take
no ``directions`` / ``partition_mode`` / ``hardness_mode``.

Each version offers two configurations, one class each, so the adapter claims exactly those two
(``infonce() | clip_like()``) and picks the class from the case:

* ``query_to_doc`` alone, ``joint`` -- ``MultipleNegativesRankingLoss`` (cached:
  ``CachedMultipleNegativesRankingLoss``), hard negatives allowed;
* ``{query_to_doc, doc_to_query}``, ``per_direction`` -- ``MultipleNegativesSymmetricRankingLoss``
  (cached: ``CachedMultipleNegativesSymmetricRankingLoss``).

``cos`` = ``util.cos_sim`` and ``dot`` = ``util.dot_score``; any K. Levels: embeddings (the loss's
``forward`` over a pass-through model), encoder (a bias-free linear model; cached: the suite's
``mini_batch_size``, with dropout for the RNG replay, CACHE-3), and data parallel with
``gather_across_devices=True`` where the installed version's losses have that argument (5.x).

Not claimed: dL/dscale (``scale`` is a float), hardness (not in these versions), input validation.

Run (in an environment with the version installed, see peers/run_matrix.py)::

    infonce-conformance run --adapter adapters/peers/peer_sentence_transformers.py:mnrl
    infonce-conformance run --adapter adapters/peers/peer_sentence_transformers.py:cached_mnrl
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from _peer_support import grad_or_zero, numpy64, tensor
from sentence_transformers import __version__ as st_version
from sentence_transformers import losses as st_losses
from sentence_transformers import util as st_util
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
    clip_like,
    infonce,
)

SIMILARITY_FCTS = {"cos": st_util.cos_sim, "dot": st_util.dot_score}
#: (cached, partition_mode) -> the library's class for that configuration.
LOSSES = {
    (False, "joint"): st_losses.MultipleNegativesRankingLoss,
    (False, "per_direction"): st_losses.MultipleNegativesSymmetricRankingLoss,
    (True, "joint"): st_losses.CachedMultipleNegativesRankingLoss,
    (True, "per_direction"): st_losses.CachedMultipleNegativesSymmetricRankingLoss,
}
#: Whether every class used here has ``gather_across_devices`` (sentence-transformers >= 5.0).
HAS_GATHER = all("gather_across_devices" in inspect.signature(cls).parameters for cls in LOSSES.values())
_FEATURE = "x"


def _features(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """A column's features: the input ``x`` and placeholder ``input_ids`` (N, 1), which these
    versions' cached losses read for the batch size only (a real model's tokenizer provides them)."""
    return {_FEATURE: x, "input_ids": torch.zeros((x.shape[0], 1), dtype=torch.long, device=x.device)}


class _Linear(nn.Module):
    """``{"x": (n, F)} -> {"sentence_embedding": dropout(x) @ W.T}``; ``W = None``: pass-through."""

    def __init__(self, weight: torch.Tensor | None, p: float = 0.0) -> None:
        super().__init__()
        self.weight = None if weight is None else nn.Parameter(weight)
        self.dropout = nn.Dropout(p) if p > 0 else nn.Identity()

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = self.dropout(features[_FEATURE])
        return {**features, "sentence_embedding": x if self.weight is None else x @ self.weight.T}


class _Model(nn.Sequential):
    """The smallest stand-in for a ``SentenceTransformer`` that the losses accept (a sequence of
    modules passing a features dict; no ``input_ids``, so each column is embedded on its own)."""


class LegacySentenceTransformersAdapter:
    def __init__(self, *, cached: bool, dtype: str = "float64", embedding_mini_batch_size: int = 2) -> None:
        self.cached = cached
        self.dtype = dtype
        self.embedding_mini_batch_size = embedding_mini_batch_size
        kind = "cached " if cached else ""
        self.capabilities = Capabilities(
            name=f"sentence-transformers {st_version} {kind}MNRL / MNSRL ({dtype})",
            configurations=infonce() | clip_like(),
            similarities=frozenset(SIMILARITY_FCTS),
            dtype=dtype,
            encoder=True,
            cached=cached,
            dropout=True,
            data_parallel=HAS_GATHER,
            torch_memory=True,
        )

    def _loss(self, model: nn.Module, config: Any, mini_batch_size: int | None, gather: bool) -> nn.Module:
        cached = self.cached and mini_batch_size is not None
        kwargs: dict[str, Any] = {
            "scale": float(config.scale),
            "similarity_fct": SIMILARITY_FCTS[config.similarity],
        }
        if gather:
            kwargs["gather_across_devices"] = True
        if cached:
            kwargs["mini_batch_size"] = mini_batch_size
        return LOSSES[(cached, config.partition_mode)](model, **kwargs)

    def _embeddings(
        self, queries: np.ndarray, docs: np.ndarray, config: Any, gather: bool, device: str
    ) -> LossGrads:
        cols = [tensor(x, self.dtype, device, grad=True) for x in (queries, *docs)]
        m = self.embedding_mini_batch_size if self.cached else None
        loss = self._loss(_Model(_Linear(None)), config, m, gather)([_features(x) for x in cols], None)
        loss.backward()
        return LossGrads(
            float(loss.detach()), grad_or_zero(cols[0]), np.stack([grad_or_zero(c) for c in cols[1:]])
        )

    def embeddings(self, case: EmbeddingCase) -> LossGrads:
        return self._embeddings(case.queries, case.docs, case.config, False, "cpu")

    def rank_embeddings(self, case: RankCase) -> LossGrads:
        return self._embeddings(case.queries, case.docs, case.config, True, case.device)

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
        layer = _Linear(tensor(weight, self.dtype, device), p)
        loss_fn = self._loss(_Model(layer), config, mini_batch_size, gather)
        losses = []
        for x_queries, x_docs, _ in steps:  # every forward first (CACHE-4), then every backward
            if seed is not None:
                torch.manual_seed(seed)
            losses.append(
                loss_fn([_features(tensor(x, self.dtype, device)) for x in (x_queries, *x_docs)], None)
            )
        for loss, (_, _, upstream) in zip(losses, steps, strict=True):
            (loss * upstream).backward()
        grad = layer.weight.grad
        return EncoderGrads(
            [float(loss.detach()) for loss in losses],
            numpy64(grad) if grad is not None else np.zeros(np.shape(weight)),
        )

    def encoder(self, case: EncoderCase) -> EncoderGrads:
        steps = [(s.x_queries, s.x_docs, s.upstream) for s in case.steps]
        return self._encoder(case.weight, steps, case.config, case.mini_batch_size)

    def dropout_encoder(self, case: DropoutCase) -> EncoderGrads:
        steps = [(case.x_queries, case.x_docs, case.upstream)]
        return self._encoder(case.weight, steps, case.config, case.mini_batch_size, p=case.p, seed=case.seed)

    def rank_encoder(self, case: RankEncoderCase) -> EncoderGrads:
        steps = [(case.x_queries, case.x_docs, 1.0)]
        return self._encoder(
            case.weight, steps, case.config, case.mini_batch_size, gather=True, device=case.device
        )


mnrl = LegacySentenceTransformersAdapter(cached=False)
cached_mnrl = LegacySentenceTransformersAdapter(cached=True)
