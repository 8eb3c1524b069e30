"""The engine's threads: every pass of a call on a small pool, one BLAS thread per worker.

The chunks of query rows (:mod:`.loss`) are independent until their gradients are summed, and
numpy releases the GIL in its matrix products and ufunc loops, so ``threads`` workers keep
``threads`` cores busy in the elementwise passes (exp, sums, masks) as well as in the products.
Each worker takes a fixed run of consecutive chunks and sums their column gradients itself; the
other passes (the unit rows, the held N x N products and their backward, the pullback) run by
blocks of rows on the same workers (:data:`MapRows`). Each worker calls BLAS single-threaded, so
``threads`` workers use ``threads`` cores, not ``threads`` squared. BLAS thread counts are set
through threadpoolctl for the duration of the call and restored afterwards; they are
process-wide, so a BLAS call from another thread of the program meanwhile runs with the
engine's count.

Only speed depends on ``threads``: each chunk and each sum of gradients is the same computation
whatever the number of workers, up to the order in which the column gradients of the chunks are
added (rounding); for a given ``threads`` that order is fixed, so a call gives the same bits at
every run.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = [
    "MapRows",
    "blas_threads",
    "default_threads",
    "in_one_block",
    "map_chunks",
    "resolve_threads",
    "row_steps",
    "split",
    "steps",
]

T = TypeVar("T")
#: Numbers per step of :func:`row_steps` (1 MiB of float64).
STEP_ELEMENTS = 1 << 17
#: ``map_rows(work, count)`` runs ``work(start, stop)`` over row ranges that cover ``0 .. count-1``
#: and returns the results in order (the engine's runs them on the pool: :func:`map_chunks`).
MapRows = Callable[[Callable[[int, int], Any], int], list[Any]]

_controller: Any = None
_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _blas_controller() -> Any:
    """threadpoolctl's controller of the loaded BLAS libraries, numpy's among them (numpy loads its
    BLAS when imported); found once."""
    global _controller
    if _controller is None:
        import numpy  # noqa: F401  (its BLAS library must be loaded to be found)
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController().select(user_api="blas")
    return _controller


def default_threads() -> int:
    """What numpy's BLAS would use: its thread count as threadpoolctl reads it (``OPENBLAS_NUM_THREADS``
    and the like included), or the cores available to this process where no BLAS library is found."""
    infos = _blas_controller().info()
    numpy_blas = [i for i in infos if "numpy" in str(i.get("filepath", ""))] or infos
    if numpy_blas:
        return max(1, int(numpy_blas[0]["num_threads"]))
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


def resolve_threads(threads: int | None) -> int:
    """``threads`` checked (a positive integer), or :func:`default_threads` for ``None``."""
    if threads is None:
        return default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    return threads


@contextlib.contextmanager
def blas_threads(count: int) -> Iterator[None]:
    """BLAS calls use ``count`` threads inside the block (the previous counts are restored)."""
    with _blas_controller().limit(limits=count):
        yield


def _forget_pools() -> None:
    """In a forked child: the pools' threads (and whoever held the lock) stayed in the parent."""
    global _pools_lock
    _pools.clear()
    _pools_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools)


def _pool(workers: int) -> ThreadPoolExecutor:
    """The pool of ``workers`` threads, kept for later calls: a new thread's first BLAS call sets up
    its buffers, which costs more than a chunk's worth of work at small N."""
    with _pools_lock:
        if workers not in _pools:
            _pools[workers] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="infonce-engine")
        return _pools[workers]


def split(count: int, parts: int) -> list[tuple[int, int]]:
    """``[0, count)`` in ``min(parts, count)`` ranges of sizes as even as possible, in order."""
    parts = max(1, min(parts, count))
    edges = [count * i // parts for i in range(parts + 1)]
    return list(itertools.pairwise(edges))


def in_one_block(work: Callable[[int, int], T], count: int) -> list[T]:
    """A :data:`MapRows` that runs ``work(0, count)`` in the calling thread."""
    return [work(0, count)]


def steps(start: int, stop: int, size: int) -> list[tuple[int, int]]:
    """``[start, stop)`` in consecutive ranges of ``size`` (the last one shorter)."""
    return [(a, min(a + size, stop)) for a in range(start, stop, size)]


def row_steps(start: int, stop: int, width: int) -> list[tuple[int, int]]:
    """Rows ``[start, stop)`` of ``width`` numbers each in :func:`steps` of about
    :data:`STEP_ELEMENTS` numbers: the passes that follow one another over a block of rows (exp
    and row sums, the unit rows, the pullback) take it a step at a time, so that each pass reads
    what the last one wrote from the cache, and each step is large enough for numpy's loops (which
    run without the GIL) to outweigh the Python around them."""
    return steps(start, stop, max(1, STEP_ELEMENTS // max(1, width)))


def map_chunks(work: Callable[..., T], items: Sequence[tuple[Any, ...]], threads: int) -> list[T]:
    """``[work(*item) for item in items]``: on ``threads`` workers with one BLAS thread each, or in
    the calling thread where there is one worker or one item."""
    if threads == 1 or len(items) == 1:
        return [work(*item) for item in items]
    with blas_threads(1):
        return list(_pool(min(threads, len(items))).map(lambda item: work(*item), items))
