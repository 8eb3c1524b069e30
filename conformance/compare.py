"""Worst-element comparison that names the clause (the suite's ``assert_close``).

A failure says what was computed, what the reference says, the worst element and its index, the
allowed bound (from :mod:`.tolerances`), how many elements are out, and the clause. The replay
command is added by the report once the reproducer is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "AdapterFault",
    "ConformanceFailure",
    "Mismatch",
    "PremiseFailure",
    "check_close",
    "check_shape",
    "fail",
]


@dataclass(frozen=True)
class Mismatch:
    """The worst element of a failed comparison."""

    quantity: str
    index: tuple[int, ...]
    computed: float
    expected: float
    difference: float
    bound: float
    n_bad: int
    n_total: int

    @property
    def ratio(self) -> float:
        """``difference / bound`` (how many times the allowed error)."""
        if self.bound == 0:
            return float("inf") if self.difference else 0.0
        return self.difference / self.bound


class ConformanceFailure(AssertionError):
    """A property found a violation of ``clause``. ``case`` is attached by the runner (the reproducer)."""

    def __init__(
        self,
        clause: str,
        message: str,
        *,
        mismatch: Mismatch | None = None,
        also: tuple[ConformanceFailure, ...] = (),
    ) -> None:
        self.clause = clause
        self.detail = message
        self.mismatch = mismatch
        #: Further, independent verdicts found on the same case (e.g. DP-2 for the reported losses and
        #: DP-3 for the gradients): each is a failure of its own clause.
        self.also = also
        self.case: dict[str, Any] | None = None
        self.property_name: str | None = None
        super().__init__(f"[{clause}] {message}")


class PremiseFailure(ConformanceFailure):
    """The property could not check its own clause on this case: a simpler variant of the same case
    (the feature under test switched off -- no perturbation, moderate logits, no hardness, ``joint``,
    one direction at a time, W = 1, the uncached path) is already wrong.

    ``clause`` is what that simpler check blames (where the bug is more likely to be); ``premise``
    says which variant failed. The diagnosis files the property as "follows from" the root cause it
    finds, never as a failure of the property's own clause.
    """

    def __init__(self, clause: str, premise: str, message: str, *, mismatch: Mismatch | None = None) -> None:
        self.premise = premise
        super().__init__(clause, f"premise not met ({premise}): {message}", mismatch=mismatch)


class AdapterFault(Exception):
    """The implementation under test misbehaved instead of answering: it raised, hung, died, or
    returned something that is not a result (``None``, a wrong type, shape or dtype, a non-finite
    value where finite is claimed).

    A fault is one verdict -- never shrunk like a number, never filed under every property that met
    it. ``kind`` is a short word (``exception``, ``timeout``, ``crash``, ``memory``, ``output``);
    ``clause`` is the output-contract clause the fault breaks when there is one (e.g. ``SCALE-2`` for
    a missing scale gradient, ``LAYOUT-2`` for a wrongly shaped ``grad_docs``), else ``None``;
    ``call`` names the adapter method, ``rank`` the data-parallel rank (``None`` in process);
    ``frame`` is the last frame of the adapter's traceback (or the hung frame's stack) as text.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        clause: str | None = None,
        call: str | None = None,
        rank: int | None = None,
        frame: str | None = None,
    ) -> None:
        self.kind = kind
        self.detail = message
        self.clause = clause
        self.call = call
        self.rank = rank
        self.frame = frame
        self.case: dict[str, Any] | None = None
        super().__init__(message)


def fail(clause: str, message: str) -> ConformanceFailure:
    """A failure without a numeric comparison (raise it)."""
    return ConformanceFailure(clause, message)


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def check_shape(computed: Any, shape: tuple[int, ...], quantity: str, clause: str) -> np.ndarray:
    """``computed`` as a float64 array of ``shape`` or a failure naming the layout."""
    try:
        arr = np.asarray(computed, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise fail(clause, f"{quantity}: could not be read as a float array ({exc})") from None
    if arr.shape != tuple(shape):
        raise fail(
            clause,
            f"{quantity} has shape {arr.shape}, but the reference has {tuple(shape)} (layout, LAYOUT-2)",
        )
    return arr


def check_close(
    computed: Any,
    expected: Any,
    bound: Any,
    *,
    quantity: str,
    clause: str,
    what: str = "reference",
) -> float:
    """Raise :class:`ConformanceFailure` unless ``|computed - expected| <= bound`` elementwise.

    ``bound`` broadcasts against ``expected``. Non-finite computed values where the reference is
    finite always fail. Returns the worst ``difference / bound`` ratio (for the margin statistics).
    """
    exp = np.asarray(expected, dtype=np.float64)
    comp = check_shape(computed, exp.shape, quantity, clause)
    bnd = np.broadcast_to(np.asarray(bound, dtype=np.float64), exp.shape)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(comp - exp)
        nonfinite = ~np.isfinite(comp) & np.isfinite(exp)
        diff = np.where(nonfinite, np.inf, diff)
        diff = np.where(~np.isfinite(comp) & ~np.isfinite(exp) & (comp == exp), 0.0, diff)
        ratio = np.where(bnd > 0, diff / np.where(bnd > 0, bnd, 1.0), np.where(diff > 0, np.inf, 0.0))
    ratio = np.where(np.isnan(ratio), np.inf, ratio)
    if ratio.size == 0:
        return 0.0
    bad = ratio > 1.0
    worst = np.unravel_index(int(np.argmax(ratio)), ratio.shape) if ratio.ndim else ()
    worst_ratio = float(ratio[worst]) if ratio.ndim else float(ratio)
    if not bool(np.any(bad)):
        return worst_ratio
    idx = tuple(int(i) for i in worst)
    c, e, b, dv = (float(a[idx]) if a.ndim else float(a) for a in (comp, exp, bnd, diff))
    mismatch = Mismatch(quantity, idx, c, e, dv, b, int(np.sum(bad)), int(ratio.size))
    where = f" at index {idx}" if idx else ""
    if not np.isfinite(c):
        text = (
            f"{quantity}: computed {_fmt(c)} (non-finite){where} where the {what} is {_fmt(e)} "
            f"(finite outputs for finite inputs, NUM-1/GRAD-2); {mismatch.n_bad} of {mismatch.n_total} elements out"
        )
    else:
        text = (
            f"{quantity}: {mismatch.n_bad} of {mismatch.n_total} elements out of tolerance; worst{where}: "
            f"computed {_fmt(c)}, {what} {_fmt(e)}, |difference| {dv:.3g} > allowed {b:.3g} "
            f"({mismatch.ratio:.3g} x the bound)"
        )
    raise ConformanceFailure(clause, text, mismatch=mismatch)
