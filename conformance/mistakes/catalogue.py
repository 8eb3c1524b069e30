"""The known mistakes: one :class:`Mistake` per bug, with its clause, its provenance, the catalogue
mutant that has it, and the :class:`~.emulation.Emulation` switches that compute it. :data:`MISTAKES`
also holds the data-parallel ones (:mod:`.ranks`), the GradCache ones (:mod:`.cached`) and the
loss-stage memory ones (:mod:`.memory`)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from infonce_spec.reference import Config
from infonce_spec.vocabulary import COS_EPS

from ..tolerances import Bounds, embedding_bounds
from .cached import CACHE_MISTAKES
from .emulation import Emulation, Outputs, emulate, emulate_with_unit_grads
from .memory import MEMORY_MISTAKES
from .ranks import RANK_MISTAKES

__all__ = ["MISTAKES", "Mistake", "Observation"]


@dataclass(frozen=True)
class Observation:
    """One case and what the adapter returned on it (``outputs``: ``loss``, ``grad_queries``,
    ``grad_docs``, ``grad_scale``; a gradient may be None where the adapter does not give it)."""

    queries: np.ndarray
    docs: np.ndarray
    config: Config
    outputs: Any


def _has(*directions: str) -> Callable[[Config], bool]:
    return lambda c: set(directions) <= set(c.selected_directions)


def _groups(mode: str, at_least: int = 2) -> Callable[[Config], bool]:
    return lambda c: c.partition_mode == mode and len(c.partition_groups) >= at_least


def _always(config: Config) -> bool:
    return True


@dataclass(frozen=True)
class Mistake:
    """One known mistake: ``clause`` it breaks, ``description`` of what the implementation computes
    instead (``str.format`` fields are the fitted parameters), ``provenance`` (the public bug or
    library deviation it mirrors), ``mutant`` (the catalogue mutant that has it, if any).

    ``knobs`` are the :class:`Emulation` switches; ``params`` the switches fitted from the case
    (each with its candidate values, :meth:`candidates`).
    """

    id: str
    clause: str
    description: str
    provenance: str
    mutant: str | None
    knobs: dict[str, Any]
    applies_to: Callable[[Config], bool] = _always
    params: dict[str, tuple[float, ...]] = field(default_factory=dict)
    fit: Callable[[Mistake, Sequence[Observation]], list[dict[str, float]]] | None = None
    #: What it is a mistake of: one process' embeddings (the others are ``"ranks"`` and ``"encoder"``).
    kind: str = field(default="embeddings", init=False)

    @property
    def mutants(self) -> tuple[str, ...]:
        """The catalogue mutants that have it."""
        return (self.mutant,) if self.mutant is not None else ()

    def applies(self, config: Config) -> bool:
        """Whether the mistake changes anything under ``config`` (it may still agree on some inputs)."""
        return bool(self.applies_to(config))

    def emulation(self, **params: float) -> Emulation:
        return Emulation(**{**self.knobs, **params})

    def outputs(self, queries: Any, docs: Any, config: Config, **params: float) -> Outputs:
        """``(loss, grad_queries, grad_docs, grad_scale)`` of the faulty implementation, float64."""
        return emulate(queries, docs, config, self.emulation(**params))

    def candidates(self, observations: Sequence[Observation]) -> list[dict[str, float]]:
        """The parameter values to try: fitted from the observations, then the known ones."""
        fitted = self.fit(self, observations) if self.fit is not None else []
        if not self.params:
            return [{}]
        names = list(self.params)
        known = [dict(zip(names, values, strict=True)) for values in zip(*self.params.values(), strict=True)]
        return fitted + known

    def text(self, **params: float) -> str:
        return self.description.format(**params)

    def bounds(
        self, queries: np.ndarray, docs: np.ndarray, config: Config, dtype: str, **params: float
    ) -> Bounds:
        """The tolerance of an implementation of this mistake in ``dtype``: the tolerance model of
        :func:`~.tolerances.embedding_bounds` for the logits it actually computes, times the
        factor by which it multiplies L (N for a sum over queries, the groups for a sum over groups)."""
        e = self.emulation(**params)
        bound_config = config
        if e.temperature:
            bound_config = bound_config.replace(scale=1.0 / config.scale)
        if e.hardness_times_scale and config.hardness_active:
            bound_config = bound_config.replace(hardness_strength=config.hardness_strength * config.scale)
        b = embedding_bounds(queries, docs, bound_config, dtype)
        if e.temperature:
            b = dataclasses.replace(b, grad_scale=b.grad_scale / config.scale**2)
        if not e.hardness_detached and config.hardness_active:
            grow = (config.scale + config.hardness_strength) / config.scale
            b = dataclasses.replace(b, grad_queries=b.grad_queries * grow, grad_docs=b.grad_docs * grow)
        if config.similarity == "cos" and e.floor != COS_EPS:
            # GRAD-3's error over max(‖x‖, ε) becomes an error over max(‖x‖, floor)
            b = dataclasses.replace(
                b,
                grad_queries=b.grad_queries * _floor_ratio(queries, e.floor),
                grad_docs=b.grad_docs * _floor_ratio(docs, e.floor),
            )
        factor = float(queries.shape[0]) if e.loss_sum else 1.0
        if e.groups != "mean":
            factor *= len(config.partition_groups)
        return b.scaled(factor)


def _floor_ratio(x: np.ndarray, floor: float | None) -> np.ndarray:
    norm = np.sqrt(np.sum(np.asarray(x, dtype=np.float64) ** 2, axis=-1, keepdims=True))
    with np.errstate(divide="ignore"):
        return np.maximum(norm, COS_EPS) / np.maximum(norm, floor or 0.0)


#: float64 eps: optax' floor on the squared norm, a norm floor of its square root (2**-26).
_SQRT_EPS64 = math.sqrt(float(np.finfo(np.float64).eps))
#: Norm floors tried for an unnamed cos floor: libraries' defaults and square roots of eps values.
_FLOORS = (1e-8, math.sqrt(float(np.finfo(np.float32).eps)), 1e-10, 1e-9, 1e-7, 1e-5, 1e-4, 1e-3)
#: The floors of the named mistakes (cos_eps_squared_norm, norm_floor_1e6).
_NAMED_FLOORS = (_SQRT_EPS64, 1e-6)
#: How many observations the floor is fitted from.
_FIT_CASES = 3


def _fit_floor(mistake: Mistake, observations: Sequence[Observation]) -> list[dict[str, float]]:
    """The norm floor implied by the data: the smallest row with a gradient lies below the floor, where
    its gradient is ``∂L/∂n(x) / ε``; ε is solved from the adapter's gradient of that row (a fixed point:
    ``∂L/∂n(x)`` depends on ε only through ``n(x) = x / ε`` of such tiny rows). From the first
    :data:`_FIT_CASES` observations that have such a row; a floor of a named mistake is left to it."""
    out: list[dict[str, float]] = []
    for ob in observations:
        if len(out) == _FIT_CASES:
            break
        got = [getattr(ob.outputs, name, None) for name in ("grad_queries", "grad_docs")]
        if ob.config.similarity != "cos" or any(g is None for g in got):
            continue
        x = np.concatenate([ob.queries, ob.docs.reshape(-1, ob.queries.shape[1])])
        grad = np.concatenate([np.asarray(g, dtype=np.float64).reshape(-1, x.shape[1]) for g in got])
        norms = np.sqrt(np.sum(x * x, axis=1))
        size = np.sqrt(np.sum(grad * grad, axis=1))
        usable = np.flatnonzero(np.isfinite(size) & (size > 0) & (norms < 1e-3))
        if usable.size == 0:
            continue
        row = int(usable[np.argmin(norms[usable])])
        floor = 1e-8
        with np.errstate(all="ignore"):
            for _ in range(30):
                _, grad_v = emulate_with_unit_grads(
                    ob.queries, ob.docs, ob.config, mistake.emulation(floor=floor)
                )
                new = float(np.sqrt(np.sum(grad_v[row] ** 2)) / size[row])
                if not (math.isfinite(new) and new > 0):
                    break
                done = abs(new - floor) <= 1e-15 * floor
                floor = new
                if done:
                    break
        named = any(abs(floor - f) <= 1e-6 * f for f in _NAMED_FLOORS)
        if math.isfinite(floor) and floor > norms[row] and floor > COS_EPS and not named:
            out.append({"floor": floor})
    return out


def _cos(config: Config) -> bool:
    return config.similarity == "cos"


def _hardness(mode: str | None = None) -> Callable[[Config], bool]:
    return lambda c: c.hardness_active and (mode is None or c.hardness_mode == mode)


_TINY64, _TINY32 = float(np.finfo(np.float64).tiny), float(np.finfo(np.float32).tiny)

_ALL: tuple[Mistake, ...] = (
    # ---------------------------------------------------------------- rows and masks (§4)
    Mistake(
        "dq_transposed_qd_block", "DQ-1",
        "doc_to_query taken from the transposed query_to_doc block: the row of query g holds s(d[k, g], q_j) "
        "for every document column k, so its hard negatives act as anchors",
        "sentence-transformers PR #3607 review (doc_to_query from the transposed query_to_doc scores)", "dq_transposed_qd_block",
        {"dq_all_columns": True}, _has("doc_to_query"),
    ),
    Mistake(
        "dd_keeps_own_hard_negatives", "MASK-DD-2",
        "doc_to_doc masks only the own positive: the query's own hard negatives stay in its doc_to_doc row",
        "sentence-transformers PR #3607 (an intermediate revision; discussed in the PR, spec §13.2)", "dd_keeps_own_hard_negatives",
        {"dd_mask": "own_positive"}, _has("doc_to_doc"),
    ),
    Mistake(
        "dd_drops_all_hard_negatives", "DD-1",
        "doc_to_doc masks every hard-negative column, not only the query's own documents",
        "sentence-transformers PR #3607 (an intermediate revision)", "dd_drops_all_hard_negatives",
        {"dd_mask": "own_and_hard"}, _has("doc_to_doc"),
    ),
    Mistake(
        "qq_without_self_mask", "MASK-QQ-1",
        "query_to_query keeps q_g . q_g (the self-similarity) in the row of query g",
        "an unmasked query-query similarity block", "qq_without_self_mask",
        {"qq_mask": False}, _has("query_to_query"),
    ),
    # ---------------------------------------------------------------- hardness (§5)
    Mistake(
        "hardness_not_detached", "HARD-5",
        "hardness penalty alpha*s without stop-gradient (right loss, gradients with scale + alpha)",
        "a hardness term written without detach()", "hardness_not_detached",
        {"hardness_detached": False}, _hardness(),
    ),
    Mistake(
        "hardness_times_scale", "HARD-2",
        "hardness penalty added after temperature scaling: scale*alpha*s instead of alpha*s",
        "LLaVE (Lan et al. 2025) Eq. 5 puts alpha outside the temperature; spec §13.4", "hardness_times_scale",
        {"hardness_times_scale": True}, _hardness(),
    ),
    Mistake(
        "hardness_on_positive", "HARD-4",
        "the positive (0, g) also carries the hardness term, in the numerator and the partition",
        "a hardness selection that does not exclude the positive", "hardness_on_positive",
        {"hardness_on_positive": True}, _hardness(),
    ),
    Mistake(
        "hard_negatives_mode_all_columns", "HARD-3",
        "hardness_mode='hard_negatives' penalises every hard-negative column, other queries' hard negatives too",
        "sentence-transformers PR #3667 (draft revision of hardness weighting)", "hard_negatives_mode_all_columns",
        {"hard_negatives_all_columns": True}, _hardness("hard_negatives"),
    ),
    # ---------------------------------------------------------------- partition and loss (§6)
    Mistake(
        "per_direction_sum", "PART-3",
        "per_direction adds the per-direction log-partitions instead of averaging them",
        "a per-direction loss written as a sum of log-partitions", "per_direction_sum",
        {"groups": "sum_partitions"}, _groups("per_direction"),
    ),
    Mistake(
        "per_direction_sum_groups", "PART-3",
        "per_direction adds the per-direction losses (log Z - p) instead of averaging them: the groups' count "
        "times the spec's L",
        "a symmetric CLIP loss written as the sum of its two cross-entropies instead of their mean "
        "(the sum-over-groups deviation of docs/peers.md)", None,
        {"groups": "sum_losses"}, _groups("per_direction"),
    ),
    Mistake(
        "per_anchor_sum_groups", "PART-5",
        "per_anchor adds the loss over the query anchors and the loss over the doc anchors instead of "
        "averaging them: twice the spec's L",
        "tensorflow_similarity 0.17.1 SimCLRLoss: loss = loss_a + loss_b", "per_anchor_sum_groups",
        {"groups": "sum_losses"}, _groups("per_anchor"),
    ),
    Mistake(
        "per_anchor_split_rows", "PART-5",
        "per_anchor takes one softmax per direction instead of one per anchor, averaged over the directions",
        "NT-Xent written as the mean of separate cross-entropies per block of the 2N x 2N similarity matrix",
        "per_anchor_split_rows",
        {"anchor_rows_split": True},
        lambda c: c.partition_mode == "per_anchor" and any(len(g) > 1 for g in c.partition_groups),
    ),
    Mistake(
        "partition_without_positive", "QD-1",
        "the softmax denominator leaves out the positive: log Z_g sums over the negatives only",
        "DCL, decoupled contrastive learning (Yeh et al. 2022, Eq. 2) drops the positive from the denominator", "partition_without_positive",
        {"positive_in_partition": False},
    ),
    Mistake(
        "loss_summed", "LOSS-1",
        "the per-query losses are summed instead of averaged (N times the spec's L)",
        "a reduction='sum' cross-entropy", "loss_summed",
        {"loss_sum": True},
    ),
    Mistake(
        "logsumexp_unshifted", "NUM-1",
        "log(sum(exp(z))) without the max shift: inf loss and nan gradients once a logit overflows",
        "a hand-written log-sum-exp", "logsumexp_unshifted",
        {"shifted": False},
    ),
    Mistake(
        "positive_probability_floor", "NUM-1",
        "each partition's loss is -log(P(positive) + {positive_floor:.3g}): capped at -log of that tiny "
        "constant once the positive's probability underflows",
        "pytorch-metric-learning 2.9.0 NTXentLoss (docs/peers.md)", None,
        {}, _always, {"positive_floor": (_TINY64, _TINY32)},
    ),
    # ---------------------------------------------------------------- similarity and scale (§3)
    Mistake(
        "temperature_as_scale", "SCALE-1",
        "the scale argument is used as a temperature: logits s / scale instead of scale * s",
        "the scale = 1/temperature convention (sentence-transformers `temperature` property)", "temperature_as_scale",
        {"temperature": True}, lambda c: c.scale != 1.0,
    ),
    Mistake(
        "scale_detached_dq", "SCALE-2",
        "doc_to_query scale detached (dL/dscale misses the doc_to_query rows' share)",
        "a CLIP-style loss with a learnable logit scale that builds the text-side logits from a detached copy of the scale",
        "scale_detached_dq",
        {"detached_scale": frozenset({"doc_to_query"})}, _has("doc_to_query"),
    ),
    Mistake(
        "cos_without_eps", "SIM-1",
        "cos normalises with x / ||x|| (no floor): a zero vector gives nan",
        "cosine similarity written without an epsilon", "cos_without_eps",
        {"floor": None}, _cos,
    ),
    Mistake(
        "cos_eps_squared_norm", "SIM-1",
        "cos floors the squared norm at float64 eps, x / sqrt(max(||x||^2, 2.2e-16)): a norm floor of 1.49e-8 "
        "instead of 1e-12",
        "optax 0.2.8 losses.ntxent (its cosine similarity floors the squared norm at finfo.eps)",
        "cos_eps_squared_norm",
        {"floor": _SQRT_EPS64}, _cos,
    ),
    Mistake(
        "norm_floor_1e6", "SIM-1",
        "cos as x * rsqrt(max(||x||^2, 1e-12)): a norm floor of 1e-6 instead of 1e-12",
        "tf.math.l2_normalize (epsilon 1e-12 on the squared norm), used by tensorflow_similarity 0.17.1 SimCLRLoss", "norm_floor_1e6",
        {"floor": 1e-6}, _cos,
    ),
    Mistake(
        "cos_norm_floor", "SIM-1",
        "cos with a norm floor of {floor:.3g} instead of 1e-12 (x / max(||x||, {floor:.3g}), or the square of "
        "it on the squared norm)",
        "cosine similarities with another epsilon (docs/peers.md: torch's cosine_similarity floors at 1e-8, "
        "float32 eps on the squared norm is a floor of 3.45e-4)", None,
        {}, _cos, {"floor": _FLOORS}, _fit_floor,
    ),
)  # fmt: skip

#: Every known mistake by id: the embedding-level ones, then the data-parallel and GradCache ones.
MISTAKES: dict[str, Any] = {m.id: m for m in (*_ALL, *RANK_MISTAKES, *CACHE_MISTAKES, *MEMORY_MISTAKES)}
