"""The engine: the loss and its closed-form gradients, fast (clauses LOSS-1, LOSS-2, GRAD-1, GRAD-2, SCALE-2).

The same function as :func:`infonce_spec.reference.normative.loss_and_grad`, computed for speed
and bounded memory; it agrees with it to rounding (the oracle families of ``tests/`` run on both).
For every chunk of query rows: build the logit blocks (:mod:`.rows`), take their softmax
(:mod:`.partition`), subtract the one-hot of the positive, and chain ``dL/dlogits`` through the
similarity by matrix products (:mod:`.products`): a piece ``Z = scale * A B^T`` sends
``scale * G B`` to its row vectors ``A`` and ``scale * G^T A`` to its column vectors ``B``.
Gradients with respect to the unit rows ``u`` are finally pulled back through the normalisation
(GRAD-3, :mod:`.pullback`). No autodiff is involved; peak memory is ``O(threads x chunk x
candidates)`` (plus the ``O(K N D)`` gradients and, while they fit in ``HELD_ELEMENTS``, the N x N
square products). The chunks run on ``threads`` workers (:mod:`.threads`). The working arrays come
from the workspace, which keeps up to ``WORKSPACE_BYTES`` of them for the next call
(:mod:`.workspace`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..config import Config
from ..layout import as_batch
from ..result import Result
from ..similarity import norms
from .partition import UNSHIFTED_BOUND, partition
from .products import SIDES, ProductMode, Products, WorkerSums
from .pullback import pull_into, unit_rows_and_norms
from .rows import PIECES, positive_logits, row_blocks
from .threads import blas_threads, map_chunks, resolve_threads, row_steps, split
from .workspace import Workspace

__all__ = ["CHUNK_ELEMENTS", "MIN_CHUNK_ROWS", "chunk_bounds", "loss_and_grad"]

#: Target number of logits per chunk; the chunk holds ``CHUNK_ELEMENTS // candidates`` rows ...
CHUNK_ELEMENTS = 1 << 23
#: ... but never fewer than this many rows (unless N is smaller): with a handful of rows each matrix
#: product re-reads all K*N candidate vectors for little work, and the loop becomes memory-bound.
#: Peak memory stays O(chunk x candidates): 128 x 294912 float64 logits (N = 16384, K = 8) are 302 MB.
MIN_CHUNK_ROWS = 128


def _pieces(config: Config) -> list[tuple[str, str]]:
    return [piece for direction in config.selected_directions for piece in PIECES[direction]]


def _chunk_rows(config: Config, n: int, k: int, chunk_size: int | None) -> int:
    if chunk_size is None:
        widths = {"q": n, "d0": n, "dh": (k - 1) * n}
        candidates = sum(widths[col_side] for _, col_side in _pieces(config))
        chunk_size = max(MIN_CHUNK_ROWS, CHUNK_ELEMENTS // candidates)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    return min(chunk_size, n)


def _logit_bound(xp: Any, config: Config, u_q: Any, u_d: Any) -> float:
    """A bound on ``|logit|``: ``|scale * s + h| <= (scale + alpha) |s|`` (HARD-2), with ``|s| <= 1``
    for cos and ``|s| <= (max ||u||)^2`` over the queries and documents for dot."""
    strength = config.hardness_strength if config.hardness_active else 0.0
    if config.similarity == "cos":
        return config.scale + strength
    largest = max(float(xp.max(norms(xp, u))) if int(u.shape[0]) else 0.0 for u in (u_q, u_d))
    return (config.scale + strength) * largest * largest


def chunk_bounds(
    config: Config, n: int, k: int, *, chunk_size: int | None = None, threads: int = 1
) -> list[tuple[int, int]]:
    """The row chunks ``(start, stop)`` of N queries with K documents each on ``threads`` workers:
    at most ``chunk_size`` rows (default: :data:`CHUNK_ELEMENTS` logits, at least
    :data:`MIN_CHUNK_ROWS` rows), as even as possible, their number a multiple of ``threads`` where
    there are enough rows (so that no worker waits for the last one)."""
    count = -(-n // _chunk_rows(config, n, k, chunk_size))
    return split(n, -(-count // threads) * threads)


def loss_and_grad(
    queries: Any,
    docs: Any,
    config: Config,
    *,
    chunk_size: int | None = None,
    products: ProductMode = "auto",
    threads: int | None = None,
) -> Result:
    """L, the per-query losses and every gradient, exactly, for ``queries`` (N, D) and ``docs`` (K, N, D).

    The engine's knobs only change speed and memory use, never the result beyond rounding:

    * ``chunk_size``: rows per chunk (default: :data:`CHUNK_ELEMENTS` logits, at least
      :data:`MIN_CHUNK_ROWS` rows; :func:`chunk_bounds`);
    * ``products``: ``"held"`` or ``"streamed"`` square products (:mod:`.products`; ``"auto"`` picks
      by size);
    * ``threads``: the number of cores to use -- chunks run on that many worker threads, each
      calling BLAS single-threaded (:mod:`.threads`). ``None`` (the default) uses as many as numpy's
      BLAS would (``OPENBLAS_NUM_THREADS`` and the like, or threadpoolctl's ``threadpool_limits``
      around the call); each chunk in flight holds its own logits, so memory grows with it. For a
      given ``threads`` a call gives the same numbers at every run.
    """
    if not isinstance(config, Config):
        raise TypeError(f"config must be an infonce_spec.reference.Config, got {type(config).__name__}")
    batch = as_batch(queries, docs)
    xp, n, k, d = batch.xp, batch.n, batch.k, batch.d
    sim = config.similarity
    q = batch.queries
    doc_rows = xp.reshape(batch.docs, (k * n, d))
    workers = resolve_threads(threads)
    bounds = chunk_bounds(config, n, k, chunk_size=chunk_size, threads=workers)

    def map_rows(work: Callable[[int, int], Any], count: int) -> list[Any]:
        return map_chunks(work, split(count, workers), workers)

    with blas_threads(workers), Workspace(xp) as workspace:
        (u_q, norm_q), (u_d, norm_d) = unit_rows_and_norms(xp, [q, doc_rows], sim, map_rows)
        shift = _logit_bound(xp, config, u_q, u_d) > UNSHIFTED_BOUND
        sims = Products(
            xp, u_q, u_d, config.scale, set(_pieces(config)), products, map_rows, workers, workspace
        )
        d0 = sims.vectors["d0"]

        def chunk(start: int, stop: int, worker: WorkerSums) -> tuple[Any, Any, float]:
            # The positive logit p_g = scale * s(q_g, d[0, g]) (QD-2) and its one-hot term of
            # dL/dlogits, with which the chunk starts its rows of the row gradients (they hold
            # dL/du / scale); the chunk's log-partitions, positives and part of dL/dscale.
            rows = slice(start, stop)
            sims.grad["q"][rows, :] = -(d0[rows, :] / n)
            sims.grad["d0"][rows, :] = -(u_q[rows, :] / n)
            grad_scale = -float(xp.sum(u_q[rows, :] * d0[rows, :])) / n
            logits, blocks = row_blocks(xp, sims, start, stop, config, worker)
            positives = positive_logits(xp, blocks[0], start)
            # logits -> dL/dlogits (the streamed pieces' row factors apart)
            log_z, factors = partition(xp, blocks, config.partition_groups, n, positives, shift)
            del blocks  # the chunk's logits are freed as they are sent back
            return log_z, positives, grad_scale + sims.backward(logits, factors, worker)

        def run(
            chunks: list[tuple[int, int]], worker: WorkerSums
        ) -> tuple[WorkerSums, list[tuple[Any, Any, float]]]:
            """One worker's run of chunks, in row order, with its own sums and arrays."""
            try:
                return worker, [chunk(start, stop, worker) for start, stop in chunks]
            finally:
                worker.release()

        runs = map_chunks(
            run,
            [
                (bounds[a:b], sims.worker(max(stop - start for start, stop in bounds[a:b])))
                for a, b in split(len(bounds), workers)
            ],
            workers,
        )
        parts = [part for _, results in runs for part in results]
        # dL/dscale: the chunks' parts in row order, then the held products'.
        grad_scale = sum(part[2] for part in parts) + sims.finish([worker for worker, _ in runs])
        # GRAD-3, by row blocks (each in steps that stay in cache): dL/du pulled back to the inputs.
        # For cos the unit rows are fresh arrays that nothing reads after their own rows' step, so
        # each step's dL/dx is formed in a small scratch array and written over them (no new
        # (K N, D) array to clear); for dot they are the inputs themselves.
        in_place = norm_q is not None
        grad_q = u_q if in_place else xp.empty_like(q)
        grad_d = u_d if in_place else xp.empty_like(doc_rows)
        targets = {
            "q": (grad_q, u_q, norm_q, 0),
            "d0": (grad_d, u_d, norm_d, 0),
            "dh": (grad_d, u_d, norm_d, n),
        }

        def pull(side: str, start: int, stop: int) -> None:
            out, u, norm, first = targets[side]
            scratch = None
            for a, b in row_steps(start, stop, d):
                rows = slice(first + a, first + b)
                g_rows, g_cols = sims.unit_gradient(side, a, b)
                row_norms = None if norm is None else norm[rows, :]
                if not in_place:
                    pull_into(xp, out[rows, :], g_rows, g_cols, config.scale, u[rows, :], row_norms)
                    continue
                if scratch is None:
                    scratch = workspace.empty((b - a, d), q)
                pull_into(xp, scratch[: b - a, :], g_rows, g_cols, config.scale, u[rows, :], row_norms)
                out[rows, :] = scratch[: b - a, :]

        ranges = [(side, start, stop) for side in SIDES for start, stop in split(sims.width(side), workers)]
        map_chunks(pull, [r for r in ranges if r[2] > r[1]], workers)

    per_query = xp.concat([part[0] for part in parts]) - xp.concat([part[1] for part in parts])
    return Result(
        loss=float(xp.mean(per_query)),
        per_query_loss=per_query,
        grad_queries=grad_q,
        grad_docs=xp.reshape(grad_d, (k, n, d)),
        grad_scale=grad_scale,
    )
