"""``InfoNCELoss``: the uncached loss as an ``nn.Module`` around an encoder (clauses LOSS-1, DP-1 .. DP-4).

The encoder is any module mapping one input batch to embeddings (B, D); when it returns a mapping
(sentence-transformers style) the embeddings are read from ``embedding_key``. ``forward`` takes
K + 1 input batches: queries, then the document columns (positives first, LAYOUT-2).
The loss options (``directions``, ``partition_mode``, ``scale``, ``similarity``, ``hardness_mode``,
``hardness_strength``, ``gather_across_devices``, ``group``) are the fields of
:class:`~.config.LossConfig`, declared there once and passed through as keyword arguments.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from infonce_spec.errors import SpecTypeError, SpecViolation

from .batching import batch_size_of
from .config import LossConfig
from .functional import loss_from_config

__all__ = ["InfoNCELoss", "LossOptionsMixin", "embed"]


def embed(encoder: nn.Module, batch: Any, embedding_key: str) -> torch.Tensor:
    """Run ``encoder`` on ``batch`` and return the (rows, D) embeddings."""
    out = encoder(batch)
    if isinstance(out, Mapping):
        if embedding_key not in out:
            raise SpecTypeError(
                "LAYOUT-1", f"the encoder returned a mapping without {embedding_key!r} (keys: {sorted(out)})"
            )
        out = out[embedding_key]
    if not isinstance(out, torch.Tensor):
        raise SpecTypeError("LAYOUT-1", f"the encoder must return a tensor, got {type(out).__name__}")
    return out


def check_inputs(inputs: Any) -> list[Any]:
    """LAYOUT-2: K + 1 >= 2 input batches (queries, then document columns) of one batch size B >= 1 (LAYOUT-1)."""
    if isinstance(inputs, (str, bytes)) or not isinstance(inputs, Sequence):
        raise SpecTypeError(
            "LAYOUT-2", f"inputs must be a sequence of K + 1 batches, got {type(inputs).__name__}"
        )
    batches = list(inputs)
    if len(batches) < 2:
        raise SpecViolation(
            "LAYOUT-2", f"inputs must hold queries and K >= 1 document columns, got {len(batches)}"
        )
    sizes = [batch_size_of(b) for b in batches]
    if len(set(sizes)) != 1:
        raise SpecViolation("LAYOUT-2", f"every input batch must have the same batch size, got {sizes}")
    if sizes[0] < 1:
        raise SpecViolation("LAYOUT-1", "the local batch must hold B >= 1 rows, got an empty batch")
    return batches


class LossOptionsMixin:
    """Stores the loss options of the spec as attributes and builds a validated :class:`LossConfig` (VAL-1).

    The options are the fields of :class:`LossConfig` (their defaults are its defaults); an unknown
    keyword is a ``TypeError``, an invalid value the clause's error, both at construction.
    """

    def _init_options(self, options: Mapping[str, Any]) -> None:
        config = LossConfig(**options)  # validate now, not at the first step
        for field in dataclasses.fields(LossConfig):
            # an nn.Parameter scale is registered by nn.Module here (learnable, SCALE-2)
            setattr(self, field.name, getattr(config, field.name))

    def config(self) -> LossConfig:
        """The current options, validated (attributes may have been changed since construction)."""
        return LossConfig(
            **{field.name: getattr(self, field.name) for field in dataclasses.fields(LossConfig)}
        )

    @property
    def temperature(self) -> float:
        """``1 / scale`` (SCALE-1)."""
        scale = self.scale
        return 1.0 / (float(scale.detach()) if isinstance(scale, torch.Tensor) else float(scale))


class InfoNCELoss(LossOptionsMixin, nn.Module):
    """The uncached loss: embed each input batch with graph, then :func:`infonce_loss` (LOSS-1).

    ``forward(inputs)`` returns the local loss ``L_r`` (0-d). With ``gather_across_devices=True``
    under an initialised process group, gradients reaching each rank's encoder are
    ``W * dL/d(local embeddings)`` (DP-3); averaging parameter gradients over ranks (as
    DistributedDataParallel does) gives dL/dtheta (DP-4).
    """

    def __init__(
        self,
        encoder: nn.Module,
        *,
        embedding_key: str = "sentence_embedding",
        check_finite: bool = True,
        **options: Any,
    ) -> None:
        """``options``: the loss options, keyword by keyword, as :class:`LossConfig` declares them."""
        nn.Module.__init__(self)
        self.encoder = encoder
        self.embedding_key = embedding_key
        self.check_finite = check_finite
        self._init_options(options)

    def forward(self, inputs: Sequence[Any]) -> torch.Tensor:
        batches = check_inputs(inputs)
        embeddings = [embed(self.encoder, batch, self.embedding_key) for batch in batches]
        return loss_from_config(embeddings[0], embeddings[1:], self.config(), check_finite=self.check_finite)
