"""Hypothesis strategies for the loss family, reaching the corners where real bugs live.

Reusable outside the suite: ``from infonce_spec.conformance.strategies import configs, batches``.

Corners reached on purpose: ``B = 1``, ``K = 1``, ``D = 1``; zero vectors and vectors below the cos
eps (norm ~1e-14, SIM-1 / GRAD-3), tiny vectors above it (1e-9), large-norm vectors (1e3, NUM-1);
duplicated rows (ties, and a duplicate of the query among the keys: MASK-QQ-1 must mask by index,
not by value); scales from 0.05 to 1e3; hardness strengths 0 (HARD-6) to 10. Values are either
small integers (which shrink to readable examples) or Gaussian from a seed.

Every draw made through :func:`draw_config` / :func:`draw_batch` is labelled (``data.draw(...,
label=...)``) so a shrunk failure reads like a test case.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from infonce_spec.reference import Config
from infonce_spec.vocabulary import (
    DIRECTIONS,
    HARDNESS_MODES,
    PARTITION_MODES,
    SIMILARITIES,
    groups_without_positive,
)

from .protocol import Capabilities
from .tolerances import cos_eps_ambiguous, round_to_dtype

__all__ = [
    "CORNER_FACTORS",
    "batches",
    "configs",
    "direction_sets",
    "draw_batch",
    "draw_config",
    "draw_embeddings",
    "draw_shape",
    "embeddings",
    "hardness_strengths",
    "scales",
]

#: Row multipliers of the corner rows: zero, below the cos eps, tiny above it, large.
CORNER_FACTORS: tuple[float, ...] = (0.0, 1e-14, 1e-9, 1e3)


def scales(max_scale: float = 1e3) -> st.SearchStrategy[float]:
    """``scale = 1/temperature`` (SCALE-1): the usual 20 and 1, the extremes, and anything between."""
    fixed = [s for s in (20.0, 1.0, max_scale, 0.05) if s <= max_scale]
    return st.one_of(
        st.sampled_from(fixed), st.floats(0.05, max_scale, allow_nan=False, allow_infinity=False)
    )


def hardness_strengths() -> st.SearchStrategy[float]:
    """alpha >= 0 (HARD-1): 0 (HARD-6), typical values, anything up to 10."""
    return st.one_of(st.sampled_from([0.0, 1.0, 5.0]), st.floats(0.0, 10.0, allow_nan=False))


def direction_sets(allowed: frozenset[str] | None = None) -> st.SearchStrategy[tuple[str, ...]]:
    """Valid ``directions`` (DIR-1): ``query_to_doc`` plus any subset of the others in ``allowed``."""
    allowed = frozenset(DIRECTIONS) if allowed is None else allowed
    others = [d for d in DIRECTIONS[1:] if d in allowed]
    return (
        st.lists(st.sampled_from(others), unique=True, max_size=len(others)).map(
            lambda extra: ("query_to_doc", *extra)
        )
        if others
        else st.just(("query_to_doc",))
    )


class _Drawer:
    """``st.composite``'s ``draw`` in the shape of ``st.data()`` (labels dropped), so that one
    ``draw_*`` function serves both the labelled and the strategy form."""

    def __init__(self, draw: Any) -> None:
        self._draw = draw

    def draw(self, strategy: Any, label: str | None = None) -> Any:
        return self._draw(strategy)


#: Without ``caps``, the strategies draw from every name of the spec.
_EVERY_NAME = Capabilities(
    name="any",
    directions=frozenset(DIRECTIONS),
    partition_modes=frozenset(PARTITION_MODES),
    similarities=frozenset(SIMILARITIES),
    hardness_modes=frozenset(HARDNESS_MODES),
)


def _caps(caps: Capabilities | None) -> Capabilities:
    return caps if caps is not None else _EVERY_NAME


def draw_config(
    data: Any,
    caps: Capabilities | None = None,
    *,
    directions: tuple[str, ...] | None = None,
    partition_mode: str | None = None,
    similarity: str | None = None,
    hardness: bool | None = None,
    scale: st.SearchStrategy[float] | None = None,
) -> Config:
    """A :class:`Config` within ``caps``; fixed fields are not drawn. ``hardness``: ``None`` may or
    may not draw a mode, ``True`` always draws a mode and a positive strength, ``False`` never.

    With an exact claim (``caps.configurations``) the directions and partition mode are drawn as one
    claimed pair (simplest first, so shrinking reaches the simplest claimed configuration);
    otherwise the directions are drawn within ``caps.directions`` and a mode that the spec defines
    for them (PART-4, PART-6) within ``caps.partition_modes``."""
    c = _caps(caps)
    if c.configurations is not None:
        directions, partition_mode = _draw_claimed_shape(data, c, directions, partition_mode)
    if directions is None:
        directions = data.draw(direction_sets(c.directions), label="directions")
    if partition_mode is None:
        modes = sorted(c.partition_modes)
        modes = [m for m in modes if not groups_without_positive(m, tuple(directions))]  # PART-4, PART-6
        assume(modes)
        partition_mode = data.draw(st.sampled_from(modes), label="partition_mode")
    if similarity is None:
        similarity = data.draw(st.sampled_from(sorted(c.similarities)), label="similarity")
    mode, strength = None, 0.0
    hard_modes = [m for m in HARDNESS_MODES if m in c.hardness_modes]
    if hardness is not False and hard_modes:
        options = hard_modes if hardness else [None, *hard_modes]
        mode = data.draw(st.sampled_from(options), label="hardness_mode")
        if mode is not None:
            strengths = st.floats(0.1, 10.0) if hardness else hardness_strengths()
            strength = data.draw(strengths, label="hardness_strength")
    s = data.draw(scale if scale is not None else scales(), label="scale")
    return Config(
        directions=directions,
        partition_mode=partition_mode,
        scale=s,
        similarity=similarity,
        hardness_mode=mode,
        hardness_strength=strength,
    )


def _draw_claimed_shape(
    data: Any, caps: Capabilities, directions: tuple[str, ...] | None, partition_mode: str | None
) -> tuple[tuple[str, ...], str]:
    """An exact claim's ``(directions, partition_mode)`` (``Capabilities.configurations``) that agrees
    with the fixed fields; a fixed pair that is not claimed is rejected (``assume``), so a property
    that fixes one must say so in its ``requires``. Fixed directions are kept as given (DIR-2)."""
    shapes = caps.find_shapes(directions=directions, partition_mode=partition_mode)
    assume(shapes)
    if directions is not None and partition_mode is not None:
        return directions, partition_mode
    dirs, mode = data.draw(st.sampled_from(shapes), label="directions, partition_mode")
    return (dirs if directions is None else directions), mode


@st.composite
def configs(draw: Any, caps: Capabilities | None = None, **fixed: Any) -> Config:
    """The strategy form of :func:`draw_config` (unlabelled)."""
    return draw_config(_Drawer(draw), caps, **fixed)


def draw_shape(
    data: Any,
    caps: Capabilities | None = None,
    *,
    max_n: int = 5,
    min_k: int = 1,
    max_k: int = 3,
    min_d: int = 1,
    max_d: int = 8,
) -> tuple[int, int, int]:
    """``(N, K, D)``; shrinks to the corner ``(1, min_k, min_d)``; K within ``caps.max_k``."""
    c = _caps(caps)
    if c.max_k is not None:
        max_k = min(max_k, c.max_k)
    assume(min_k <= max_k)
    n = data.draw(st.integers(1, max_n), label="N")
    k = data.draw(st.integers(min_k, max_k), label="K")
    d = data.draw(st.integers(min_d, max_d), label="D")
    return n, k, d


def draw_embeddings(data: Any, rows: int, d: int, *, corners: bool = True, label: str = "x") -> np.ndarray:
    """A (rows, d) float64 array: small integers or seeded Gaussians, then corner rows and duplicates."""
    kind = data.draw(st.sampled_from(["integers", "gaussian"]), label=f"{label}.values")
    if kind == "integers":
        flat = data.draw(st.lists(st.integers(-2, 2), min_size=rows * d, max_size=rows * d), label=label)
        x = np.asarray(flat, dtype=np.float64).reshape(rows, d)
    else:
        seed = data.draw(st.integers(0, 2**32 - 1), label=f"{label}.seed")
        x = np.random.default_rng(seed).standard_normal((rows, d))
    if corners and rows > 0:
        special = data.draw(
            st.lists(st.tuples(st.integers(0, rows - 1), st.sampled_from(CORNER_FACTORS)), max_size=2),
            label=f"{label}.corner_rows",
        )
        for row, factor in special:
            x[row] *= factor
        dupes = data.draw(
            st.lists(st.tuples(st.integers(0, rows - 1), st.integers(0, rows - 1)), max_size=2),
            label=f"{label}.duplicate_rows",
        )
        for src, dst in dupes:
            x[dst] = x[src]
    return x


def draw_batch(
    data: Any,
    n: int,
    k: int,
    d: int,
    *,
    dtype: str = "float64",
    similarity: str = "cos",
    corners: bool = True,
    compute_dtype: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``queries`` (N, D) and ``docs`` (K, N, D), rounded to ``dtype``.

    Rows are drawn jointly (so a document can duplicate a query). For ``cos``, inputs whose row norm
    is within rounding distance (in ``compute_dtype``, default ``dtype``) of the eps 1e-12 are rejected
    (``assume``): there the GRAD-3 branch is decided by rounding and no tolerance is meaningful.
    """
    x = draw_embeddings(data, n * (k + 1), d, corners=corners, label="embeddings")
    x = round_to_dtype(x, dtype)
    if similarity == "cos":
        assume(not cos_eps_ambiguous(x, compute_dtype or dtype))
    return x[:n].copy(), x[n:].reshape(k, n, d).copy()


@st.composite
def embeddings(draw: Any, rows: int, d: int, corners: bool = True) -> np.ndarray:
    """The strategy form of :func:`draw_embeddings`."""
    return draw_embeddings(_Drawer(draw), rows, d, corners=corners)


@st.composite
def batches(
    draw: Any,
    caps: Capabilities | None = None,
    *,
    dtype: str = "float64",
    similarity: str = "cos",
    **shape: int,
) -> tuple[np.ndarray, np.ndarray]:
    """``(queries, docs)`` of a drawn shape (the strategy form of :func:`draw_shape` + :func:`draw_batch`)."""
    data = _Drawer(draw)
    n, k, d = draw_shape(data, caps, **shape)
    return draw_batch(data, n, k, d, dtype=dtype, similarity=similarity)
