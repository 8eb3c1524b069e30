"""What the reference returns (clauses LOSS-1, LOSS-2, GRAD-1, SCALE-2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Result"]


@dataclass(frozen=True)
class Result:
    """The loss and its gradients, arrays in the input's namespace, float64.

    ``loss`` is L (LOSS-1); ``per_query_loss`` the ``l_g`` (N,) (LOSS-2); ``grad_queries`` (N, D),
    ``grad_docs`` (K, N, D) and ``grad_scale`` are dL/d(queries), dL/d(docs), dL/d(scale) (GRAD-1, SCALE-2).
    """

    loss: float
    per_query_loss: Any
    grad_queries: Any
    grad_docs: Any
    grad_scale: float
