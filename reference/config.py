"""The loss configuration and its validation (clauses DIR-1, DIR-2, PART-1, PART-4, PART-6, SCALE-1, SIM-3, HARD-1).

The option names and strings are exactly sentence-transformers' (``query_to_doc``, ``joint``,
``in_batch_negatives``, ...), taken from :mod:`infonce_spec.vocabulary`, so a configuration can be
read across without translation.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from numbers import Real

from infonce_spec.errors import SpecTypeError, SpecViolation
from infonce_spec.vocabulary import (
    DIRECTIONS,
    HARDNESS_MODES,
    PARTITION_MODES,
    PER_DIRECTION_ALLOWED,
    REQUIRED_DIRECTION,
    SIMILARITIES,
    Direction,
    HardnessMode,
    PartitionMode,
    Similarity,
    groups_without_positive,
    partition_groups,
)

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


def _real(value: object, clause: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise SpecTypeError(clause, f"{name} must be a real number, got {type(value).__name__} {value!r}")
    return float(value)


def _check_directions(directions: object) -> list[str]:
    """DIR-1: a non-empty collection of known names that contains query_to_doc."""
    if isinstance(directions, str) or not hasattr(directions, "__iter__"):
        raise SpecTypeError("DIR-1", f"directions must be a sequence of names, got {directions!r}")
    names = list(directions)  # type: ignore[call-overload]
    if not names:
        raise SpecViolation("DIR-1", "directions must not be empty")
    unknown = [n for n in names if n not in DIRECTIONS]
    if unknown:
        raise SpecViolation("DIR-1", f"unknown direction(s) {unknown!r}; valid: {list(DIRECTIONS)}")
    if REQUIRED_DIRECTION not in names:
        raise SpecViolation(
            "DIR-1", f"directions must contain {REQUIRED_DIRECTION!r} (it holds the positive pair)"
        )
    return names


@dataclass(frozen=True)
class Config:
    """One member of the loss family, validated on construction (VAL-1).

    ``directions`` is canonicalised: duplicates are dropped and the order becomes
    :data:`DIRECTIONS` order (DIR-2), so two configs that mean the same loss compare equal.
    :meth:`with_given_directions` makes the one exception: a copy that keeps an order and
    repetitions as given, for handing to an implementation under test (DIR-2 says they must not
    matter); the reference itself reads :attr:`selected_directions`, the set.
    """

    directions: tuple[Direction, ...] = ("query_to_doc",)
    partition_mode: PartitionMode = "joint"
    scale: float = 20.0
    similarity: Similarity = "cos"
    hardness_mode: HardnessMode | None = None
    hardness_strength: float = 0.0
    #: Keep ``directions`` in the given order, repetitions included (see :meth:`with_given_directions`).
    keep_given_order: bool = field(default=False, repr=False, compare=False, kw_only=True)

    def __post_init__(self) -> None:
        names = _check_directions(self.directions)
        canonical = tuple(d for d in DIRECTIONS if d in names)
        object.__setattr__(self, "directions", tuple(names) if self.keep_given_order else canonical)

        if self.partition_mode not in PARTITION_MODES:
            raise SpecViolation(
                "PART-1",
                f"partition_mode must be one of {list(PARTITION_MODES)}, got {self.partition_mode!r}",
            )
        if self.partition_mode == "per_direction" and not set(canonical) <= PER_DIRECTION_ALLOWED:
            bad = sorted(set(canonical) - PER_DIRECTION_ALLOWED)
            raise SpecViolation(
                "PART-4",
                f"partition_mode='per_direction' is defined only for subsets of "
                f"{sorted(PER_DIRECTION_ALLOWED)}; {bad} rows never contain the positive pair. "
                "Use partition_mode='joint'.",
            )
        bare = groups_without_positive(self.partition_mode, canonical)
        if bare:
            raise SpecViolation(
                "PART-6",
                f"partition_mode={self.partition_mode!r} groups the directions as "
                f"{[list(g) for g in partition_groups(self.partition_mode, canonical)]}; the group(s) "
                f"{[list(g) for g in bare]} hold no row with the positive pair (query_to_doc or "
                "doc_to_query). Add 'doc_to_query' or use partition_mode='joint'.",
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
    def selected_directions(self) -> tuple[Direction, ...]:
        """The set of selected directions in canonical order (DIR-2): what the loss depends on."""
        return tuple(d for d in DIRECTIONS if d in self.directions)

    @property
    def partition_groups(self) -> tuple[tuple[Direction, ...], ...]:
        """The groups of the selected directions that share a log-partition (§6: PART-2, PART-3,
        PART-5), in canonical order."""
        return partition_groups(self.partition_mode, self.selected_directions)  # type: ignore[return-value]

    @property
    def temperature(self) -> float:
        """``1 / scale`` (SCALE-1)."""
        return 1.0 / self.scale

    @property
    def hardness_active(self) -> bool:
        """HARD-6: hardness changes the loss only with a mode and a positive strength."""
        return self.hardness_mode is not None and self.hardness_strength > 0.0

    def replace(self, **changes: object) -> Config:
        """:func:`dataclasses.replace`: a copy with ``changes`` applied, validated again (VAL-1)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def with_given_directions(self, directions: Sequence[str]) -> Config:
        """A copy whose ``directions`` are exactly ``directions`` (validated, DIR-1; order and
        repetitions kept), for handing to an implementation under test (DIR-2)."""
        return dataclasses.replace(self, directions=tuple(directions), keep_given_order=True)  # type: ignore[arg-type]
