"""When an implementation's outputs agree with a prediction: within the bounds, non-finite values at
the same places (:func:`values_close`, :func:`outputs_agree`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..tolerances import OUTPUT_ROUNDING, UNIT_ROUNDOFF, Bounds

__all__ = ["outputs_agree", "values_close"]


def values_close(predicted: Any, got: Any, bound: Any, u: float) -> bool:
    """``got`` within ``bound`` (plus the output rounding) of ``predicted``; non-finite values must
    sit at the same places (nan with nan, inf with the same inf)."""
    p = np.asarray(predicted, dtype=np.float64)
    g = np.asarray(got, dtype=np.float64)
    if p.shape != g.shape:
        return False
    with np.errstate(all="ignore"):
        allowed = np.broadcast_to(
            np.asarray(bound, dtype=np.float64), p.shape
        ) + OUTPUT_ROUNDING * u * np.abs(p)
        finite = np.isfinite(p) & np.isfinite(g)
        same = (np.isnan(p) & np.isnan(g)) | (np.isinf(p) & (p == g))
        ok = np.where(finite, np.abs(p - g) <= allowed, same)
    return bool(np.all(ok))


def outputs_agree(predicted: Any, got: Any, bounds: Bounds, dtype: str = "float64") -> bool:
    """Whether ``got`` agrees with ``predicted`` on every output ``got`` has (None: not compared)."""
    u = UNIT_ROUNDOFF[dtype]
    for name, bound in (
        ("loss", bounds.loss),
        ("grad_queries", bounds.grad_queries),
        ("grad_docs", bounds.grad_docs),
        ("grad_scale", bounds.grad_scale),
    ):
        value = getattr(got, name, None)
        if value is not None and not values_close(getattr(predicted, name), value, bound, u):
            return False
    return True
