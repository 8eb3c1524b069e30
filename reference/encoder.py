"""The gradient with respect to a linear encoder's weight (used for the cached contract, CACHE-1, DP-4).

Embeddings are ``x @ weight.T`` (the ``torch.nn.Linear(F, D, bias=False)`` convention, weight
``(D, F)``), for queries and every document column alike. By the chain rule
``dL/dweight = grad_queries^T x_queries + sum_k grad_docs[k]^T x_docs[k]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import array_api_compat

from infonce_spec.errors import SpecTypeError, SpecViolation

from .api import Result, loss_and_grad
from .config import Config

__all__ = ["EncoderResult", "linear_encoder_grad"]


@dataclass(frozen=True)
class EncoderResult:
    """``loss`` = L, ``grad_weight`` (D, F) and the embedding-level :class:`Result` it came from."""

    loss: float
    grad_weight: Any
    embeddings: Result


def linear_encoder_grad(x_queries: Any, x_docs: Any, weight: Any, config: Config) -> EncoderResult:
    """L and dL/dweight for a bias-free linear encoder applied to queries (N, F) and docs (K, N, F)."""
    for name, value in (("x_queries", x_queries), ("x_docs", x_docs), ("weight", weight)):
        if not array_api_compat.is_array_api_obj(value):
            raise SpecTypeError("LAYOUT-5", f"{name} must be an array, got {type(value).__name__}")
    xp = array_api_compat.array_namespace(x_queries, x_docs, weight)
    if weight.ndim != 2 or x_queries.ndim != 2 or x_docs.ndim != 3:
        raise SpecViolation(
            "LAYOUT-1", "linear encoder inputs must be x_queries (N, F), x_docs (K, N, F) and weight (D, F)"
        )
    if x_queries.shape[1] != weight.shape[1] or x_docs.shape[2] != weight.shape[1]:
        raise SpecViolation("LAYOUT-2", f"input width F must match weight (D, F) = {tuple(weight.shape)}")
    xq = xp.astype(x_queries, xp.float64)
    xd = xp.astype(x_docs, xp.float64)
    w = xp.astype(weight, xp.float64)
    k, n, f = (int(s) for s in xd.shape)
    queries = xq @ w.T
    docs = xp.reshape(xp.reshape(xd, (k * n, f)) @ w.T, (k, n, int(w.shape[0])))
    result = loss_and_grad(queries, docs, config)
    grad_w = result.grad_queries.T @ xq
    grad_w = grad_w + xp.reshape(result.grad_docs, (k * n, int(w.shape[0]))).T @ xp.reshape(xd, (k * n, f))
    return EncoderResult(loss=result.loss, grad_weight=grad_w, embeddings=result)
