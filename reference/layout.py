"""Batch layout and input validation (clauses LAYOUT-1 .. LAYOUT-5).

Queries are ``(N, D)``; documents are ``(K, N, D)`` with ``docs[0]`` the positives and ``docs[1:]``
the hard negatives. Candidate ``(k, j)`` has the flattened index ``k * N + j`` (LAYOUT-3).
Whatever the input dtype, the reference computes in float64 in the input's own Array API namespace,
on the values only: a torch tensor that requires grad is read through ``detach()``, so the reference
builds no autograd graph and returns plain float64 tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import array_api_compat

from infonce_spec.errors import SpecTypeError, SpecViolation

__all__ = ["Batch", "as_batch"]


@dataclass(frozen=True)
class Batch:
    """Validated float64 inputs: ``queries`` (N, D) and ``docs`` (K, N, D) in namespace ``xp``."""

    xp: Any
    queries: Any
    docs: Any

    @property
    def n(self) -> int:
        return int(self.queries.shape[0])

    @property
    def k(self) -> int:
        return int(self.docs.shape[0])

    @property
    def d(self) -> int:
        return int(self.queries.shape[1])


def _namespace(queries: object, docs: object) -> Any:
    for name, value in (("queries", queries), ("docs", docs)):
        if not array_api_compat.is_array_api_obj(value):
            raise SpecTypeError(
                "LAYOUT-5", f"{name} must be an array (numpy, torch, ...), got {type(value).__name__}"
            )
    try:
        return array_api_compat.array_namespace(queries, docs)
    except TypeError as exc:
        raise SpecTypeError("LAYOUT-5", f"queries and docs must come from one array library: {exc}") from None


def _values(x: Any) -> Any:
    """The values of ``x`` without autograd history (a torch tensor is detached; others as they are)."""
    return x.detach() if array_api_compat.is_torch_array(x) else x


def as_batch(queries: object, docs: object) -> Batch:
    """Check the shapes, dtypes and values of the inputs and return them as float64 (VAL-1)."""
    xp = _namespace(queries, docs)
    queries, docs = _values(queries), _values(docs)
    for name, value in (("queries", queries), ("docs", docs)):
        if not xp.isdtype(value.dtype, "real floating"):  # type: ignore[attr-defined]
            raise SpecTypeError("LAYOUT-5", f"{name} must have a real floating dtype, got {value.dtype}")  # type: ignore[attr-defined]
    q_shape = tuple(queries.shape)  # type: ignore[attr-defined]
    d_shape = tuple(docs.shape)  # type: ignore[attr-defined]
    if len(q_shape) != 2 or q_shape[0] < 1 or q_shape[1] < 1:
        raise SpecViolation(
            "LAYOUT-1", f"queries must have shape (N, D) with N >= 1 and D >= 1, got {q_shape}"
        )
    if len(d_shape) != 3 or d_shape[0] < 1:
        raise SpecViolation(
            "LAYOUT-2", f"docs must have shape (K, N, D) with K >= 1 (docs[0] the positives), got {d_shape}"
        )
    if d_shape[1:] != q_shape:
        raise SpecViolation(
            "LAYOUT-2",
            f"docs must have shape (K, N, D) = (K, {q_shape[0]}, {q_shape[1]}) to match queries, got {d_shape}",
        )
    q64 = xp.astype(queries, xp.float64, copy=False)
    d64 = xp.astype(docs, xp.float64, copy=False)
    for name, value in (("queries", q64), ("docs", d64)):
        if not bool(xp.all(xp.isfinite(value))):
            raise SpecViolation("LAYOUT-4", f"{name} must hold finite values only (found inf or nan)")
    return Batch(xp=xp, queries=q64, docs=d64)
