"""The engine's unit rows and their pullback (clauses SIM-1, SIM-2, GRAD-3), in place, by row blocks.

The same maps as :func:`infonce_spec.reference.similarity.unit_rows` and
:func:`infonce_spec.reference.gradients.pullback`, written for speed: the norms are computed once
and kept, and the pullback of a block of rows is written straight into its rows of the result,
with the factor ``scale`` of ``dL/du`` (:mod:`.products`) and the division by the norm applied
together, in one pass:

* cos: ``dL/dx = scale * (g - u (u . g)) / ||x||`` where ``||x|| >= eps``, ``scale * g / eps``
  below the floor (where ``n(x) = x / eps`` is linear), with ``g = dL/du / scale``;
* dot: ``n`` is the identity, ``dL/dx = scale * g``.
"""

from __future__ import annotations

from typing import Any

import array_api_compat

from infonce_spec.vocabulary import COS_EPS

from ..similarity import norms
from .inplace import add_into, divide_into
from .threads import MapRows, in_one_block, row_steps

__all__ = ["pull_into", "unit_rows_and_norms"]


def unit_rows_and_norms(
    xp: Any, arrays: list[Any], similarity: str, map_rows: MapRows = in_one_block
) -> list[tuple[Any, Any | None]]:
    """For each array ``x``: ``n(x)`` row by row (SIM-1, SIM-2) and, for cos, the norms ``||x||``
    (rows, 1) it divided by (before the floor ``eps``); ``None`` for dot. ``map_rows(work, rows)``
    runs ``work(start, stop)`` over ranges that cover the arrays' rows one after another
    (:mod:`.threads` runs them on the pool)."""
    if similarity == "dot":
        return [(x, None) for x in arrays]
    units = [
        (xp.empty_like(x), xp.empty((int(x.shape[0]), 1), dtype=x.dtype, device=array_api_compat.device(x)))
        for x in arrays
    ]
    first = [0]
    for x in arrays:
        first.append(first[-1] + int(x.shape[0]))

    def block(start: int, stop: int) -> None:
        for x, (u, norm), offset, end in zip(arrays, units, first[:-1], first[1:], strict=True):
            floor = xp.asarray(COS_EPS, dtype=x.dtype)
            for a, b in row_steps(max(start, offset) - offset, min(stop, end) - offset, int(x.shape[1])):
                norm[a:b, :] = norms(xp, x[a:b, :])
                divide_into(xp, x[a:b, :], xp.maximum(norm[a:b, :], floor), u[a:b, :])

    map_rows(block, first[-1])
    return units


def pull_into(
    xp: Any, out: Any, g_rows: Any | None, g_cols: Any | None, scale: float, u: Any, norm: Any | None
) -> None:
    """GRAD-3 for a block of rows: ``out`` (rows, D) receives ``dL/dx`` from
    ``dL/du = scale * (g_rows + g_cols^T)`` (``g_cols`` is D x rows; a part that is ``None`` is
    zero), ``u`` and ``norm`` the rows' unit vectors and norms (:func:`unit_rows_and_norms`)."""
    if g_rows is not None and g_cols is not None:
        add_into(xp, g_rows, g_cols.T, out)
    elif g_rows is not None or g_cols is not None:
        out[...] = g_rows if g_rows is not None else g_cols.T
    else:
        out[...] = xp.zeros_like(out)
    if norm is None:
        out *= scale
        return
    above = norm >= COS_EPS
    zero = xp.asarray(0.0, dtype=out.dtype)
    dots = xp.reshape(xp.vecdot(u, out, axis=-1), (-1, 1))  # u . g, row by row, without a temporary
    out -= u * xp.where(above, dots, zero)
    out *= scale / xp.where(above, norm, xp.asarray(COS_EPS, dtype=out.dtype))
