"""The spec's names, declared once (spec/infonce-spec.md §3 .. §6).

Every part of the project that needs a name of the spec -- a direction, a partition mode, a
hardness mode, a similarity, the cos floor -- takes it from here: the reference, the torch
implementation (names only, never math), the conformance suite, the golden vectors and the mutants.
This module holds plain data (strings, tuples, frozen records) and imports nothing from the project,
so anything may import it. The clause table lives next to it, in :mod:`infonce_spec.clauses`.

The independent oracles under ``tests/oracles`` spell the names out on their own on purpose.

To add a partition mode: its name in :data:`PARTITION_MODES` and its grouping in
:func:`partition_groups` (the two small functions at the end are the only code here).

To add a direction: one :class:`DirectionSpec` in :data:`DIRECTION_SPECS` (its row side, column
sides, masks, per-direction eligibility, clauses), its name in :data:`Direction`, then the row
builder of the reference (``reference/rows.py``) and of the torch implementation
(``adapters/torch/logits.py``); see docs/architecture.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ANCHOR_GROUPS",
    "COS_EPS",
    "DIRECTIONS",
    "DIRECTION_SPECS",
    "HARDNESS_DIRECTION",
    "HARDNESS_MODES",
    "PARTITION_MODES",
    "PER_DIRECTION_ALLOWED",
    "POSITIVE_ROW_DIRECTIONS",
    "REQUIRED_DIRECTION",
    "SIDES",
    "SIMILARITIES",
    "Direction",
    "DirectionSpec",
    "HardnessMode",
    "PartitionMode",
    "Side",
    "Similarity",
    "groups_without_positive",
    "partition_groups",
]

Direction = Literal["query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc"]
PartitionMode = Literal["joint", "per_direction", "per_anchor"]
Similarity = Literal["cos", "dot"]
HardnessMode = Literal["in_batch_negatives", "hard_negatives", "all_negatives"]
#: The three kinds of vectors of a batch (LAYOUT-1, LAYOUT-2): the queries ``q_j``, the positives
#: ``d[0, j]`` and the hard negatives ``d[k, j]``, ``k >= 1``.
Side = Literal["queries", "positives", "hard_negatives"]

#: The sides in batch order; documents list positives first, then hard negatives (LAYOUT-3).
SIDES: tuple[Side, ...] = ("queries", "positives", "hard_negatives")


@dataclass(frozen=True)
class DirectionSpec:
    """One direction of §4: what its row of query ``g`` is made of.

    * ``row_side``: the row vector's side -- ``q_g`` (``"queries"``) or ``d[0, g]``
      (``"positives"``); hard negatives are never rows (ROW-1).
    * ``column_sides``: the candidates' sides in candidate order (LAYOUT-3: over documents the
      positives ``k = 0`` come first, then the hard negatives ``k >= 1``).
    * ``excludes_own``: whether the row excludes every candidate ``j == g`` (of every column k).
    * ``masks``: the clauses that exclude entries (empty when nothing is excluded).
    * ``per_direction``: whether every row holds the positive pair, so ``per_direction`` is
      defined for it (PART-4).
    * ``hardness``: whether hardness terms can be added to its entries (HARD-2).
    * ``clause``: the clause that defines the row.
    """

    name: Direction
    clause: str
    row_side: Side
    column_sides: tuple[Side, ...]
    excludes_own: bool
    masks: tuple[str, ...]
    per_direction: bool
    hardness: bool

    @property
    def over_documents(self) -> bool:
        """Whether the candidates are the K·N documents (else the N queries)."""
        return self.column_sides[0] != "queries"


_DOCUMENTS: tuple[Side, ...] = ("positives", "hard_negatives")

#: The four directions of §4 in canonical order (DIR-2: configurations store them in this order).
DIRECTION_SPECS: dict[str, DirectionSpec] = {
    spec.name: spec
    for spec in (
        DirectionSpec(
            "query_to_doc", "QD-1", "queries", _DOCUMENTS, False, (), per_direction=True, hardness=True
        ),
        DirectionSpec(
            "query_to_query",
            "QQ-1",
            "queries",
            ("queries",),
            True,
            ("MASK-QQ-1",),
            per_direction=False,
            hardness=False,
        ),
        DirectionSpec(
            "doc_to_query", "DQ-1", "positives", ("queries",), False, (), per_direction=True, hardness=False
        ),
        DirectionSpec(
            "doc_to_doc",
            "DD-1",
            "positives",
            _DOCUMENTS,
            True,
            ("MASK-DD-1", "MASK-DD-2"),
            per_direction=False,
            hardness=False,
        ),
    )
}
#: The direction names in canonical order (DIR-1, DIR-2).
DIRECTIONS: tuple[Direction, ...] = tuple(DIRECTION_SPECS)  # type: ignore[assignment]
#: DIR-1: every configuration selects this direction; its entry (0, g) is the positive (QD-2).
REQUIRED_DIRECTION: Direction = "query_to_doc"
#: HARD-2: the only direction whose entries carry hardness terms.
HARDNESS_DIRECTION: Direction = "query_to_doc"
#: PART-4: ``per_direction`` is defined only for subsets of these.
PER_DIRECTION_ALLOWED: frozenset[str] = frozenset(s.name for s in DIRECTION_SPECS.values() if s.per_direction)

#: PART-6: the directions whose rows hold the positive pair (QD-2, DQ-1); every group of a
#: partition must contain one of them.
POSITIVE_ROW_DIRECTIONS: frozenset[str] = PER_DIRECTION_ALLOWED

#: PART-1: the partition modes.
PARTITION_MODES: tuple[PartitionMode, ...] = ("joint", "per_direction", "per_anchor")
#: PART-5: the groups of ``per_anchor``, one per row vector (anchor): the rows of ``q_g``, then the
#: rows of ``d[0, g]`` (their ``row_side`` in :data:`DIRECTION_SPECS`).
ANCHOR_GROUPS: tuple[tuple[Direction, ...], ...] = tuple(
    tuple(s.name for s in DIRECTION_SPECS.values() if s.row_side == side)  # type: ignore[misc]
    for side in ("queries", "positives")
)
#: SIM-3: the similarities.
SIMILARITIES: tuple[Similarity, ...] = ("cos", "dot")
#: HARD-1: the hardness modes (``None``, no hardness, is valid too).
HARDNESS_MODES: tuple[HardnessMode, ...] = ("in_batch_negatives", "hard_negatives", "all_negatives")
#: SIM-1: the norm floor ε of the cos similarity, ``n(x) = x / max(‖x‖, ε)`` (fixed, not a parameter).
COS_EPS: float = 1e-12


def partition_groups(partition_mode: str, directions: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """The groups of the selected ``directions`` (a set, in canonical order, DIR-2) under
    ``partition_mode`` (§6): ``joint`` one group (PART-2), ``per_direction`` one group per direction
    (PART-3), ``per_anchor`` one group per row vector, absent where it has no selected direction
    (PART-5). Each group's rows share one log-partition; ``l_g`` is the mean over the groups."""
    selected = tuple(d for d in DIRECTIONS if d in directions)
    if partition_mode == "joint":
        return (selected,)
    if partition_mode == "per_direction":
        return tuple((d,) for d in selected)
    if partition_mode == "per_anchor":
        groups = (tuple(d for d in group if d in selected) for group in ANCHOR_GROUPS)
        return tuple(group for group in groups if group)
    raise ValueError(f"[PART-1] unknown partition_mode {partition_mode!r}")


def groups_without_positive(partition_mode: str, directions: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """PART-6 (PART-4 for ``per_direction``): the groups of :func:`partition_groups` that hold no row
    with the positive pair (no ``query_to_doc``, no ``doc_to_query``); empty when the configuration
    is defined."""
    return tuple(
        group
        for group in partition_groups(partition_mode, directions)
        if not set(group) & POSITIVE_ROW_DIRECTIONS
    )
