"""Results written into arrays that already exist, where the namespace allows it.

numpy and torch take ``out=`` in ``exp``, ``add`` and ``matmul``, which spares a chunk-sized
temporary and a copy; the Array API has no ``out``, so elsewhere the result is computed as a new
array and copied into place (the same numbers, one pass more).
"""

from __future__ import annotations

from typing import Any

import array_api_compat

__all__ = ["add_into", "divide_into", "exp_over", "matmul_into"]


def _has_out(x: Any) -> bool:
    return bool(array_api_compat.is_numpy_array(x) or array_api_compat.is_torch_array(x))


def exp_over(xp: Any, z: Any) -> None:
    """``z = exp(z)``."""
    if _has_out(z):
        xp.exp(z, out=z)
    else:
        z[...] = xp.exp(z)


def add_into(xp: Any, a: Any, b: Any, out: Any) -> None:
    """``out = a + b``."""
    if _has_out(out):
        xp.add(a, b, out=out)
    else:
        out[...] = a + b


def divide_into(xp: Any, a: Any, b: Any, out: Any) -> None:
    """``out = a / b``."""
    if _has_out(out):
        xp.divide(a, b, out=out)
    else:
        out[...] = a / b


def matmul_into(xp: Any, a: Any, b: Any, out: Any) -> None:
    """``out = a @ b``."""
    if _has_out(out):
        xp.matmul(a, b, out=out)
    else:
        out[...] = a @ b
