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
"""

from __future__ import annotations

from typing import Any, Literal

import array_api_compat

__all__ = ["HELD_ELEMENTS", "PRODUCT_MODES", "SIDES", "Products"]

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


class Products:
    """The pieces' logits and the accumulation of their gradients for one call of the loss.

    ``pieces`` is every ``(row_side, col_side)`` that the configuration needs; ``mode`` one of
    :data:`PRODUCT_MODES`. The gradient accumulators hold ``dL/du / scale`` until :meth:`finish`.
    """

    def __init__(
        self, xp: Any, u_q: Any, u_d: Any, scale: float, pieces: set[tuple[str, str]], mode: str
    ) -> None:
        if mode not in PRODUCT_MODES:
            raise ValueError(f"products must be one of {PRODUCT_MODES}, got {mode!r}")
        n = int(u_q.shape[0])
        self.xp = xp
        self.scale = scale
        self.vectors = {"q": u_q, "d0": u_d[:n, :], "dh": u_d[n:, :]}
        #: dL/du / scale of each side from the pieces it is the row side of ...
        self.grad = {side: xp.zeros_like(vectors) for side, vectors in self.vectors.items()}
        #: ... and, transposed (D x vectors), from the pieces it is the column side of.
        self.grad_t = {
            side: xp.zeros(
                (int(v.shape[1]), int(v.shape[0])), dtype=v.dtype, device=array_api_compat.device(v)
            )
            for side, v in self.vectors.items()
        }
        self.grad_scale = 0.0
        square = {_pair(row, col)[0] for row, col in pieces if col != "dh"}
        #: Whether the square products are held whole (else streamed by chunk).
        self.hold = mode == "held" or (mode == "auto" and 2 * len(square) * n * n <= HELD_ELEMENTS)
        self._held: dict[tuple[str, str], tuple[Any, Any]] = {}
        for a_side, b_side in sorted(square) if self.hold else ():
            a, b = self.vectors[a_side], self.vectors[b_side]
            product = a @ b.T  # a a^T when a_side == b_side: numpy computes it as a symmetric rank-k update
            product *= scale
            self._held[(a_side, b_side)] = (product, xp.zeros_like(product))

    def width(self, side: str) -> int:
        """The number of vectors of a side (the columns of a piece against it)."""
        return int(self.vectors[side].shape[0])

    def logits(self, row_side: str, col_side: str, start: int, stop: int) -> Any:
        """``scale * a . b`` for rows ``start .. stop-1`` of ``row_side`` against all of ``col_side``:
        a new array, which the caller may overwrite."""
        pair, transposed = _pair(row_side, col_side)
        if pair in self._held:
            product = self._held[pair][0]
            rows = product[:, start:stop].T if transposed else product[start:stop, :]
            return self.xp.asarray(rows, copy=True)
        # SCALE-1: the row vectors are scaled before the product ((rows x D) multiplications
        # instead of (rows x candidates)).
        return (self.scale * self.vectors[row_side][start:stop, :]) @ self.vectors[col_side].T

    def backward(self, row_side: str, col_side: str, start: int, stop: int, grad: Any) -> None:
        """Take ``G = dL/dlogits`` of a piece (without the factor ``scale``: see the class)."""
        pair, transposed = _pair(row_side, col_side)
        if pair in self._held:
            held_grad = self._held[pair][1]
            if transposed:
                held_grad[:, start:stop] += grad.T
            else:
                held_grad[start:stop, :] += grad
            return
        rows = self.vectors[row_side][start:stop, :]
        g_rows = grad @ self.vectors[col_side]
        # SCALE-2: sum G * s = sum_r a_r . (G b)_r; HARD-5: the stop-gradient penalty adds nothing.
        self.grad_scale += float(self.xp.sum(g_rows * rows))
        self.grad[row_side][start:stop, :] += g_rows
        self.grad_t[col_side] += rows.T @ grad

    def finish(self) -> tuple[Any, Any, float]:
        """``dL/du(q)`` (N, D), ``dL/du(docs)`` (K N, D) and ``dL/dscale`` once every chunk is in.

        Held pairs send their gradients back now: ``G b`` and ``G^T a`` for ``a != b``, and
        ``(G + G^T) a`` for a symmetric product ``a a^T`` (whose ``sum G * s`` is half of
        ``sum a * (G + G^T) a``).
        """
        xp = self.xp
        for (a_side, b_side), (_, grad) in self._held.items():
            a = self.vectors[a_side]
            if a_side == b_side:
                g_a = (grad + grad.T) @ a
                self.grad_scale += float(xp.sum(g_a * a)) / 2
            else:
                g_a = grad @ self.vectors[b_side]
                self.grad_scale += float(xp.sum(g_a * a))
                self.grad_t[b_side] += a.T @ grad
            self.grad[a_side] += g_a
        self._held.clear()
        total = {side: self.scale * (self.grad[side] + self.grad_t[side].T) for side in SIDES}
        return total["q"], xp.concat([total["d0"], total["dh"]], axis=0), self.grad_scale
