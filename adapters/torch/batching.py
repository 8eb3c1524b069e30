"""Splitting encoder input batches into mini-batches (used by the cached loss, CACHE-1).

An input batch is whatever the encoder accepts: a tensor, a mapping of tensors (a tokenizer's
output), or a list/tuple of tensors. Its batch size is the first dimension of its first tensor;
a slice takes rows ``[start, stop)`` of every tensor and keeps other values as they are.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch

from infonce_spec.errors import SpecTypeError, SpecViolation

__all__ = ["batch_size_of", "check_mini_batch_size", "iter_tensors", "mini_batches", "slice_batch"]


def iter_tensors(batch: Any) -> Iterator[torch.Tensor]:
    """Every tensor in ``batch`` (tensor, mapping or list/tuple, nested)."""
    if isinstance(batch, torch.Tensor):
        yield batch
    elif isinstance(batch, Mapping):
        for value in batch.values():
            yield from iter_tensors(value)
    elif isinstance(batch, (list, tuple)):
        for value in batch:
            yield from iter_tensors(value)


def batch_size_of(batch: Any) -> int:
    """The number of rows of ``batch`` (first dimension of its first tensor)."""
    for tensor in iter_tensors(batch):
        if tensor.ndim == 0:
            continue
        return int(tensor.shape[0])
    raise SpecTypeError(
        "LAYOUT-1", f"an input batch must contain a tensor with a batch dimension, got {type(batch).__name__}"
    )


def slice_batch(batch: Any, start: int, stop: int) -> Any:
    """Rows ``[start, stop)`` of every tensor in ``batch``."""
    if isinstance(batch, torch.Tensor):
        return batch[start:stop] if batch.ndim > 0 else batch
    if isinstance(batch, Mapping):
        return {key: slice_batch(value, start, stop) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(slice_batch(value, start, stop) for value in batch)
    return batch


def check_mini_batch_size(size: object) -> int:
    """CACHE-1: an integer (TypeError otherwise) >= 1 (ValueError otherwise)."""
    if isinstance(size, bool) or not isinstance(size, int):
        raise SpecTypeError(
            "CACHE-1", f"mini_batch_size must be an integer, got {type(size).__name__} {size!r}"
        )
    if size < 1:
        raise SpecViolation("CACHE-1", f"mini_batch_size must be >= 1, got {size!r}")
    return size


def mini_batches(batch: Any, size: int) -> list[tuple[int, int]]:
    """The row ranges ``[(start, stop), ...]`` of consecutive mini-batches of at most ``size`` rows."""
    check_mini_batch_size(size)
    n = batch_size_of(batch)
    return [(start, min(start + size, n)) for start in range(0, n, size)]
