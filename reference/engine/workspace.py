"""The engine's working arrays, kept from one call to the next within a bound.

A call works in arrays it does not return: the chunks' logits and column products, the column
gradients' sums, the held N x N products, the row gradients before the pullback (about 150 MB at
N = 1024, K = 8 on two workers). Memory a call frees goes back to the system at its end (glibc
returns the top of its heaps and unmaps large blocks), and memory fresh from the system costs
about 0.1 ms per MB to fault in and clear -- 15 to 30 ms of a 0.32 s call on two threads, and a
pass over memory that slows down whenever something else uses the machine's memory bandwidth.
Repeated calls of one shape are how the engine is used (a gradient check on every step, the
conformance suite's large examples, a benchmark), so a call takes its working arrays from those
the last calls kept and keeps them when it ends, up to :data:`WORKSPACE_BYTES` in all; an array
that is not there is made new, as before.

Only memory is kept, never a value: every array is written whole, or cleared, before it is read,
exactly as a new one would be, so the numbers do not depend on what was kept. The arrays a call
returns are never kept. Two calls at once (from two threads) never share an array: each takes its
own, and an array is kept again only when its call has ended -- and only when it ended with its
result: a call that raises (a chunk failed, and the other workers may still be writing) keeps
nothing. A forked child keeps nothing of its parent's. :func:`release` frees what is kept.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import array_api_compat

__all__ = ["SMALLEST_KEPT", "WORKSPACE_BYTES", "Workspace", "kept_bytes", "release"]

#: The most memory the engine keeps between calls (256 MiB); 0 keeps nothing. Larger calls keep
#: the arrays that fit, the largest first.
WORKSPACE_BYTES = 1 << 28
#: Arrays under 1 MiB are not kept: the allocator reuses such blocks by itself, and a small call
#: would otherwise fill the workspace with thousands of them.
SMALLEST_KEPT = 1 << 20

_kept: list[Any] = []
_lock = threading.Lock()


def _nbytes(x: Any) -> int:
    """The bytes of a float64 array (the engine works in float64, LAYOUT-5)."""
    count = 1
    for size in x.shape:
        count *= int(size)
    return count * 8


def _fits(x: Any, shape: tuple[int, ...], like: Any) -> bool:
    return (
        type(x) is type(like)
        and tuple(int(s) for s in x.shape) == shape
        and x.dtype == like.dtype
        and array_api_compat.device(x) == array_api_compat.device(like)
    )


class Workspace:
    """The working arrays of one call: :meth:`empty` and :meth:`zeros` take them from what earlier
    calls kept, or make them; :meth:`close` (or the end of a ``with`` block) keeps them for the
    next call."""

    def __init__(self, xp: Any) -> None:
        self.xp = xp
        self._taken: list[Any] = []

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:  # a chunk failed: other workers may still be writing into these arrays
            self._taken = []

    def empty(self, shape: tuple[int, ...], like: Any) -> Any:
        """A float64 array of ``shape`` in ``like``'s namespace and device, its contents unspecified."""
        shape = tuple(int(s) for s in shape)
        with _lock:
            found = next((i for i, x in enumerate(_kept) if _fits(x, shape, like)), None)
            array = _kept.pop(found) if found is not None else None
        if array is None:
            array = self.xp.empty(shape, dtype=like.dtype, device=array_api_compat.device(like))
        self._taken.append(array)
        return array

    def zeros(self, shape: tuple[int, ...], like: Any) -> Any:
        """As :meth:`empty`, cleared."""
        array = self.empty(shape, like)
        array[...] = 0.0
        return array

    def close(self) -> None:
        """Keep this call's arrays of :data:`SMALLEST_KEPT` bytes or more for the next calls, the
        largest first, then as much of what earlier calls kept as still fits in
        :data:`WORKSPACE_BYTES` (the latest first)."""
        taken, self._taken = self._taken, []
        with _lock:
            keep, room = [], WORKSPACE_BYTES
            for array in [*sorted(taken, key=_nbytes, reverse=True), *reversed(_kept)]:
                if SMALLEST_KEPT <= _nbytes(array) <= room:
                    keep.append(array)
                    room -= _nbytes(array)
            _kept[:] = reversed(keep)


def kept_bytes() -> int:
    """The memory kept now."""
    with _lock:
        return sum(_nbytes(x) for x in _kept)


def release() -> None:
    """Free what is kept (the next call makes its arrays new)."""
    with _lock:
        _kept.clear()


def _forget_in_child() -> None:
    """In a forked child: the parent's arrays are not the child's to reuse (nor is the lock)."""
    global _lock
    _kept.clear()
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
