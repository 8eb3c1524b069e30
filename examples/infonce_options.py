"""The spec's option checks (§11, VAL-1) for the example implementations, in plain Python and NumPy.

Shared by :mod:`jax_infonce` and :mod:`tf_infonce`: the checks run on Python values and concrete
arrays, before any framework sees the data (outside ``jax.jit`` / ``tf.function``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "DIRECTIONS",
    "EPS",
    "HARDNESS_MODES",
    "PARTITION_MODES",
    "Options",
    "check_equal_local_batches",
    "check_mini_batch_size",
    "groups",
    "validate_batch",
    "validate_config",
]

DIRECTIONS = ("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc")
PARTITION_MODES = ("joint", "per_direction", "per_anchor")
HARDNESS_MODES = ("in_batch_negatives", "hard_negatives", "all_negatives")
EPS = 1e-12  # SIM-1's floor, fixed by the spec

#: A validated configuration: (directions in canonical order, partition mode, similarity, hardness
#: mode or None, hardness strength). The scale stays an argument (it may be differentiated).
Options = tuple[tuple[str, ...], str, str, "str | None", float]


def _real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def validate_config(
    directions: Sequence[str] = ("query_to_doc",),
    partition_mode: str = "joint",
    scale: Any = 20.0,
    similarity: str = "cos",
    hardness_mode: str | None = None,
    hardness_strength: Any = 0.0,
) -> Options:
    """The configuration checks of spec §11, before any data is seen (VAL-1)."""
    if isinstance(directions, str) or not all(isinstance(d, str) for d in directions):
        raise TypeError(f"[DIR-1] directions must be a collection of names, got {directions!r}")
    chosen = set(directions)
    if not chosen or not chosen <= set(DIRECTIONS) or "query_to_doc" not in chosen:
        raise ValueError(f"[DIR-1] directions must be a non-empty subset of {DIRECTIONS} with query_to_doc")
    ordered = tuple(d for d in DIRECTIONS if d in chosen)
    if partition_mode not in PARTITION_MODES:
        raise ValueError(f"[PART-1] partition_mode must be one of {PARTITION_MODES}, got {partition_mode!r}")
    if partition_mode == "per_direction" and not chosen <= {"query_to_doc", "doc_to_query"}:
        raise ValueError(
            "[PART-4] partition_mode='per_direction' is defined only for query_to_doc/doc_to_query"
        )
    if partition_mode == "per_anchor" and "doc_to_doc" in chosen and "doc_to_query" not in chosen:
        raise ValueError("[PART-6] per_anchor: the document group needs doc_to_query (the positive pair)")
    if similarity not in ("cos", "dot"):
        raise ValueError(f"[SIM-3] similarity must be 'cos' or 'dot', got {similarity!r}")
    if not _real(scale):
        raise TypeError(f"[SCALE-1] scale must be a real number, got {scale!r}")
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"[SCALE-1] scale must be finite and > 0, got {scale!r}")
    if hardness_mode is not None and hardness_mode not in HARDNESS_MODES:
        raise ValueError(f"[HARD-1] hardness_mode must be None or one of {HARDNESS_MODES}")
    if not _real(hardness_strength):
        raise TypeError(f"[HARD-1] hardness_strength must be a real number, got {hardness_strength!r}")
    if not math.isfinite(hardness_strength) or hardness_strength < 0:
        raise ValueError(f"[HARD-1] hardness_strength must be finite and >= 0, got {hardness_strength!r}")
    return ordered, partition_mode, similarity, hardness_mode, float(hardness_strength)


def validate_batch(queries: Any, docs: Any) -> None:
    """The data checks of spec §11 on concrete arrays (LAYOUT-1, -2, -4, -5)."""
    for name, x in (("queries", queries), ("docs", docs)):
        if not hasattr(x, "dtype") or not np.issubdtype(np.dtype(x.dtype), np.floating):
            raise TypeError(f"[LAYOUT-5] {name} must be a real floating array, got {type(x).__name__}")
    if queries.ndim != 2 or min(queries.shape) < 1:
        raise ValueError(f"[LAYOUT-1] queries must be (N, D) with N, D >= 1, got {queries.shape}")
    if docs.ndim != 3 or docs.shape[0] < 1 or docs.shape[1:] != queries.shape:
        raise ValueError(
            f"[LAYOUT-2] docs must be (K, N, D) matching queries {queries.shape}, got {docs.shape}"
        )
    if not (np.all(np.isfinite(queries)) and np.all(np.isfinite(docs))):
        raise ValueError("[LAYOUT-4] queries and docs must be finite")


def groups(directions: tuple[str, ...], mode: str) -> list[tuple[str, ...]]:
    """The partition's groups of directions (PART-2 joint, PART-3 per_direction, PART-5 per_anchor)."""
    if mode == "joint":
        return [directions]
    if mode == "per_direction":
        return [(d,) for d in directions]
    anchors = (("query_to_doc", "query_to_query"), ("doc_to_query", "doc_to_doc"))  # rows of q_g, of d[0, g]
    return [tuple(d for d in a if d in directions) for a in anchors if set(a) & set(directions)]


def check_mini_batch_size(m: Any) -> None:
    """CACHE-1: ``None`` (uncached) or an integer >= 1."""
    if m is None:
        return
    if not isinstance(m, (int, np.integer)) or isinstance(m, bool):
        raise TypeError(f"[CACHE-1] mini_batch_size must be an integer, got {m!r}")
    if m < 1:
        raise ValueError(f"[CACHE-1] mini_batch_size must be >= 1, got {m}")


def check_equal_local_batches(shapes: Sequence[tuple[Any, ...]]) -> None:
    """DP-5: every rank's local batch has the same shapes (per rank its arrays' shapes, or their
    dimensions in one flat tuple), checked before anything is gathered."""
    if len(set(shapes)) > 1:
        raise ValueError(f"[DP-5] the ranks' local batches differ in shape: {list(shapes)}")
