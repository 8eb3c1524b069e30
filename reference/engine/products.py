"""The similarity products behind the logits, and their backward (clauses SCALE-1, SCALE-2, GRAD-1).

Every logit is ``scale * u(a) . u(b)`` (before hardness, HARD-2) for a row vector ``a`` and a
column vector ``b`` drawn from three *sides*:

* ``q``: the queries ``u(q_j)``, N vectors;
* ``d0``: the positives ``u(d[0, j])``, N vectors;
* ``dh``: the hard negatives ``u(d[k, j])``, ``k >= 1``, (K-1) N vectors in the order ``(k-1) N + j``.

A *piece* is the logits of rows ``start .. stop-1`` of one row side against every vector of one
column side (:mod:`.rows` says which pieces make up which direction). Its gradient
``G = dL/dlogits`` goes back as ``scale * G B`` to the row vectors and ``scale * G^T A`` to the
column vectors (GRAD-1); ``dL/dscale = sum G * s`` (SCALE-2). The column gradients are collected
transposed, ``A^T G`` (D x columns), which BLAS computes faster than ``G^T A`` for these shapes.

The *square* pieces (column side ``q`` or ``d0``, N columns) are obtained one of two ways:

* ``streamed``: each chunk multiplies its own rows, so memory stays ``O(chunk x candidates)``;
* ``held``: the N x N products ``q q^T``, ``q d0^T`` and ``d0 d0^T`` are formed once and their
  gradients collected whole, then sent back in one product each at the end. ``q d0^T`` serves
  query_to_doc's rows and, transposed, doc_to_query's, and a symmetric product ``a a^T`` returns
  ``(G + G^T) a`` in a single product, so each similarity is computed once and back-propagated
  once. Chosen automatically while these matrices fit in :data:`HELD_ELEMENTS`. They are read
  transposed, so their rows are padded (:mod:`.padding`).

The hard-negative pieces are always streamed. Both ways give the same result up to rounding.

A chunk's pieces are arrays the partition overwrites with their gradients in place
(:class:`ChunkLogits`), so that the backward reads them where the forward wrote them: the streamed
pieces that share a column side are the row blocks of one product (the row vectors of the chunk
stacked: one matrix product forward, one back to the rows and one to the columns), and a held
piece is the chunk's own rows of a held product (or of its transpose), which nothing else reads
once the chunks run.

Each worker of the pool (:mod:`.threads`) takes a fixed run of consecutive chunks and adds their
column gradients to sums of its own (:class:`WorkerSums`); the workers' sums are added in worker
order at the end (:meth:`Products.unit_gradient`), so a call gives the same bits at every run for
a given number of workers, and no chunk waits for another.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .inplace import add_into, matmul_into
from .padding import Padded, padded
from .threads import MapRows, in_one_block, split
from .workspace import Workspace

__all__ = ["HELD_ELEMENTS", "PRODUCT_MODES", "SIDES", "ChunkLogits", "Products", "WorkerSums"]

#: The three sides, in the order that names a pair of them (``("q", "d0")`` for q d0^T and d0 q^T).
SIDES: tuple[str, ...] = ("q", "d0", "dh")
#: ``auto`` holds the square products (and their gradients) whole while they need at most this
#: many float64 numbers (128 MiB), and streams them by chunk beyond.
HELD_ELEMENTS = 1 << 24
ProductMode = Literal["auto", "held", "streamed"]
PRODUCT_MODES: tuple[ProductMode, ...] = ("auto", "held", "streamed")


def _pair(row_side: str, col_side: str) -> tuple[tuple[str, str], bool]:
    """The pair ``(a, b)`` (sides in :data:`SIDES` order) whose product ``a b^T`` holds the piece,
    and whether the piece is that product transposed."""
    if SIDES.index(row_side) <= SIDES.index(col_side):
        return (row_side, col_side), False
    return (col_side, row_side), True


@dataclass
class _Held:
    """A square product ``scale * a b^T`` held whole, as the logits of the pieces that are its rows
    and then their gradient: ``grad`` is formed before the chunks run, and each chunk overwrites its
    own rows with their gradient. ``grad_of_transpose``, for the pieces that are the rows of
    ``b a^T`` (doc_to_query's of ``q d0^T``), is its transpose, copied before any chunk runs and
    kept apart, so that each chunk writes only its own rows. Both are padded (:mod:`.padding`)."""

    grad: Padded
    grad_of_transpose: Padded | None


@dataclass
class _Stack:
    """The streamed pieces of a chunk against one column side: ``logits = (scale * rows) @ cols^T``
    for the chunk's row vectors of ``row_sides`` stacked in ``rows``."""

    col_side: str
    row_sides: list[str]
    rows: Any
    logits: Any


@dataclass
class ChunkLogits:
    """The pieces of rows ``start .. stop-1``: ``logits[(row_side, col_side)]``, each written over by
    its ``dL/dlogits / scale`` (in place) before :meth:`Products.backward`; ``flat[piece]`` is the
    same rows as one flat view and the stride of its rows (:meth:`.padding.Padded.flat_rows`), for
    the masks of :mod:`.rows`."""

    start: int
    stop: int
    logits: dict[tuple[str, str], Any]
    flat: dict[tuple[str, str], tuple[Any, int]]
    stacks: list[_Stack]

    @property
    def streamed(self) -> set[tuple[str, str]]:
        """The pieces that are rows of the chunk's own products (the others are held rows)."""
        return {(row_side, stack.col_side) for stack in self.stacks for row_side in stack.row_sides}


def _held_elements(square: set[tuple[str, str]], transposed: set[tuple[str, str]], n: int) -> int:
    """float64 numbers held: the product of each pair, plus its transpose where a piece is its rows."""
    return n * n * sum(1 + ((a, b) in transposed) for a, b in square)


class WorkerSums:
    """What one worker keeps across its run of chunks: the sums of their column gradients,
    transposed (``grad_t[col_side]``, D x vectors, padded, added to in the order of its chunks; made by
    :meth:`Products.worker` in the calling thread, as they outlive the run), and the arrays its
    chunks write into -- the logits of the streamed pieces against each column side and, from the
    second chunk on, the column product to add -- taken from the call's workspace by the first
    chunk that needs them and reused by the next, so that a run takes them once (at large N each is
    hundreds of MB, which the allocator would otherwise map and clear afresh for every chunk)."""

    def __init__(self, grad_t: dict[str, Any], rows: int, workspace: Workspace) -> None:
        self.grad_t = grad_t
        self.workspace = workspace
        #: The most rows of any chunk of the run.
        self.rows = rows
        self._started: set[str] = set()
        self._logits: dict[str, Any] = {}
        self._columns: dict[str, Any] = {}

    def logits(self, xp: Any, col_side: str, sides: int, rows: int, columns: Any) -> Any:
        """The array of a chunk's logits of ``sides`` row sides of ``rows`` rows each (stacked)
        against ``columns``, the vectors of ``col_side``."""
        if col_side not in self._logits:
            shape = (sides * self.rows, int(columns.shape[0]))
            self._logits[col_side] = self.workspace.empty(shape, columns)
        return self._logits[col_side][: sides * rows, :]

    def release(self) -> None:
        """Let go of the chunk arrays (the run is over; the sums stay; the workspace keeps the
        arrays until the call ends)."""
        self._logits.clear()
        self._columns.clear()

    def add_columns(self, xp: Any, col_side: str, rows_t: Any, g: Any) -> None:
        """``grad_t[col_side] += rows_t @ g`` (the first chunk's product is written there)."""
        total = self.grad_t[col_side]
        if col_side not in self._started:
            matmul_into(xp, rows_t, g, total)
            self._started.add(col_side)
            return
        if col_side not in self._columns:
            self._columns[col_side] = self.workspace.empty(tuple(total.shape), total)
        matmul_into(xp, rows_t, g, self._columns[col_side])
        total += self._columns[col_side]


class Products:
    """The pieces' logits and the accumulation of their gradients for one call of the loss.

    ``pieces`` is every ``(row_side, col_side)`` that the configuration needs; ``mode`` one of
    :data:`PRODUCT_MODES`. The gradient accumulators hold ``dL/du / scale`` until :meth:`finish`.
    Chunks may run on several threads at once (:mod:`.threads`), each worker with its own
    :class:`WorkerSums`.
    """

    def __init__(
        self,
        xp: Any,
        u_q: Any,
        u_d: Any,
        scale: float,
        pieces: set[tuple[str, str]],
        mode: str,
        map_rows: MapRows = in_one_block,
        parts: int = 1,
        workspace: Workspace | None = None,
    ) -> None:
        if mode not in PRODUCT_MODES:
            raise ValueError(f"products must be one of {PRODUCT_MODES}, got {mode!r}")
        n = int(u_q.shape[0])
        self.xp = xp
        self.scale = scale
        self.vectors = {"q": u_q, "d0": u_d[:n, :], "dh": u_d[n:, :]}
        #: Where the working arrays come from (:mod:`.workspace`; by default new arrays, kept by nobody).
        self.workspace = Workspace(xp) if workspace is None else workspace
        #: dL/du / scale of each row side (hard negatives never are one, ROW-1) from its pieces:
        #: each chunk writes its rows first (the positive's one-hot term, :mod:`.loss`) ...
        self.grad = {side: self.workspace.empty(tuple(self.vectors[side].shape), u_q) for side in ("q", "d0")}
        #: ... and, transposed (D x vectors), of each side from the pieces it is the column side of:
        #: the parts to add, one per worker that has one and one from the held products
        #: (:meth:`finish`; a side that is no piece's columns has none).
        self.grad_t: dict[str, list[Any]] = {}
        square = {_pair(row, col)[0] for row, col in pieces if col != "dh"}
        transposed = {_pair(row, col)[0] for row, col in pieces if col != "dh" and _pair(row, col)[1]}
        #: Whether the square products are held whole (else streamed by chunk).
        self.hold = mode == "held" or (
            mode == "auto" and _held_elements(square, transposed, n) <= HELD_ELEMENTS
        )
        self._map_rows = map_rows
        #: The column sides of the streamed pieces (the hard negatives', and the square ones' unless held).
        self._streamed_columns = {col for row, col in pieces if col == "dh" or not self.hold}
        # A held q d0^T is formed in its rows' gradient array: its rows are always a piece
        # (query_to_doc's positives; query_to_doc is always selected, DIR-1), which every chunk
        # overwrites with their gradient.
        self._held = {
            pair: _Held(
                padded(self.workspace, n, n, u_q),
                padded(self.workspace, n, n, u_q) if pair in transposed else None,
            )
            for pair in (sorted(square) if self.hold else ())
        }
        if self._held:
            # All held products in two passes over the pool, in blocks of equal work: block i of each
            # symmetric product's upper triangle and of the others' rows; then the lower triangles
            # and the transposes. Two blocks a worker, at least four (N = 1024 on one thread: 7.7 ms
            # in four, 8.7 in two).
            plan = _symmetric_plan(n, 2 * max(2, parts))
            rows = split(n, len(plan))

            def upper(first: int, last: int) -> None:
                for pair, held in self._held.items():
                    a, b = self.vectors[pair[0]], self.vectors[pair[1]]
                    for block in range(first, last):
                        if pair[0] == pair[1]:
                            _upper_part(xp, a, scale, held.grad.matrix, plan[block])
                        else:
                            _scaled_product_rows(xp, a, b, scale, held.grad.matrix, *rows[block])

            def lower(start: int, stop: int) -> None:
                for pair, held in self._held.items():
                    if pair[0] == pair[1]:
                        _lower_rows(xp, held.grad.matrix, plan, start, stop)
                    elif held.grad_of_transpose is not None:
                        held.grad_of_transpose.matrix[start:stop, :] = held.grad.matrix[:, start:stop].T

            map_rows(upper, len(plan))
            if any(a == b or held.grad_of_transpose is not None for (a, b), held in self._held.items()):
                map_rows(lower, n)

    def worker(self, rows: int) -> WorkerSums:
        """A worker for a run of chunks of at most ``rows`` rows, with its column sums: one (D x
        vectors) array for each side that a streamed piece has as its columns, made here, in the
        calling thread (its first chunk writes it whole)."""
        like = self.vectors["q"]
        d = int(like.shape[1])
        return WorkerSums(
            {
                side: padded(self.workspace, d, self.width(side), like).matrix
                for side in sorted(self._streamed_columns)
            },
            rows,
            self.workspace,
        )

    def width(self, side: str) -> int:
        """The number of vectors of a side (the columns of a piece against it)."""
        return int(self.vectors[side].shape[0])

    def forward(
        self, start: int, stop: int, pieces: list[tuple[str, str]], worker: WorkerSums | None = None
    ) -> ChunkLogits:
        """``scale * a . b`` for rows ``start .. stop-1`` of each piece's row side against all of its
        column side, in arrays that belong to this chunk alone while it runs (the caller overwrites
        them); ``worker`` takes the column gradients of its streamed pieces in :meth:`backward`."""
        worker = self.worker(stop - start) if worker is None else worker
        logits: dict[tuple[str, str], Any] = {}
        flat: dict[tuple[str, str], tuple[Any, int]] = {}
        streamed: dict[str, list[str]] = {}
        for row_side, col_side in pieces:
            pair, transposed = _pair(row_side, col_side)
            held = self._held.get(pair)
            if held is None:
                streamed.setdefault(col_side, []).append(row_side)
                continue
            rows_of = held.grad_of_transpose if transposed else held.grad
            assert rows_of is not None
            logits[(row_side, col_side)] = rows_of.matrix[start:stop, :]
            flat[(row_side, col_side)] = (rows_of.flat_rows(start, stop), rows_of.stride)
        stacks = []
        rows = stop - start
        for col_side, row_sides in streamed.items():
            vectors = [self.vectors[row_side][start:stop, :] for row_side in row_sides]
            stacked = vectors[0] if len(vectors) == 1 else self.xp.concat(vectors, axis=0)
            columns = self.vectors[col_side]
            product = worker.logits(self.xp, col_side, len(row_sides), rows, columns)
            # SCALE-1: the row vectors are scaled before the product ((rows x D) multiplications
            # instead of (rows x candidates)).
            matmul_into(self.xp, self.scale * stacked, columns.T, product)
            stacks.append(_Stack(col_side, row_sides, stacked, product))
            for i, row_side in enumerate(row_sides):
                piece = product[i * rows : (i + 1) * rows, :]
                logits[(row_side, col_side)] = piece
                flat[(row_side, col_side)] = (self.xp.reshape(piece, (-1,)), int(columns.shape[0]))
        return ChunkLogits(start, stop, logits, flat, stacks)

    def backward(self, chunk: ChunkLogits, factors: dict[tuple[str, str], Any], worker: WorkerSums) -> float:
        """Take ``G = dL/dlogits`` of a chunk's pieces, written over their logits (without the factor
        ``scale``: see the class), and return the chunk's part of ``dL/dscale``. Held pieces are
        their gradients already; streamed ones are sent back now -- to the rows, and added to
        ``worker``'s column sums -- each as ``G = diag(f) E`` with ``f = factors[piece]`` (rows, 1):
        ``G B = f * (E B)`` and ``A^T G = (f * A)^T E``, so ``f`` scales (rows x D) numbers instead
        of (rows x columns)."""
        start, stop = chunk.start, chunk.stop
        grad_scale = 0.0
        for stack in chunk.stacks:
            f = [factors[(row_side, stack.col_side)] for row_side in stack.row_sides]
            f = f[0] if len(f) == 1 else self.xp.concat(f, axis=0)
            g_rows = f * (stack.logits @ self.vectors[stack.col_side])
            for i, row_side in enumerate(stack.row_sides):
                self.grad[row_side][start:stop, :] += g_rows[i * (stop - start) : (i + 1) * (stop - start), :]
            # SCALE-2: sum G * s = sum_r a_r . (G b)_r; HARD-5: the stop-gradient penalty adds nothing.
            grad_scale += float(self.xp.sum(g_rows * stack.rows))
            worker.add_columns(self.xp, stack.col_side, (f * stack.rows).T, stack.logits)
        chunk.logits.clear()
        chunk.flat.clear()
        chunk.stacks.clear()
        return grad_scale

    def finish(self, workers: list[WorkerSums]) -> float:
        """Collect the workers' column sums (in worker order), send the held pairs' gradients back
        once every chunk is in, and return the held pairs' part of ``dL/dscale``;
        :meth:`unit_gradient` then reads ``dL/du``. By row blocks (on the pool, :mod:`.threads`):
        ``G b`` and ``G^T a`` for ``a != b`` (``G`` with its transpose's gradient added), and
        ``(G + G^T) a`` for a symmetric product ``a a^T`` (whose ``sum G * s`` is half of
        ``sum a * (G + G^T) a``).
        """
        for worker in workers:
            for side, part in worker.grad_t.items():
                self.grad_t.setdefault(side, []).append(part)
        held = list(self._held.items())
        self._held.clear()
        if not held:
            return 0.0
        n = self.width("q")

        def rows_back(start: int, stop: int) -> float:
            scratch: list[Any] = []
            return sum(self._send_rows_back(pair, product, start, stop, scratch) for pair, product in held)

        grad_scale = sum(self._map_rows(rows_back, n))
        columns = [(pair, product) for pair, product in held if pair[0] != pair[1]]
        for pair, _ in columns:
            parts = self.grad_t.setdefault(pair[1], [])
            if not parts:
                like = self.vectors[pair[1]]
                parts.append(padded(self.workspace, int(like.shape[1]), n, like, zeros=True).matrix)

        def columns_back(start: int, stop: int) -> None:
            for pair, product in columns:
                self._send_columns_back(pair, product, start, stop)

        if columns:
            self._map_rows(columns_back, n)
        return grad_scale

    def _send_rows_back(
        self, pair: tuple[str, str], held: _Held, start: int, stop: int, scratch: list[Any]
    ) -> float:
        """Rows ``start .. stop-1`` of a held pair's ``dL/du(a)`` (``G b``, or ``(G + G^T) a``, formed in
        ``scratch[0]``, made by the first symmetric pair of the block); their part of ``dL/dscale``."""
        a_side, b_side = pair
        a = self.vectors[a_side][start:stop, :]
        grad = held.grad.matrix
        if a_side == b_side:
            if not scratch:
                scratch.append(self.workspace.empty((stop - start, int(grad.shape[1])), grad))
            add_into(self.xp, grad[start:stop, :], grad[:, start:stop].T, scratch[0])
            g_a = scratch[0] @ self.vectors[a_side]
            share = 0.5
        else:
            g = grad[start:stop, :]
            if held.grad_of_transpose is not None:
                g += held.grad_of_transpose.matrix[:, start:stop].T  # these rows are this block's own
            g_a = g @ self.vectors[b_side]
            share = 1.0
        self.grad[a_side][start:stop, :] += g_a
        return share * float(self.xp.sum(g_a * a))

    def _send_columns_back(self, pair: tuple[str, str], held: _Held, start: int, stop: int) -> None:
        """Columns ``start .. stop-1`` of ``G^T a`` for a held pair ``a b^T`` with ``a != b`` (after
        :meth:`_send_rows_back` has completed ``G``), transposed: ``a^T G``, added to the first part
        of ``b``'s column gradient."""
        a_side, b_side = pair
        self.grad_t[b_side][0][:, start:stop] += self.vectors[a_side].T @ held.grad.matrix[:, start:stop]

    def unit_gradient(self, side: str, start: int, stop: int) -> tuple[Any | None, Any | None]:
        """``dL/du / scale`` of vectors ``start .. stop-1`` of a side (after :meth:`finish`), as the
        sum of its two parts: from the pieces with these rows (rows x D) and, transposed (D x rows),
        from the pieces with these columns, its parts added into the first in their order
        (``None`` for a part the side does not have). Each range of vectors is read once."""
        rows, parts = self.grad.get(side), self.grad_t.get(side)
        if not parts:
            return (None if rows is None else rows[start:stop, :]), None
        cols = parts[0][:, start:stop]
        for part in parts[1:]:
            cols += part[:, start:stop]
        return (None if rows is None else rows[start:stop, :]), cols


def _scaled_product_rows(xp: Any, a: Any, b: Any, scale: float, out: Any, start: int, stop: int) -> None:
    """Rows ``start .. stop-1`` of ``out = scale * a b^T``."""
    rows = out[start:stop, :]
    matmul_into(xp, a[start:stop, :], b.T, rows)
    rows *= scale


#: One part of the work of a symmetric product ``a a^T`` (:func:`_symmetric_plan`): its diagonal
#: block's rows ``(s, e)`` and the off-diagonal pieces ``(s, e, c0, c1)`` of the upper triangle.
SymmetricPart = tuple[tuple[int, int], list[tuple[int, int, int, int]]]


def _symmetric_plan(n: int, parts: int) -> list[SymmetricPart]:
    """The upper triangle of an N x N symmetric product in ``parts`` parts of equal work: part ``i``
    has the diagonal block of the ``i``-th of ``parts`` equal row blocks (a symmetric rank-k
    update) and an equal share of the off-diagonal blocks right of the diagonal (matrix products;
    the blocks one after another, cut by columns where a share ends)."""
    blocks = split(n, parts)
    pieces = [(s, e, e, n) for s, e in blocks if e < n]
    total = sum((e - s) * (c1 - c0) for s, e, c0, c1 in pieces)
    cuts = [total * i // len(blocks) for i in range(len(blocks) + 1)]
    plan: list[SymmetricPart] = []
    for i, diagonal in enumerate(blocks):
        share, done = [], 0
        for s, e, c0, c1 in pieces:
            low, high = max(cuts[i], done), min(cuts[i + 1], done + (e - s) * (c1 - c0))
            first, last = c0 + (low - done) // (e - s), c0 + (high - done) // (e - s)
            if high > low and last > first:
                share.append((s, e, first, last))
            done += (e - s) * (c1 - c0)
        plan.append((diagonal, share))
    return plan


def _upper_part(xp: Any, a: Any, scale: float, out: Any, part: SymmetricPart) -> None:
    """One part of ``out = scale * a a^T``'s upper triangle (:func:`_symmetric_plan`): the diagonal
    block by a symmetric rank-k update (half the multiply-adds; numpy's ``a @ a.T``), the pieces
    right of the diagonal by matrix products."""
    (s, e), share = part
    if e - s == int(a.shape[0]):
        matmul_into(xp, a, a.T, out)
    else:
        out[s:e, s:e] = a[s:e, :] @ a[s:e, :].T
    out[s:e, s:e] *= scale
    for s, e, c0, c1 in share:
        block = out[s:e, c0:c1]
        matmul_into(xp, a[s:e, :], a[c0:c1, :].T, block)
        block *= scale


def _lower_rows(xp: Any, out: Any, plan: list[SymmetricPart], start: int, stop: int) -> None:
    """Rows ``start .. stop-1`` of ``out`` left of their diagonal block, copied from the upper
    triangle (:func:`_upper_part` has written it): ``out[r, :s] = out[:s, r]`` for ``r`` in the
    diagonal block ``[s, e)``."""
    for (s, e), _ in plan:
        low, high = max(start, s), min(stop, e)
        if s > 0 and high > low:
            out[low:high, :s] = out[:s, low:high].T
