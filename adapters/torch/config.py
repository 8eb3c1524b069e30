"""Loss options and their validation (clauses DIR-1, DIR-2, PART-1, PART-4, PART-6, SCALE-1, SIM-3, HARD-1, VAL-1).

The option names and strings are the spec's (and sentence-transformers'): ``directions``,
``partition_mode``, ``scale``, ``similarity``, ``hardness_mode``, ``hardness_strength``,
``gather_across_devices``; the names come from :mod:`infonce_spec.vocabulary` (names only: the
math below is this package's own). :class:`LossConfig` is the one declaration of the options: the
modules take them as keyword arguments and validate them through it. Every rejected option raises :class:`~infonce_spec.errors.SpecViolation`
(or :class:`~infonce_spec.errors.SpecTypeError`) naming the clause it breaks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

import torch

from infonce_spec.errors import SpecTypeError, SpecViolation
from infonce_spec.vocabulary import (
    DIRECTIONS,
    HARDNESS_MODES,
    PARTITION_MODES,
    PER_DIRECTION_ALLOWED,
    REQUIRED_DIRECTION,
    SIMILARITIES,
)

__all__ = [
    "ALL_DIRECTIONS",
    "HARDNESS_MODES",
    "PARTITION_MODES",
    "SIMILARITIES",
    "LossConfig",
    "ScaleLike",
]

ScaleLike = float | torch.Tensor

#: DIR-2: the canonical order; a config's directions are stored deduplicated in this order.
ALL_DIRECTIONS: tuple[str, ...] = DIRECTIONS
#: PART-4: per_direction only where every row holds the positive pair.
_PER_DIRECTION_OK = PER_DIRECTION_ALLOWED


def _finite_real(value: object, clause: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise SpecTypeError(clause, f"{name} must be a real number, got {type(value).__name__} {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise SpecViolation(clause, f"{name} must be finite, got {value!r}")
    return out


def _check_scale(scale: object) -> ScaleLike:
    """SCALE-1: a finite number > 0, or a 0-d floating tensor holding one (learnable scale, SCALE-2).

    A tensor scale is read once with ``.item()`` to validate it (a device sync on accelerators).
    """
    if isinstance(scale, torch.Tensor):
        if scale.ndim != 0 or not scale.is_floating_point():
            raise SpecTypeError(
                "SCALE-1",
                f"a tensor scale must be a 0-d floating tensor, got {scale.dtype} {tuple(scale.shape)}",
            )
        value = float(scale.detach().item())
        if not (math.isfinite(value) and value > 0.0):
            raise SpecViolation("SCALE-1", f"scale must be finite and > 0, got {value!r}")
        return scale
    value = _finite_real(scale, "SCALE-1", "scale")
    if not value > 0.0:
        raise SpecViolation("SCALE-1", f"scale must be > 0, got {scale!r}")
    return value


@dataclass(frozen=True, eq=False)
class LossConfig:
    """One member of the loss family, validated on construction (VAL-1).

    ``directions`` is deduplicated and put in canonical order (DIR-2). ``scale`` is a float or a
    0-d tensor (then the loss is differentiable in it, SCALE-2). ``gather_across_devices`` turns on
    the data-parallel layout (DP-1) when a process group is initialised; ``group`` picks the group
    (``None``: the default group).
    """

    directions: tuple[str, ...] = ("query_to_doc",)
    partition_mode: str = "joint"
    scale: ScaleLike = 20.0
    similarity: str = "cos"
    hardness_mode: str | None = None
    hardness_strength: float = 0.0
    gather_across_devices: bool = False
    group: object | None = None

    def __post_init__(self) -> None:
        directions = self.directions
        if isinstance(directions, str) or not hasattr(directions, "__iter__"):
            raise SpecTypeError(
                "DIR-1", f"directions must be a sequence of direction names, got {directions!r}"
            )
        names = list(directions)
        if not names:
            raise SpecViolation("DIR-1", "directions must not be empty")
        unknown = [name for name in names if name not in ALL_DIRECTIONS]
        if unknown:
            raise SpecViolation("DIR-1", f"unknown direction(s) {unknown!r}; valid: {list(ALL_DIRECTIONS)}")
        if REQUIRED_DIRECTION not in names:
            raise SpecViolation(
                "DIR-1", f"directions must contain {REQUIRED_DIRECTION!r} (it holds the positive)"
            )
        object.__setattr__(self, "directions", tuple(d for d in ALL_DIRECTIONS if d in names))

        if not isinstance(self.partition_mode, str) or self.partition_mode not in PARTITION_MODES:
            raise SpecViolation(
                "PART-1",
                f"partition_mode must be one of {list(PARTITION_MODES)}, got {self.partition_mode!r}",
            )
        if self.partition_mode == "per_direction" and not set(self.directions) <= _PER_DIRECTION_OK:
            extra = sorted(set(self.directions) - _PER_DIRECTION_OK)
            raise SpecViolation(
                "PART-4",
                f"partition_mode='per_direction' needs directions within {sorted(_PER_DIRECTION_OK)}; "
                f"{extra} rows never contain the positive pair (use partition_mode='joint')",
            )
        if (
            self.partition_mode == "per_anchor"
            and "doc_to_doc" in self.directions
            and "doc_to_query" not in self.directions
        ):
            raise SpecViolation(
                "PART-6",
                "partition_mode='per_anchor' groups doc_to_doc with the rows of the positive d[0, g]; "
                "without doc_to_query that group never contains the positive pair "
                "(add 'doc_to_query' or use partition_mode='joint')",
            )

        object.__setattr__(self, "scale", _check_scale(self.scale))

        if not isinstance(self.similarity, str) or self.similarity not in SIMILARITIES:
            raise SpecViolation(
                "SIM-3", f"similarity must be one of {list(SIMILARITIES)}, got {self.similarity!r}"
            )

        if self.hardness_mode is not None and self.hardness_mode not in HARDNESS_MODES:
            raise SpecViolation(
                "HARD-1",
                f"hardness_mode must be None or one of {list(HARDNESS_MODES)}, got {self.hardness_mode!r}",
            )
        strength = _finite_real(self.hardness_strength, "HARD-1", "hardness_strength")
        if strength < 0.0:
            raise SpecViolation("HARD-1", f"hardness_strength must be >= 0, got {self.hardness_strength!r}")
        object.__setattr__(self, "hardness_strength", strength)

        if not isinstance(self.gather_across_devices, bool):
            raise SpecTypeError(
                "DP-1",
                f"gather_across_devices must be a bool, got {type(self.gather_across_devices).__name__}",
            )

    @property
    def hardness_active(self) -> bool:
        """HARD-6: hardness changes the loss only with a mode and a strength > 0."""
        return self.hardness_mode is not None and self.hardness_strength > 0.0

    @property
    def scale_requires_grad(self) -> bool:
        """SCALE-2: whether the loss must be differentiable in ``scale``."""
        return isinstance(self.scale, torch.Tensor) and self.scale.requires_grad
