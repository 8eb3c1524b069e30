"""§3 Similarity and scale (clauses SIM-1, SIM-2, SCALE-1).

Both similarities are written as ``s(a, b) = n(a) · n(b)``, with ``n`` the identity for ``dot``
(SIM-2) and ``n(x) = x / max(‖x‖, ε)``, ε = 1e-12, for ``cos`` (SIM-1; what
``torch.nn.functional.normalize`` does). The vectors ``n(x)`` are the *unit rows*; every logit
of §4 is ``scale · n(a) · n(b)`` (SCALE-1), plus a hardness term (§5). Their backward, GRAD-3,
is in :mod:`.gradients`.
"""

from __future__ import annotations

from typing import Any

from infonce_spec.vocabulary import COS_EPS

__all__ = ["COS_EPS", "norms", "similarities", "unit_rows"]


def norms(xp: Any, x: Any) -> Any:
    """``‖x‖`` of every row (keeping the last axis, for broadcasting)."""
    return xp.sqrt(xp.sum(x * x, axis=-1, keepdims=True))


def unit_rows(xp: Any, x: Any, similarity: str) -> Any:
    """``n(x)`` row by row: ``x / max(‖x‖, ε)`` for cos (SIM-1), ``x`` for dot (SIM-2)."""
    if similarity == "dot":
        return x
    return x / xp.maximum(norms(xp, x), xp.asarray(COS_EPS, dtype=x.dtype))


def similarities(a: Any, b: Any) -> Any:
    """``s[i, c] = n(a_i) · n(b_c)`` for unit rows ``a`` (rows, D) and ``b`` (candidates, D)."""
    return a @ b.T
