"""Input layout checks and the compute precision (clauses LAYOUT-1 .. LAYOUT-5, VAL-1).

``queries`` is a (B, D) tensor; ``docs`` is either a (K, B, D) tensor or a sequence of K tensors
of shape (B, D) (column k = docs[k]; column 0 holds the positives, LAYOUT-2). Columns are kept as
separate tensors: the data-parallel gather works column by column (DP-1) and the candidate index
is ``k * N + j`` (LAYOUT-3).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from infonce_spec.errors import SpecTypeError, SpecViolation

__all__ = ["compute_dtype", "doc_columns", "validate_embeddings"]


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The precision the loss stage runs in: the input's, but at least float32.

    float16 and bfloat16 embeddings are upcast to float32 before the similarities, so logits,
    logsumexp and softmax never run in half precision; float64 stays float64.
    """
    return torch.promote_types(dtype, torch.float32)


def _check_tensor(x: object, name: str, clause: str, ndim: int, shape_text: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise SpecTypeError("LAYOUT-5", f"{name} must be a torch.Tensor {shape_text}, got {type(x).__name__}")
    if not x.is_floating_point():
        raise SpecTypeError("LAYOUT-5", f"{name} must have a floating dtype, got {x.dtype}")
    if x.ndim != ndim:
        raise SpecViolation(clause, f"{name} must be {shape_text}, got shape {tuple(x.shape)}")
    return x


def doc_columns(docs: object) -> list[torch.Tensor]:
    """The K document columns of ``docs`` as a list of (B, D) tensors (LAYOUT-2)."""
    if isinstance(docs, torch.Tensor):
        _check_tensor(docs, "docs", "LAYOUT-2", 3, "(K, B, D)")
        return list(docs.unbind(0))
    if isinstance(docs, (str, bytes)) or not isinstance(docs, Sequence):
        raise SpecTypeError(
            "LAYOUT-5",
            f"docs must be a (K, B, D) tensor or a sequence of (B, D) tensors, got {type(docs).__name__}",
        )
    return [_check_tensor(c, f"docs[{k}]", "LAYOUT-2", 2, "(B, D)") for k, c in enumerate(docs)]


def validate_embeddings(
    queries: object, docs: object, *, check_finite: bool = True
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Check ``queries`` (B, D) and ``docs`` and return ``(queries, columns)``.

    LAYOUT-1: B >= 1, D >= 1. LAYOUT-2: K >= 1 columns of the same (B, D), same device.
    LAYOUT-5: tensors of a floating dtype (TypeError). LAYOUT-4: finite values (``check_finite``; one reduction
    and a device sync per call).
    """
    q = _check_tensor(queries, "queries", "LAYOUT-1", 2, "(B, D)")
    b, d = q.shape
    if b < 1 or d < 1:
        raise SpecViolation(
            "LAYOUT-1", f"queries must have B >= 1 rows and D >= 1 columns, got {tuple(q.shape)}"
        )
    columns = doc_columns(docs)
    if not columns:
        raise SpecViolation("LAYOUT-2", "docs must hold K >= 1 columns (column 0 = positives)")
    for k, column in enumerate(columns):
        if tuple(column.shape) != (b, d):
            raise SpecViolation(
                "LAYOUT-2",
                f"docs[{k}] has shape {tuple(column.shape)}, expected (B, D) = {(b, d)} like queries",
            )
        if column.device != q.device:
            raise SpecViolation("LAYOUT-2", f"docs[{k}] is on {column.device}, queries on {q.device}")
    if check_finite:
        finite = torch.stack([torch.isfinite(t).all() for t in (q, *columns)])
        if not bool(finite.all()):
            names = ["queries", *(f"docs[{k}]" for k in range(len(columns)))]
            bad = [name for name, ok in zip(names, finite.tolist(), strict=True) if not ok]
            raise SpecViolation("LAYOUT-4", f"embeddings must be finite; non-finite values in {bad}")
    return q, columns
