"""Similarities (clauses SIM-1, SIM-2, GRAD-3).

Both similarities are a matrix product of "unit rows": for ``cos`` the rows divided by
``max(||x||_2, 1e-12)`` (SIM-1), for ``dot`` the rows themselves (SIM-2). Normalising once and
multiplying many times lets the chunked (cached) loss reuse the unit rows for every chunk.
"""

from __future__ import annotations

import torch

from infonce_spec.vocabulary import COS_EPS

__all__ = ["COS_EPS", "similarity_matrix", "unit_rows"]


def unit_rows(x: torch.Tensor, similarity: str) -> torch.Tensor:
    """Rows of ``x`` as the similarity sees them: ``x / max(||x||, 1e-12)`` (cos) or ``x`` (dot).

    GRAD-3: below the floor the denominator is the constant 1e-12 (``clamp_min`` has zero gradient
    there), so the gradient is that of ``x / 1e-12``.
    """
    if similarity == "dot":
        return x
    norms = torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(COS_EPS)
    return x / norms


def similarity_matrix(a_unit: torch.Tensor, b_unit: torch.Tensor) -> torch.Tensor:
    """``s[i, j] = a_unit[i] . b_unit[j]`` for unit rows from :func:`unit_rows`."""
    return a_unit @ b_unit.T
