"""CACHE-5 mistakes: how the peak memory of a cached training step grows with the batch.

The values of these implementations are right; what is wrong is the memory their loss stage holds.
CACHE-5's property (:class:`~..properties.cached.LossStageMemory`) measures the peak at N1 and N2
queries with one document each, at a fixed ``mini_batch_size`` m; when the peak grows faster than
linearly in N it measures it once more at N2 with K documents per query (where the claim allows
hard negatives): the candidates C of a query's rows grow K-fold, N stays. How the peak grows in N
and in K (its exponents, :class:`MemoryObservation`) tells the known mistakes apart:

* the spec, O(m x C): linear in N and about linear in K;
* an N x N array in the loss stage (a mask or an identity over the whole batch, sliced per chunk):
  quadratic in N, and hardly growing with K (``cache_full_mask``);
* every chunk's graph kept alive until one backward pass at the end, O(N x C): quadratic in N and
  linear in K (``cache_backward_once``).

Measured (torch, the property's sizes N = 32 -> 256, K = 1 -> 3, ``query_to_doc`` and
``doc_to_doc``): the full mask N^1.68, K^0.12; the single backward N^1.96, K^1.00; the bundled
cached loss N^0.99, K^0.85. A mistake matches when the measured exponents are within
:data:`EXPONENT_TOLERANCE` of what it predicts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .higher import HigherMistake

__all__ = ["EXPONENT_TOLERANCE", "MEMORY_MISTAKES", "MemoryMistake", "MemoryObservation"]

#: A measured exponent matches a predicted one within this much (in N, the prediction is 2 and the
#: property fails beyond 1.25; in K, 0 and 1 are told apart).
EXPONENT_TOLERANCE = (0.75, 0.5)
#: The spec's growth exponent in N: O(m x C) at a fixed ``mini_batch_size`` m, C ~ N.
LINEAR_N = 1.0


@dataclass(frozen=True)
class MemoryObservation:
    """Peak bytes of one cached step: ``peaks[0]`` at ``n[0]`` queries, ``peaks[1]`` at ``n[1]``
    (one document each), ``peaks[2]`` at ``n[1]`` queries with ``k`` documents each."""

    n: tuple[int, int]
    k: int
    peaks: tuple[int, int, int]
    kind: str = field(default="memory", init=False)

    @property
    def exponents(self) -> tuple[float, float]:
        """How the peak grows: ``(e_N, e_K)`` with peak ~ N^e_N at K = 1 and ~ K^e_K at N = n[1]
        (NaN, which matches nothing, where a peak is not positive)."""
        p1, p2, p3 = self.peaks
        if min(p1, p2, p3) <= 0:
            return math.nan, math.nan
        return math.log(p2 / p1) / math.log(self.n[1] / self.n[0]), math.log(p3 / p2) / math.log(self.k)

    def agrees(self, predicted: tuple[float, float], bounds: tuple[float, float], dtype: str) -> bool:
        """Whether both exponents are within ``bounds`` of ``predicted``."""
        return all(abs(e - p) < b for e, p, b in zip(self.exponents, predicted, bounds, strict=True))

    def shows(self, predicted: tuple[float, float], dtype: str) -> bool:
        """Whether the predicted growth breaks CACHE-5 (faster than linear in N)."""
        return predicted[0] - LINEAR_N >= EXPONENT_TOLERANCE[0]


@dataclass(frozen=True)
class MemoryMistake(HigherMistake):
    """A CACHE-5 mistake: the exponents ``(e_N, e_K)`` of its peak memory (module docstring)."""

    growth: tuple[float, float] = (1.0, 1.0)
    kind: str = field(default="memory", init=False)

    def applies(self, ob: MemoryObservation) -> bool:
        return ob.k > 1

    def predict(self, ob: MemoryObservation, dtype: str) -> tuple[tuple[float, float], tuple[float, float]]:
        """The predicted exponents and the tolerance."""
        return self.growth, EXPONENT_TOLERANCE


MEMORY_MISTAKES: tuple[MemoryMistake, ...] = (
    MemoryMistake(
        "cache_full_mask", "CACHE-5",
        "the loss stage holds an N x N array (a mask or identity over the whole batch, sliced per "
        "chunk): its peak memory grows as N^2 and hardly with the candidates per query",
        "sentence-transformers MultipleNegativesRankingLoss `torch.eye(world_batch_size)[local_indices]` masks",
        ("cache_full_mask",), {}, growth=(2.0, 0.0),
    ),
    MemoryMistake(
        "cache_backward_once", "CACHE-5",
        "the loss stage keeps every chunk's graph until one backward pass at the end: its peak memory "
        "is O(N x candidates), N^2 at a fixed K and linear in K",
        "GradCache's point (Gao et al. 2021, §3.2): the loss stage must not hold the full score "
        "matrix's graph",
        ("cache_backward_once",), {}, growth=(2.0, 1.0),
    ),
)  # fmt: skip
