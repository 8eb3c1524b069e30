"""Similarity functions and their backward pass (clauses SIM-1, SIM-2, GRAD-3).

Both similarities are written as ``s(a, b) = u(a) . u(b)`` with ``u`` the identity for ``dot``
and ``u(x) = x / max(||x||_2, 1e-12)`` for ``cos`` (what ``torch.nn.functional.normalize`` does).
The loss is then a function of the rows ``u``; :func:`pullback` carries a gradient with respect
to ``u`` back to the raw embeddings.
"""

from __future__ import annotations

from typing import Any

__all__ = ["COS_EPS", "pullback", "unit_rows"]

#: SIM-1: the norm floor of the cos similarity.
COS_EPS = 1e-12


def _norms(xp: Any, x: Any) -> Any:
    return xp.sqrt(xp.sum(x * x, axis=-1, keepdims=True))


def unit_rows(xp: Any, x: Any, similarity: str) -> Any:
    """``u(x)`` row-wise over the last axis (SIM-1 for ``cos``, SIM-2 for ``dot``)."""
    if similarity == "dot":
        return x
    return x / xp.maximum(_norms(xp, x), xp.asarray(COS_EPS, dtype=x.dtype))


def pullback(xp: Any, x: Any, u: Any, grad_u: Any, similarity: str) -> Any:
    """Gradient with respect to ``x`` given the gradient ``grad_u`` with respect to ``u = u(x)``.

    For ``cos`` (GRAD-3): where ``||x|| >= 1e-12``, ``(grad_u - u (u . grad_u)) / ||x||``;
    below the floor ``u = x / 1e-12`` is linear, so the gradient is ``grad_u / 1e-12``.
    """
    if similarity == "dot":
        return grad_u
    norms = _norms(xp, x)
    above = norms >= COS_EPS
    projected = (grad_u - u * xp.sum(u * grad_u, axis=-1, keepdims=True)) / xp.where(
        above, norms, xp.asarray(1.0, dtype=x.dtype)
    )
    return xp.where(above, projected, grad_u / COS_EPS)
