"""§7 Gradients, in closed form, in one place (clauses GRAD-1, GRAD-2, GRAD-3, SCALE-2, HARD-5).

The convention, written once:

1. ``G[g, e] = ∂L/∂z_e`` for every entry e of every row of query g (GRAD-1):
   softmax minus one-hot, ``(P^γ[g, e]/M − [e = e⁺_g]) / N`` with ``P^γ`` the softmax over the
   group γ that holds e and M the number of groups (joint: M = 1; per_direction: M = m;
   per_anchor: one group per row vector), with e⁺_g the query_to_doc entry ``(0, g)``. An excluded entry has ``z = -inf``,
   so ``P = exp(-inf) = 0`` and ``G = 0`` exactly (GRAD-2). :func:`logit_gradients`.
2. ``∂z_e/∂s_e = scale`` on every entry, selected by hardness or not: h carries no derivative
   (HARD-5). So ``∂L/∂s_e = scale · G[g, e]``.
3. ``s_e = n(a_e) · n(b_e)`` (§3), so the unit row of the row vector receives
   ``scale · Σ_e G[g, e] · n(b_e)`` and the unit row of the candidate ``scale · Σ_e G[g, e] · n(a_e)``,
   summed over every slot the vector fills, in every row of every query (GRAD-1).
   In matrices, per direction: ``∂L/∂A += scale · G B`` and ``∂L/∂B += scale · Gᵀ A``.
   :func:`unit_row_gradients`.
4. The unit rows are pulled back to the embeddings through ``n`` (GRAD-3; the identity for dot).
   :func:`pullback`.
5. ``∂L/∂scale = Σ_g Σ_e G[g, e] · s_e`` (SCALE-2), the positive's −1/N included, h excluded.
   :func:`scale_gradient`.
"""

from __future__ import annotations

from typing import Any

from infonce_spec.vocabulary import COS_EPS, REQUIRED_DIRECTION, SIDES, Side

from .rows import Rows, candidate_vectors
from .similarity import norms

__all__ = ["logit_gradients", "pullback", "scale_gradient", "unit_row_gradients"]


def logit_gradients(
    xp: Any, rows: dict[str, Rows], log_z: dict[str, Any], n: int, groups: int
) -> dict[str, Any]:
    """``G = ∂L/∂z`` (N, width) of every direction's rows (GRAD-1, GRAD-2).

    ``log_z`` is :func:`.partition.log_partitions`: the log-partition of the group each direction
    belongs to; ``groups`` is the number M of groups (1 joint, PART-2; m per_direction, PART-3;
    per_anchor, PART-5), each group's softmax weighted ``1/(N M)``.
    """
    grads: dict[str, Any] = {}
    weight = 1.0 / (n * groups)
    for name, r in rows.items():
        probabilities = xp.exp(r.logits - xp.reshape(log_z[name], (-1, 1)))  # P^γ[g, e]; 0 where excluded
        grads[name] = weight * probabilities
    qd = rows[REQUIRED_DIRECTION]
    one_hot = xp.astype(qd.own & qd.positive_column, xp.float64)  # [e = e⁺_g]
    grads[REQUIRED_DIRECTION] = grads[REQUIRED_DIRECTION] - one_hot / n
    return grads


def unit_row_gradients(
    xp: Any, vectors: dict[Side, Any], rows: dict[str, Rows], grads: dict[str, Any], scale: float
) -> dict[Side, Any]:
    """``∂L/∂n(x)`` for the unit rows of every side (steps 2 and 3 of the module's convention)."""
    out = {side: xp.zeros_like(vectors[side]) for side in SIDES}
    for name, r in rows.items():
        a = vectors[r.direction.row_side]
        b = candidate_vectors(xp, vectors, r.direction)
        g = grads[name]
        out[r.direction.row_side] = out[r.direction.row_side] + scale * (g @ b)  # ∂L/∂A = scale · G B
        to_candidates = scale * (g.T @ a)  # ∂L/∂B = scale · Gᵀ A, split back into its sides
        first = 0
        for side in r.direction.column_sides:
            width = int(vectors[side].shape[0])
            out[side] = out[side] + to_candidates[first : first + width, :]
            first += width
    return out


def pullback(xp: Any, x: Any, u: Any, grad_u: Any, similarity: str) -> Any:
    """GRAD-3: ``∂L/∂x`` from ``g = ∂L/∂u`` for ``u = n(x)``, row by row.

    cos: ``(g − u (u · g)) / ‖x‖`` where ``‖x‖ >= ε``; ``g / ε`` below the floor, where ``n`` is the
    linear map ``x / ε`` (the zero vector included). dot: ``n`` is the identity, so ``g``.
    """
    if similarity == "dot":
        return grad_u
    norm = norms(xp, x)
    above = norm >= COS_EPS
    one = xp.asarray(1.0, dtype=x.dtype)
    projected = (grad_u - u * xp.sum(u * grad_u, axis=-1, keepdims=True)) / xp.where(above, norm, one)
    return xp.where(above, projected, grad_u / COS_EPS)


def scale_gradient(xp: Any, rows: dict[str, Rows], grads: dict[str, Any]) -> float:
    """SCALE-2: ``∂L/∂scale = Σ_g Σ_e G[g, e] · s_e`` (unscaled s; the hardness term has no
    derivative, HARD-5; excluded entries have G = 0, GRAD-2)."""
    return float(sum(float(xp.sum(grads[name] * r.s)) for name, r in rows.items()))
