"""The logit rows of a chunk of queries, with their masks (clauses QD-1, QQ-1, DQ-1, DD-1, MASK-*).

For query ``g`` every selected direction contributes one row of logits ``scale * s(a, b) (+ h)``:

=============== ======================= ============================== =====================
direction       row vector              candidates                     masked (excluded)
=============== ======================= ============================== =====================
query_to_doc    ``q_g``                 ``d[k, j]`` for all ``k, j``    none (QD-1)
query_to_query  ``q_g``                 ``q_j``                         ``j == g`` (MASK-QQ-1)
doc_to_query    ``d[0, g]``             ``q_j``                         none, ``j == g`` kept (DQ-1)
doc_to_doc      ``d[0, g]``             ``d[k, j]`` for all ``k, j``    ``j == g``, every ``k`` (MASK-DD-1/2)
=============== ======================= ============================== =====================

Hard negatives (``k >= 1``) are candidates only, never rows (ROW-1). A chunk holds the rows of
queries ``start .. stop-1``; its blocks are ``(stop - start) x candidates``, never ``N x K*N``.

Each block is made of *pieces*, one per side its candidates come from (:mod:`.products`): ``q`` the
queries, ``d0`` the positives, ``dh`` the hard negatives. query_to_doc's candidates ``k * N + j``
are its ``d0`` piece (``k = 0``) followed by its ``dh`` piece (``k >= 1``, absent when K = 1).
The pieces of each direction come from :data:`infonce_spec.vocabulary.DIRECTION_SPECS`.

This is the engine's form of :mod:`infonce_spec.reference.rows` (the normative one): the masks are
strided writes into the flattened block and hardness is applied as the multiplier ``1 + alpha/scale``
on ``scale * s`` (equal in value to HARD-2's ``scale * s + alpha * s``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import array_api_compat

from infonce_spec.vocabulary import DIRECTION_SPECS

from ..config import Config
from ..hardness import selected_entries
from .products import ChunkLogits, Products, WorkerSums

__all__ = ["PIECES", "SHORT_SIDES", "Piece", "RowBlock", "positive_logits", "row_blocks"]

#: The engine's short name of each side of the vocabulary.
SHORT_SIDES = {"queries": "q", "positives": "d0", "hard_negatives": "dh"}
#: The row side and the column sides of each direction's pieces, in candidate order.
PIECES: dict[str, tuple[tuple[str, str], ...]] = {
    name: tuple((SHORT_SIDES[spec.row_side], SHORT_SIDES[col]) for col in spec.column_sides)
    for name, spec in DIRECTION_SPECS.items()
}
#: The first flattened candidate index ``k * N + j`` of a column side, in units of N.
_FIRST_BLOCK = {"d0": 0, "dh": 1}


@dataclass
class Piece:
    """The logits of a chunk's rows of ``row_side`` against every vector of ``col_side``.

    ``logits`` is ``scale * s + h`` with ``-inf`` at masked entries; ``flat`` the same rows as one
    flat view, each row ``stride`` numbers after the last (its padding included, :mod:`.padding`).
    """

    row_side: str
    col_side: str
    logits: Any
    flat: Any
    stride: int
    #: Whether the softmax's row factor is left to the backward (:func:`.partition.partition`).
    scaled_later: bool = False


@dataclass
class RowBlock:
    """One direction's logits for a chunk of queries: its pieces side by side."""

    direction: str
    pieces: list[Piece]


def _mask_own(piece: Piece, start: int, n: int) -> None:
    """Set the entries ``(g, k' * N + g)`` of a chunk of rows ``start ..`` to ``-inf``, for every
    block ``k'`` of N columns of the piece.

    In the piece's flat rows the entry of row ``r`` (query ``start + r``) and column
    ``k' N + start + r`` sits at ``start + k' N + r (stride + 1)``: one strided slice per column
    block, so no ``(rows x candidates)`` boolean mask is built (MASK-QQ-1, MASK-DD-1, MASK-DD-2).
    """
    rows, width = (int(s) for s in piece.logits.shape)
    for block in range(width // n):
        piece.flat[_own_entries(start + block * n, rows, piece.stride)] = -float("inf")


def _own_entries(first: int, rows: int, stride: int) -> slice:
    """The strided slice of flat rows ``stride`` apart that holds entry ``(r, first + r)`` of each row ``r``."""
    return slice(first, first + (rows - 1) * (stride + 1) + 1, stride + 1)


def positive_logits(xp: Any, query_to_doc: RowBlock, start: int) -> Any:
    """The positive logits ``p_g`` (QD-2) of the chunk, read off query_to_doc's ``d0`` piece itself.

    Reading them from the block (rather than recomputing ``s(q_g, d[0, g])``) makes ``p_g``
    bitwise one of the entries of its own logsumexp, so ``l_g >= 0`` holds exactly (LOSS-2).
    Call before the block is consumed by the partition.
    """
    piece = query_to_doc.pieces[0]
    rows = int(piece.logits.shape[0])
    return xp.asarray(piece.flat[_own_entries(start, rows, piece.stride)], copy=True)


def row_blocks(
    xp: Any, products: Products, start: int, stop: int, config: Config, worker: WorkerSums | None = None
) -> tuple[ChunkLogits, list[RowBlock]]:
    """The selected directions' logit blocks for queries ``start .. stop-1`` (canonical order), and
    the chunk's products that hold them (:meth:`Products.backward` reads the gradients there);
    ``worker`` is the worker that runs the chunk (:class:`.products.WorkerSums`)."""
    n = products.width("q")
    selected = [
        (direction, [piece for piece in PIECES[direction] if products.width(piece[1]) > 0])
        for direction in config.selected_directions  # query_to_doc first (DIR-1, canonical order)
    ]  # K = 1: no hard negatives
    chunk = products.forward(start, stop, [piece for _, pieces in selected for piece in pieces], worker)
    blocks: list[RowBlock] = []
    streamed = chunk.streamed
    for direction, pieces in selected:
        spec = DIRECTION_SPECS[direction]
        block = RowBlock(
            direction,
            [
                Piece(row, col, chunk.logits[(row, col)], *chunk.flat[(row, col)], (row, col) in streamed)
                for row, col in pieces
            ],
        )
        for piece in block.pieces:
            if spec.excludes_own:
                _mask_own(piece, start, n)
            elif spec.hardness and config.hardness_active:
                piece.logits *= _hardness(
                    xp, piece.logits, start, stop, _FIRST_BLOCK[piece.col_side] * n, n, config
                )
        blocks.append(block)
    if "doc_to_query" in config.selected_directions:
        _own_pairs_are_the_positives(xp, blocks, start)
    return chunk, blocks


def _own_pairs_are_the_positives(xp: Any, blocks: list[RowBlock], start: int) -> None:
    """Write ``p_g`` into the own entries ``(g, g)`` of doc_to_query's rows (DQ-1 keeps them).

    ``s(d[0, g], q_g)`` and ``s(q_g, d[0, g])`` are the same number, but two matrix products may round
    them differently; taking the query_to_doc entry makes ``p_g`` bitwise an entry of every row that
    holds the pair, so ``l_g >= 0`` holds exactly in every partition (LOSS-2).
    """
    positives = positive_logits(xp, blocks[0], start)
    (block,) = (b for b in blocks if b.direction == "doc_to_query")
    piece = block.pieces[0]
    piece.flat[_own_entries(start, int(piece.logits.shape[0]), piece.stride)] = positives


def _hardness(xp: Any, logits: Any, start: int, stop: int, first: int, n: int, config: Config) -> Any:
    """The HARD-2 multiplier of a query_to_doc piece whose columns are candidates ``first ..``:
    ``1 + alpha / scale`` on the entries HARD-3 selects and ``1`` elsewhere, so that
    ``(scale * s) * multiplier = scale * s + alpha * s``. Only the value carries the penalty; the
    backward uses ``scale`` alone (HARD-5)."""
    assert config.hardness_mode is not None
    device = array_api_compat.device(logits)
    rows = xp.reshape(xp.arange(start, stop, device=device), (stop - start, 1))
    width = int(logits.shape[1])
    candidates = xp.reshape(xp.arange(first, first + width, device=device), (1, width))
    # LAYOUT-3: candidate c = k N + j; own document j == g; positive column k == 0.
    selected = selected_entries(rows == candidates % n, candidates < n, config.hardness_mode)
    return xp.where(
        selected,
        xp.asarray(1.0 + config.hardness_strength / config.scale, dtype=xp.float64, device=device),
        xp.asarray(1.0, dtype=xp.float64, device=device),
    )
