"""The loss configuration and its validation (clauses DIR-1, DIR-2, PART-1, PART-4, SCALE-1, SIM-3, HARD-1).

The option names and strings are exactly sentence-transformers' (``query_to_doc``, ``joint``,
``in_batch_negatives``, ...), so a configuration can be read across without translation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Literal

from infonce_spec.errors import SpecTypeError, SpecViolation

__all__ = [
    "DIRECTIONS",
    "HARDNESS_MODES",
    "PARTITION_MODES",
    "PER_DIRECTION_ALLOWED",
    "SIMILARITIES",
    "Config",
    "Direction",
    "HardnessMode",
    "PartitionMode",
    "Similarity",
]

Direction = Literal["query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc"]
PartitionMode = Literal["joint", "per_direction"]
Similarity = Literal["cos", "dot"]
HardnessMode = Literal["in_batch_negatives", "hard_negatives", "all_negatives"]

#: The four directions in canonical order (DIR-2: order is irrelevant, so configs are stored in this one).
DIRECTIONS: tuple[Direction, ...] = ("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc")
PARTITION_MODES: tuple[PartitionMode, ...] = ("joint", "per_direction")
SIMILARITIES: tuple[Similarity, ...] = ("cos", "dot")
HARDNESS_MODES: tuple[HardnessMode, ...] = ("in_batch_negatives", "hard_negatives", "all_negatives")
#: PART-4: per_direction is defined only where every row contains the positive pair.
PER_DIRECTION_ALLOWED: frozenset[str] = frozenset({"query_to_doc", "doc_to_query"})


def _real(value: object, clause: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise SpecTypeError(clause, f"{name} must be a real number, got {type(value).__name__} {value!r}")
    return float(value)


@dataclass(frozen=True)
class Config:
    """One member of the loss family, validated on construction (VAL-1).

    ``directions`` is canonicalised: duplicates are dropped and the order becomes
    :data:`DIRECTIONS` order (DIR-2), so two configs that mean the same loss compare equal.
    """

    directions: tuple[Direction, ...] = ("query_to_doc",)
    partition_mode: PartitionMode = "joint"
    scale: float = 20.0
    similarity: Similarity = "cos"
    hardness_mode: HardnessMode | None = None
    hardness_strength: float = 0.0

    def __post_init__(self) -> None:
        directions = self.directions
        if isinstance(directions, str) or not hasattr(directions, "__iter__"):
            raise SpecTypeError("DIR-1", f"directions must be a sequence of names, got {directions!r}")
        names = list(directions)
        if not names:
            raise SpecViolation("DIR-1", "directions must not be empty")
        unknown = [n for n in names if n not in DIRECTIONS]
        if unknown:
            raise SpecViolation("DIR-1", f"unknown direction(s) {unknown!r}; valid: {list(DIRECTIONS)}")
        if "query_to_doc" not in names:
            raise SpecViolation(
                "DIR-1", "directions must contain 'query_to_doc' (it holds the positive pair)"
            )
        object.__setattr__(self, "directions", tuple(d for d in DIRECTIONS if d in names))

        if self.partition_mode not in PARTITION_MODES:
            raise SpecViolation(
                "PART-1",
                f"partition_mode must be one of {list(PARTITION_MODES)}, got {self.partition_mode!r}",
            )
        if self.partition_mode == "per_direction" and not set(self.directions) <= PER_DIRECTION_ALLOWED:
            bad = sorted(set(self.directions) - PER_DIRECTION_ALLOWED)
            raise SpecViolation(
                "PART-4",
                f"partition_mode='per_direction' is defined only for subsets of "
                f"{sorted(PER_DIRECTION_ALLOWED)}; {bad} rows never contain the positive pair. "
                "Use partition_mode='joint'.",
            )

        scale = _real(self.scale, "SCALE-1", "scale")
        if not (math.isfinite(scale) and scale > 0.0):
            raise SpecViolation("SCALE-1", f"scale must be finite and > 0, got {self.scale!r}")
        object.__setattr__(self, "scale", scale)

        if self.similarity not in SIMILARITIES:
            raise SpecViolation(
                "SIM-3", f"similarity must be one of {list(SIMILARITIES)}, got {self.similarity!r}"
            )

        if self.hardness_mode is not None and self.hardness_mode not in HARDNESS_MODES:
            raise SpecViolation(
                "HARD-1",
                f"hardness_mode must be None or one of {list(HARDNESS_MODES)}, got {self.hardness_mode!r}",
            )
        strength = _real(self.hardness_strength, "HARD-1", "hardness_strength")
        if not (math.isfinite(strength) and strength >= 0.0):
            raise SpecViolation(
                "HARD-1", f"hardness_strength must be finite and >= 0, got {self.hardness_strength!r}"
            )
        object.__setattr__(self, "hardness_strength", strength)

    @property
    def temperature(self) -> float:
        """``1 / scale`` (SCALE-1)."""
        return 1.0 / self.scale

    @property
    def hardness_active(self) -> bool:
        """HARD-6: hardness changes the loss only with a mode and a positive strength."""
        return self.hardness_mode is not None and self.hardness_strength > 0.0

    def replace(self, **changes: object) -> Config:
        """A copy with ``changes`` applied (validated again)."""
        fields = {
            "directions": self.directions,
            "partition_mode": self.partition_mode,
            "scale": self.scale,
            "similarity": self.similarity,
            "hardness_mode": self.hardness_mode,
            "hardness_strength": self.hardness_strength,
        }
        fields.update(changes)
        return Config(**fields)  # type: ignore[arg-type]
