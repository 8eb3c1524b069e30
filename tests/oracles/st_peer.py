"""sentence-transformers 6.2.0 ``MultipleNegativesRankingLoss`` as a float64 peer (the behavioural anchor).

``compute_loss_from_embeddings`` never touches the model, so a bare ``torch.nn.Module`` stands in
for it (the constructor only stores it): nothing is downloaded. ``scale`` is passed as a 0-d
float64 tensor with ``requires_grad`` -- the loss only compares it with 0 and multiplies by it --
so autograd also yields dL/dscale. Import this module only after ``pytest.importorskip``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from sentence_transformers import util

try:  # the 6.x home of the class; the old path still works but warns
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
except ImportError:  # pragma: no cover - older layouts
    from sentence_transformers.losses import MultipleNegativesRankingLoss

__all__ = ["SIMILARITY_FCTS", "PeerResult", "st_loss_and_grad"]

#: The spec's similarity names and the sentence-transformers functions they stand for (SIM-1, SIM-2).
SIMILARITY_FCTS = {"cos": util.cos_sim, "dot": util.dot_score}


class _NoModel(torch.nn.Module):
    """Stands in for the SentenceTransformer: the loss stores it and never calls it here."""

    def forward(self, *args: object, **kwargs: object) -> None:  # pragma: no cover
        raise AssertionError("compute_loss_from_embeddings must not call the model")


@dataclass(frozen=True)
class PeerResult:
    loss: float
    grad_queries: np.ndarray
    grad_docs: np.ndarray
    grad_scale: float


def st_loss_and_grad(
    queries: np.ndarray,
    docs: np.ndarray,
    *,
    scale: float,
    directions: tuple[str, ...],
    partition_mode: str,
    similarity: str,
    hardness_mode: str | None = None,
    hardness_strength: float = 0.0,
) -> PeerResult:
    """The sentence-transformers loss and its autograd gradients, float64, as NumPy."""
    q = torch.tensor(np.asarray(queries), dtype=torch.float64, requires_grad=True)
    cols = [torch.tensor(np.asarray(c), dtype=torch.float64, requires_grad=True) for c in docs]
    sc = torch.tensor(float(scale), dtype=torch.float64, requires_grad=True)
    # ST warns (logging) when a hardness mode comes with strength 0; that case is meant here (HARD-6).
    st_logger = logging.getLogger(MultipleNegativesRankingLoss.__module__)
    previous = st_logger.level
    st_logger.setLevel(logging.ERROR)
    try:
        loss_fn = MultipleNegativesRankingLoss(
            _NoModel(),
            scale=sc,  # type: ignore[arg-type]
            similarity_fct=SIMILARITY_FCTS[similarity],
            directions=directions,  # type: ignore[arg-type]
            partition_mode=partition_mode,  # type: ignore[arg-type]
            hardness_mode=hardness_mode,  # type: ignore[arg-type]
            hardness_strength=hardness_strength,
        )
    finally:
        st_logger.setLevel(previous)
    loss = loss_fn.compute_loss_from_embeddings([q, *cols], labels=None)  # type: ignore[arg-type]
    grads = torch.autograd.grad(loss, (q, *cols, sc))
    return PeerResult(
        loss=float(loss.detach()),
        grad_queries=grads[0].numpy(),
        grad_docs=torch.stack(list(grads[1:-1])).numpy(),
        grad_scale=float(grads[-1]),
    )
