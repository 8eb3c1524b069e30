"""Rows padded off powers of two, for the matrices the engine reads transposed.

Reading a matrix transposed walks down its columns, one number from each row. When its rows are a
large power of two of bytes apart (N = 1024 float64 numbers: 8 KiB), the numbers of consecutive
rows fall in the same few sets of the cache, which hold 8 to 16 lines each, and almost every
number read is a miss: numpy's transposed copy of a 1024 x 1024 float64 matrix takes 3.1 ns a
number on the benchmark's machine (0.25 ns untransposed), and 0.9 ns when its rows are 1032
numbers apart. So the engine holds each matrix it reads transposed -- the held N x N products and
their gradients (lower triangles, ``G + G^T``, doc_to_query's rows of ``q d0^T``) and the column
gradients (D x vectors) that the pullback adds to the row gradients -- in the first ``width``
numbers of the rows of a C-contiguous array whose rows are :func:`stride` numbers apart, an odd
multiple of 64 bytes. Matrix products read and write such matrices at full speed (BLAS takes the
row stride); the masks of :mod:`.rows` reach their entries through :meth:`Padded.flat_rows`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .workspace import Workspace

__all__ = ["Padded", "padded", "stride"]

#: float64 numbers in a 64-byte cache line.
LINE = 8


def stride(width: int) -> int:
    """The row stride, in numbers, of a padded matrix of ``width`` columns: the smallest odd
    multiple of :data:`LINE` that holds them, so that consecutive rows start in different cache
    sets and every set is used before one repeats."""
    return (-(-max(width, 1) // LINE) | 1) * LINE


@dataclass(frozen=True)
class Padded:
    """A ``(rows, width)`` matrix in the first ``width`` numbers of each row of ``base``, a
    C-contiguous ``(rows, stride(width))`` array."""

    xp: Any
    base: Any
    width: int

    @property
    def matrix(self) -> Any:
        """The matrix itself (a view)."""
        return self.base[:, : self.width]

    @property
    def stride(self) -> int:
        """Numbers from the start of one row to the start of the next."""
        return int(self.base.shape[1])

    def flat_rows(self, start: int, stop: int) -> Any:
        """Rows ``start .. stop-1`` with their padding, as one flat view: entry ``(start + r, c)``
        is at ``r * stride + c``."""
        return self.xp.reshape(self.base[start:stop, :], (-1,))


def padded(workspace: Workspace, rows: int, width: int, like: Any, zeros: bool = False) -> Padded:
    """A padded ``(rows, width)`` matrix of ``like``'s dtype and device from ``workspace``, its
    contents unspecified or, with ``zeros``, cleared."""
    shape = (rows, stride(width))
    base = workspace.zeros(shape, like) if zeros else workspace.empty(shape, like)
    return Padded(workspace.xp, base, width)
