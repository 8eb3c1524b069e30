"""The loss of the spec with one switch per way of getting it wrong: :func:`emulate` (float64 NumPy).

Forward and backward are written out in closed form like :mod:`infonce_spec.reference.gradients`
(softmax minus one-hot, pulled back through the similarity and the normalisation), so every output
is exact to float64 rounding; the default switches give the reference's function (checked against
it in tests/test_mistakes.py). Non-finite values follow the autograd of the usual torch code: an
overflowing unshifted log-sum-exp gives ``inf`` losses and ``0 * inf = nan`` gradients, a zero
vector normalised without a floor gives ``nan`` rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from infonce_spec.reference import Config
from infonce_spec.reference.hardness import selected_entries
from infonce_spec.vocabulary import COS_EPS

__all__ = ["Emulation", "Outputs", "emulate", "emulate_with_unit_grads"]


class Outputs(NamedTuple):
    """What an implementation returns for one case: L, dL/dqueries, dL/ddocs, dL/dscale (float64)."""

    loss: float
    grad_queries: np.ndarray
    grad_docs: np.ndarray
    grad_scale: float


@dataclass(frozen=True)
class Emulation:
    """The switches of :func:`emulate`; the defaults are the spec's loss.

    * ``floor``: the cos norm floor ε of ``x / max(‖x‖, ε)`` (SIM-1: 1e-12); ``None``: ``x / ‖x‖``.
    * ``temperature``: logits ``s / scale`` instead of ``scale · s`` (SCALE-1).
    * ``detached_scale``: directions whose logits carry no dL/dscale (SCALE-2).
    * ``qq_mask``: query_to_query excludes ``j = g`` (MASK-QQ-1).
    * ``dd_mask``: doc_to_doc excludes ``"own"`` (``j = g`` in every column, MASK-DD-1/2),
      ``"own_positive"`` (only ``(0, g)``) or ``"own_and_hard"`` (``(0, g)`` and every column k >= 1).
    * ``dq_all_columns``: the doc_to_query row of g holds ``s(d[k, g], q_j)`` for every k (DQ-1).
    * ``hardness_times_scale`` / ``hardness_detached`` / ``hardness_on_positive`` /
      ``hard_negatives_all_columns``: the hardness term ``scale · α · s`` / with a derivative / also on
      the positive / in every hard-negative column for ``hard_negatives`` (HARD-2 .. HARD-5).
    * ``positive_in_partition``: the positive (0, g) is in its query_to_doc partition (QD-1).
    * ``anchor_rows_split``: per_anchor takes one partition per direction (PART-5).
    * ``groups``: ``"mean"`` ``l_g = mean_γ log Z_γ − p_g`` (§6), ``"sum_partitions"``
      ``Σ_γ log Z_γ − p_g``, ``"sum_losses"`` ``Σ_γ (log Z_γ − p_g)``.
    * ``shifted``: the log-sum-exp is max-shifted (NUM-1).
    * ``loss_sum``: L is the sum of the l_g, not their mean (LOSS-1).
    * ``positive_floor``: each group's loss is ``−log(P_γ(positive) + positive_floor)`` (NUM-1).
    * ``query_weights``: L is ``Σ_g w_g l_g`` with these weights (one per query) instead of the mean
      (the share of L that one rank or one cache chunk computes; queries of weight 0 are left out).
    """

    floor: float | None = COS_EPS
    temperature: bool = False
    detached_scale: frozenset[str] = frozenset()
    qq_mask: bool = True
    dd_mask: str = "own"
    dq_all_columns: bool = False
    hardness_times_scale: bool = False
    hardness_detached: bool = True
    hardness_on_positive: bool = False
    hard_negatives_all_columns: bool = False
    positive_in_partition: bool = True
    anchor_rows_split: bool = False
    groups: str = "mean"
    shifted: bool = True
    loss_sum: bool = False
    positive_floor: float = 0.0
    query_weights: tuple[float, ...] | None = None


@dataclass
class _Row:
    """One direction's rows: blocks ``(row vectors, candidates)`` of the vector table side by side."""

    name: str
    blocks: list[tuple[slice, slice]]
    s: np.ndarray
    excluded: np.ndarray  # masked out of the direction (-inf logit, no derivative)
    partition_excluded: np.ndarray  # also left out of the partition (the positive, QD-1 mistakes)
    selected: np.ndarray | None = None  # hardness entries
    z: np.ndarray = field(default_factory=lambda: np.zeros(0))


def _unit_rows(x: np.ndarray, similarity: str, floor: float | None) -> tuple[np.ndarray, np.ndarray]:
    norm = np.sqrt(np.sum(x * x, axis=-1, keepdims=True))
    if similarity == "dot":
        return x, norm
    return x / (norm if floor is None else np.maximum(norm, floor)), norm


def _pullback(
    u: np.ndarray, norm: np.ndarray, g: np.ndarray, similarity: str, floor: float | None
) -> np.ndarray:
    """GRAD-3 for the floor ``floor``: the projection over ‖x‖ above it, ``g / floor`` below."""
    if similarity == "dot":
        return g
    projected = g - u * np.sum(u * g, axis=-1, keepdims=True)
    if floor is None:
        return projected / norm
    above = norm >= floor
    return np.where(above, projected / np.where(above, norm, 1.0), g / floor)


def _rows(v: np.ndarray, n: int, k: int, config: Config, e: Emulation) -> list[_Row]:
    """The rows of every selected direction over the vector table ``v`` = [queries; docs (LAYOUT-3)]."""
    q, pos, docs = slice(0, n), slice(n, 2 * n), slice(n, n + k * n)
    blocks = {
        "query_to_doc": [(q, docs)],
        "query_to_query": [(q, q)],
        "doc_to_query": [(slice(n + i * n, n + (i + 1) * n), q) for i in range(k)]
        if e.dq_all_columns
        else [(pos, q)],
        "doc_to_doc": [(pos, docs)],
    }
    out = []
    for name in config.selected_directions:
        s = np.concatenate([v[a] @ v[b].T for a, b in blocks[name]], axis=1)
        c = np.arange(s.shape[1])[None, :]
        own = np.broadcast_to(c % n == np.arange(n)[:, None], s.shape)
        first = np.broadcast_to(c < n, s.shape)
        excluded = np.zeros(s.shape, dtype=bool)
        if name == "query_to_query" and e.qq_mask:
            excluded = own
        if name == "doc_to_doc":
            excluded = {"own": own, "own_positive": own & first, "own_and_hard": (own & first) | ~first}[
                e.dd_mask
            ]
        out.append(_Row(name, blocks[name], s, excluded, excluded))
    return out


def _logsumexp(z: np.ndarray, shifted: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(log Z, the weights' factor)`` row by row: shifted, ``exp(z - log Z)`` is the softmax;
    unshifted, ``exp(z) / Z`` as autograd of ``log(sum(exp(z)))`` computes it (``0 · inf = nan``)."""
    if not shifted:
        total = np.sum(np.exp(z), axis=1)
        return np.log(total), total
    m = np.max(z, axis=1)
    m = np.where(np.isinf(m), 0.0, m)
    return m + np.log(np.sum(np.exp(z - m[:, None]), axis=1)), np.empty(0)


def emulate(queries: Any, docs: Any, config: Config, emulation: Emulation = Emulation()) -> Outputs:
    """The outputs of the loss of ``config`` computed with the switches ``emulation``, in float64."""
    with np.errstate(all="ignore"):
        return emulate_with_unit_grads(
            np.asarray(queries, dtype=np.float64), np.asarray(docs, dtype=np.float64), config, emulation
        )[0]


def _logits(rows: list[_Row], n: int, config: Config, e: Emulation) -> tuple[np.ndarray, np.ndarray]:
    """§4, §5: ``z = scale · s + h`` (``-inf`` where excluded) into each row; returns the positive
    logits p_g and where the positive (0, g) sits in the query_to_doc rows."""
    scale, qd = config.scale, rows[0]
    c = np.arange(qd.s.shape[1])[None, :]
    positive = np.broadcast_to(c == np.arange(n)[:, None], qd.s.shape)
    for r in rows:
        r.z = np.where(r.excluded, -np.inf, r.s / scale if e.temperature else scale * r.s)
    if config.hardness_active:
        assert config.hardness_mode is not None
        own = np.broadcast_to(c % n == np.arange(n)[:, None], qd.s.shape)
        first = np.broadcast_to(c < n, qd.s.shape)
        selected = selected_entries(own, first, config.hardness_mode)
        if e.hard_negatives_all_columns and config.hardness_mode == "hard_negatives":
            selected = ~first
        if e.hardness_on_positive:
            selected = selected | positive
        qd.selected = selected
        qd.z = qd.z + np.where(selected, _hardness_coefficient(config, e) * qd.s, 0.0)
    if not e.positive_in_partition:
        qd.partition_excluded = qd.excluded | positive
    return np.sum(np.where(positive, qd.z, 0.0), axis=1), positive


def _hardness_coefficient(config: Config, e: Emulation) -> float:
    return config.hardness_strength * (config.scale if e.hardness_times_scale else 1.0)


def _loss(
    rows: list[_Row], p: np.ndarray, positive: np.ndarray, config: Config, e: Emulation
) -> tuple[float, dict[str, np.ndarray]]:
    """§6 and GRAD-1: L and ``G = ∂L/∂z`` of every direction's rows."""
    by_name = {r.name: r for r in rows}
    n = p.shape[0]
    groups = config.partition_groups
    if e.anchor_rows_split and config.partition_mode == "per_anchor":
        groups = tuple((name,) for name in config.selected_directions)
    m = len(groups)
    weight = np.full(n, 1.0 if e.loss_sum else 1.0 / n)
    if e.query_weights is not None:
        weight = np.asarray(e.query_weights, dtype=np.float64)
    masked = {r.name: np.where(r.partition_excluded, -np.inf, r.z) for r in rows}
    partitions = [_logsumexp(np.concatenate([masked[name] for name in g], axis=1), e.shifted) for g in groups]
    lse = [log_z for log_z, _ in partitions]
    if e.positive_floor > 0.0:
        probability = [np.exp(p - log_z) for log_z in lse]
        per_query = sum(-np.log(pr + e.positive_floor) for pr in probability) / m
        d_lse = [weight / m * pr / (pr + e.positive_floor) for pr in probability]
        d_p = -sum(d_lse)
    else:
        a, b = {"mean": (1.0 / m, 1.0), "sum_partitions": (1.0, 1.0), "sum_losses": (1.0, float(m))}[e.groups]
        per_query = a * sum(lse) - b * p
        d_lse = [a * weight for _ in groups]
        d_p = -b * weight
    grads: dict[str, np.ndarray] = {}
    for group, (log_z, total), w in zip(groups, partitions, d_lse, strict=True):
        for name in group:
            z = masked[name]
            g = w[:, None] * np.exp(z - log_z[:, None]) if e.shifted else (w / total)[:, None] * np.exp(z)
            grads[name] = np.where(by_name[name].partition_excluded, 0.0, g)
    grads["query_to_doc"] = grads["query_to_doc"] + np.where(positive, d_p[:, None], 0.0)
    kept = weight != 0.0
    return float(np.sum(weight[kept] * per_query[kept])), grads


def _backward(
    rows: list[_Row], grads: dict[str, np.ndarray], v: np.ndarray, config: Config, e: Emulation
) -> tuple[np.ndarray, float]:
    """§7: ``∂L/∂s`` (scale, plus α where the hardness term keeps its derivative), dL/dscale, and
    ``∂L/∂n(x)`` of the vector table, block by block (``∂L/∂A += G_s B``, ``∂L/∂B += G_sᵀ A``)."""
    scale = config.scale
    grad_v = np.zeros_like(v)
    grad_scale = 0.0
    for r in rows:
        g = np.where(r.excluded, 0.0, grads[r.name])
        ds = g / scale if e.temperature else g * scale
        if r.selected is not None and not e.hardness_detached:
            ds = ds + np.where(r.selected, grads[r.name], 0.0) * _hardness_coefficient(config, e)
        if r.name not in e.detached_scale:
            grad_scale += float(np.sum(-g * r.s / (scale * scale) if e.temperature else g * r.s))
        first = 0
        for a, b in r.blocks:
            block = ds[:, first : first + b.stop - b.start]
            grad_v[a] += block @ v[b]
            grad_v[b] += block.T @ v[a]
            first += b.stop - b.start
    return grad_v, grad_scale


def emulate_with_unit_grads(
    q: np.ndarray, d: np.ndarray, config: Config, e: Emulation
) -> tuple[Outputs, np.ndarray]:
    """:func:`emulate` on float64 arrays, also returning ``∂L/∂n(x)`` of [queries; docs (LAYOUT-3)]."""
    k, n, dim = d.shape
    x = np.concatenate([q, d.reshape(k * n, dim)])
    v, norm = _unit_rows(x, config.similarity, e.floor)  # §3
    rows = _rows(v, n, k, config, e)
    p, positive = _logits(rows, n, config, e)
    loss, grads = _loss(rows, p, positive, config, e)
    grad_v, grad_scale = _backward(rows, grads, v, config, e)
    grad_x = _pullback(v, norm, grad_v, config.similarity, e.floor)  # GRAD-3
    return Outputs(loss, grad_x[:n], grad_x[n:].reshape(k, n, dim), grad_scale), grad_v
