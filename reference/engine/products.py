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
  once. Chosen automatically while these matrices fit in :data:`HELD_ELEMENTS`.

The hard-negative pieces are always streamed. Both ways give the same result up to rounding.

A chunk's pieces are arrays the partition overwrites with their gradients in place
(:class:`ChunkLogits`), so that the backward reads them where the forward wrote them: the streamed
pieces that share a column side are the row blocks of one product (the row vectors of the chunk
stacked: one matrix product forward, one back to the rows and one to the columns), and a held
piece is the chunk's own rows of a held gradient (the rows of a symmetric product itself, which
nothing else reads).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import array_api_compat

from .inplace import matmul_into

__all__ = ["HELD_ELEMENTS", "PRODUCT_MODES", "SIDES", "ChunkLogits", "Products"]

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
    """A square product ``scale * a b^T`` held whole, and the gradients of its pieces: ``grad`` for
    the pieces that are its rows, ``grad_of_transpose`` for those that are the rows of ``b a^T``
    (kept apart so that each chunk writes only its own rows). A symmetric product is its own
    ``grad``: each chunk turns its rows into their gradient."""

    product: Any
    grad: Any
    grad_of_transpose: Any | None


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
    its ``dL/dlogits / scale`` (in place) before :meth:`Products.backward`."""

    start: int
    stop: int
    logits: dict[tuple[str, str], Any]
    stacks: list[_Stack]

    @property
    def streamed(self) -> set[tuple[str, str]]:
        """The pieces that are rows of the chunk's own products (the others are held rows)."""
        return {(row_side, stack.col_side) for stack in self.stacks for row_side in stack.row_sides}


class _InRowOrder:
    """The chunks' additions to the sums they share, in the order of their rows whatever order the
    threads reach them in, so that a call's result is the same at every run (rounding included)."""

    def __init__(self) -> None:
        self._turn = threading.Condition()
        self._next_row = 0

    def add(self, start: int, stop: int, add: Callable[[], None] | None) -> None:
        """Wait for the chunks before row ``start``, then run ``add`` (if any) and let the next one go.
        A chunk that comes again after its turn (from :meth:`Products.skip`) does nothing."""
        with self._turn:
            self._turn.wait_for(lambda: self._next_row >= start)
            if self._next_row != start:
                return
            try:
                if add is not None:
                    add()
            finally:
                self._next_row = stop
                self._turn.notify_all()


def _held_elements(square: set[tuple[str, str]], transposed: set[tuple[str, str]], n: int) -> int:
    """float64 numbers held: the product of each pair, plus its gradients where it is not symmetric."""
    return n * n * sum(1 if a == b else 2 + ((a, b) in transposed) for a, b in square)


#: ``map_rows(work, count)`` runs ``work(start, stop)`` over row ranges that cover ``0 .. count-1``
#: and returns the results in order (:mod:`.threads` runs them on the pool).
MapRows = Callable[[Callable[[int, int], Any], int], list[Any]]


def _in_one_block(work: Callable[[int, int], Any], count: int) -> list[Any]:
    return [work(0, count)]


class Products:
    """The pieces' logits and the accumulation of their gradients for one call of the loss.

    ``pieces`` is every ``(row_side, col_side)`` that the configuration needs; ``mode`` one of
    :data:`PRODUCT_MODES`. The gradient accumulators hold ``dL/du / scale`` until :meth:`finish`.
    Chunks may run on several threads at once (:mod:`.threads`).
    """

    def __init__(
        self,
        xp: Any,
        u_q: Any,
        u_d: Any,
        scale: float,
        pieces: set[tuple[str, str]],
        mode: str,
        map_rows: MapRows = _in_one_block,
    ) -> None:
        if mode not in PRODUCT_MODES:
            raise ValueError(f"products must be one of {PRODUCT_MODES}, got {mode!r}")
        n = int(u_q.shape[0])
        self.xp = xp
        self.scale = scale
        self.vectors = {"q": u_q, "d0": u_d[:n, :], "dh": u_d[n:, :]}
        #: dL/du / scale of each row side (hard negatives never are one, ROW-1) from its pieces ...
        self.grad = {side: xp.zeros_like(self.vectors[side]) for side in ("q", "d0")}
        #: ... and, transposed (D x vectors), of each side from the pieces it is the column side of
        #: (made by the first piece that has one: a side that is no piece's columns has none).
        self.grad_t: dict[str, Any] = {}
        self.grad_scale = 0.0
        #: The sums that every chunk adds to (``grad_t``, ``grad_scale``) take the chunks in row
        #: order; the rows of ``grad`` and of the held gradients are each chunk's own.
        self._in_order = _InRowOrder()
        square = {_pair(row, col)[0] for row, col in pieces if col != "dh"}
        transposed = {_pair(row, col)[0] for row, col in pieces if col != "dh" and _pair(row, col)[1]}
        #: Whether the square products are held whole (else streamed by chunk).
        self.hold = mode == "held" or (
            mode == "auto" and _held_elements(square, transposed, n) <= HELD_ELEMENTS
        )
        self._map_rows = map_rows
        self._held: dict[tuple[str, str], _Held] = {}
        for a_side, b_side in sorted(square) if self.hold else ():
            a, b = self.vectors[a_side], self.vectors[b_side]
            product = xp.empty((n, n), dtype=a.dtype, device=array_api_compat.device(a))
            map_rows(partial(_scaled_product_rows, xp, a, b, scale, product), n)
            if a_side == b_side:
                self._held[(a_side, b_side)] = _Held(product, product, None)
            else:
                of_transpose = xp.zeros_like(product) if (a_side, b_side) in transposed else None
                self._held[(a_side, b_side)] = _Held(product, xp.zeros_like(product), of_transpose)

    def width(self, side: str) -> int:
        """The number of vectors of a side (the columns of a piece against it)."""
        return int(self.vectors[side].shape[0])

    def forward(self, start: int, stop: int, pieces: list[tuple[str, str]]) -> ChunkLogits:
        """``scale * a . b`` for rows ``start .. stop-1`` of each piece's row side against all of its
        column side, in arrays that belong to this chunk alone (the caller overwrites them)."""
        logits: dict[tuple[str, str], Any] = {}
        streamed: dict[str, list[str]] = {}
        for row_side, col_side in pieces:
            pair, transposed = _pair(row_side, col_side)
            held = self._held.get(pair)
            if held is None:
                streamed.setdefault(col_side, []).append(row_side)
            elif held.grad is held.product:
                logits[(row_side, col_side)] = held.product[start:stop, :]
            else:
                own = (held.grad_of_transpose if transposed else held.grad)[start:stop, :]
                own[...] = held.product[:, start:stop].T if transposed else held.product[start:stop, :]
                logits[(row_side, col_side)] = own
        stacks = []
        rows = stop - start
        for col_side, row_sides in streamed.items():
            vectors = [self.vectors[row_side][start:stop, :] for row_side in row_sides]
            stacked = vectors[0] if len(vectors) == 1 else self.xp.concat(vectors, axis=0)
            # SCALE-1: the row vectors are scaled before the product ((rows x D) multiplications
            # instead of (rows x candidates)).
            product = (self.scale * stacked) @ self.vectors[col_side].T
            stacks.append(_Stack(col_side, row_sides, stacked, product))
            for i, row_side in enumerate(row_sides):
                logits[(row_side, col_side)] = product[i * rows : (i + 1) * rows, :]
        return ChunkLogits(start, stop, logits, stacks)

    def backward(self, chunk: ChunkLogits, factors: dict[tuple[str, str], Any]) -> None:
        """Take ``G = dL/dlogits`` of a chunk's pieces, written over their logits (without the factor
        ``scale``: see the class). Held pieces are their gradients already; streamed ones are sent
        back now, each as ``G = diag(f) E`` with ``f = factors[piece]`` (rows, 1): ``G B = f * (E B)``
        and ``A^T G = (f * A)^T E``, so ``f`` scales (rows x D) numbers instead of (rows x columns)."""
        start, stop = chunk.start, chunk.stop
        sums = []
        for stack in chunk.stacks:
            f = [factors[(row_side, stack.col_side)] for row_side in stack.row_sides]
            f = f[0] if len(f) == 1 else self.xp.concat(f, axis=0)
            g_rows = f * (stack.logits @ self.vectors[stack.col_side])
            for i, row_side in enumerate(stack.row_sides):
                self.grad[row_side][start:stop, :] += g_rows[i * (stop - start) : (i + 1) * (stop - start), :]
            # SCALE-2: sum G * s = sum_r a_r . (G b)_r; HARD-5: the stop-gradient penalty adds nothing.
            grad_scale = float(self.xp.sum(g_rows * stack.rows))
            sums.append((stack.col_side, grad_scale, (f * stack.rows).T @ stack.logits))
            stack.logits = None  # free before the wait for this chunk's turn
        chunk.logits.clear()

        def add() -> None:
            for col_side, grad_scale, g_cols in sums:
                self.grad_scale += grad_scale
                if col_side in self.grad_t:
                    self.grad_t[col_side] += g_cols
                else:
                    self.grad_t[col_side] = g_cols

        self._in_order.add(start, stop, add)

    def skip(self, start: int, stop: int) -> None:
        """Let the chunks after rows ``start .. stop-1`` add to the sums (this one failed)."""
        self._in_order.add(start, stop, None)

    def finish(self) -> float:
        """Send the held pairs' gradients back once every chunk is in, and return ``dL/dscale``;
        :meth:`unit_gradient` then reads ``dL/du``. By row blocks (on the pool, :mod:`.threads`):
        ``G b`` and ``G^T a`` for ``a != b`` (``G`` with its transpose's gradient added), and
        ``(G + G^T) a`` for a symmetric product ``a a^T`` (whose ``sum G * s`` is half of
        ``sum a * (G + G^T) a``).
        """
        for pair, held in self._held.items():
            n = self.width(pair[0])
            self.grad_scale += sum(self._map_rows(partial(self._send_rows_back, pair, held), n))
            if pair[0] != pair[1]:
                if pair[1] not in self.grad_t:
                    self.grad_t[pair[1]] = self.xp.zeros_like(self.vectors[pair[1]].T)
                self._map_rows(partial(self._send_columns_back, pair, held), n)
        self._held.clear()
        return self.grad_scale

    def _send_rows_back(self, pair: tuple[str, str], held: _Held, start: int, stop: int) -> float:
        """Rows ``start .. stop-1`` of a held pair's ``dL/du(a)`` (``G b``, or ``(G + G^T) a``); their
        part of ``dL/dscale``."""
        a_side, b_side = pair
        a = self.vectors[a_side][start:stop, :]
        if a_side == b_side:
            g_a = (held.grad[start:stop, :] + held.grad[:, start:stop].T) @ self.vectors[a_side]
            share = 0.5
        else:
            g = held.grad[start:stop, :]
            if held.grad_of_transpose is not None:
                g += held.grad_of_transpose[:, start:stop].T  # these rows are this block's own
            g_a = g @ self.vectors[b_side]
            share = 1.0
        self.grad[a_side][start:stop, :] += g_a
        return share * float(self.xp.sum(g_a * a))

    def _send_columns_back(self, pair: tuple[str, str], held: _Held, start: int, stop: int) -> None:
        """Columns ``start .. stop-1`` of ``G^T a`` for a held pair ``a b^T`` with ``a != b`` (after
        :meth:`_send_rows_back` has completed ``G``), transposed: ``a^T G``."""
        a_side, b_side = pair
        self.grad_t[b_side][:, start:stop] += self.vectors[a_side].T @ held.grad[:, start:stop]

    def unit_gradient(self, side: str, start: int, stop: int) -> tuple[Any | None, Any | None]:
        """``dL/du / scale`` of vectors ``start .. stop-1`` of a side (after :meth:`finish`), as the
        sum of its two parts: from the pieces with these rows (rows x D) and, transposed (D x rows),
        from the pieces with these columns (``None`` for a part the side does not have)."""
        rows, cols = self.grad.get(side), self.grad_t.get(side)
        return (
            None if rows is None else rows[start:stop, :],
            None if cols is None else cols[:, start:stop],
        )


def _scaled_product_rows(xp: Any, a: Any, b: Any, scale: float, out: Any, start: int, stop: int) -> None:
    """Rows ``start .. stop-1`` of ``out = scale * a b^T`` (one block of all rows is ``a a^T`` itself
    when ``a is b``, which numpy computes as a symmetric rank-k update, half the work)."""
    rows = out[start:stop, :]
    matmul_into(xp, a[start:stop, :] if (start, stop) != (0, int(a.shape[0])) else a, b.T, rows)
    rows *= scale
