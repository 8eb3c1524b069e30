"""Write the golden vectors of infonce-spec from the float64 reference: ``python spec/vectors/generate.py``.

``--check`` regenerates them in memory and exits 1, listing case, field and worst relative error,
where the committed files differ by more than 1e-12 (per array, relative to max(max|expected|, 1));
``tests/test_golden_vectors.py`` runs it, so CI fails on drift. The catalogue below is the list of
cases: each names its inputs (drawn from a fixed seed and the case id, rounded to a few decimals so
that the files stay small and readable), its config (sentence-transformers' strings) and, for error
cases, the clause the error must name. The schema is ``SCHEMA.md``; the logic lives in
:mod:`infonce_spec.conformance.golden`.
"""

from __future__ import annotations

import argparse
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from infonce_spec.conformance.golden import CHECK_RTOL, CaseSpec, build_vectors, check_vectors

SEED = 20250601
QD, QQ, DQ, DD = "query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc"
GTE = [QD, QQ, DQ, DD]
HERE = Path(__file__).resolve().parent


def config(
    directions: list[str] | str | None = None,
    partition_mode: str = "joint",
    scale: Any = 20.0,
    similarity: str = "cos",
    hardness_mode: str | None = None,
    hardness_strength: Any = 0.0,
) -> dict[str, Any]:
    """A config in the JSON form of the vectors (the keyword names and strings of sentence-transformers)."""
    return {
        "directions": directions if directions is not None else [QD],
        "partition_mode": partition_mode,
        "scale": scale,
        "similarity": similarity,
        "hardness_mode": hardness_mode,
        "hardness_strength": hardness_strength,
    }


def gaussian(
    case_id: str, n: int, k: int, d: int, spread: float = 1.0, decimals: int = 4, related: bool = True
) -> tuple[Any, Any]:
    """Queries (N, D) and docs (K, N, D) drawn from a normal law, times ``spread``, rounded to ``decimals``.

    ``related``: each positive is its query plus noise of scale 0.6 and each hard negative its query
    plus noise of scale 1, as in training data, so that no softmax saturates and every entry
    weighs in the gradients; otherwise docs are drawn independently. The generator is seeded with
    :data:`SEED` and the case id, so adding a case changes no other.
    """
    rng = np.random.default_rng([SEED, zlib.crc32(case_id.encode())])
    queries = rng.normal(size=(n, d))
    docs = rng.normal(size=(k, n, d))
    if related:
        docs = queries + docs * np.array([0.6] + [1.0] * (k - 1)).reshape(k, 1, 1)
    rounded = np.vectorize(lambda v: round(float(v), decimals))
    return rounded(queries * spread), rounded(docs * spread)


def case(
    case_id: str,
    title: str,
    cfg: dict[str, Any],
    n: int = 4,
    k: int = 2,
    d: int = 3,
    *,
    spread: float = 1.0,
    decimals: int = 4,
    related: bool = True,
    edit: Any = None,
    world_size: int | None = None,
    extra: tuple[str, ...] = (),
) -> CaseSpec:
    """A value case on Gaussian inputs; ``edit(queries, docs)`` plants zeros or duplicates in place."""
    queries, docs = gaussian(case_id, n, k, d, spread, decimals, related)
    if edit is not None:
        edit(queries, docs)
    return CaseSpec(case_id, title, cfg, queries.tolist(), docs.tolist(), world_size, extra)


def error(
    case_id: str, title: str, clause: str, cfg: dict[str, Any] | None = None, **inputs: Any
) -> CaseSpec:
    """An invalid config or input; the reference must raise an error naming ``clause`` (VAL-1)."""
    queries = inputs.pop("queries", [[1.0, 0.0], [0.0, 1.0]])
    docs = inputs.pop("docs", [[[1.0, 1.0], [0.0, 2.0]], [[1.0, -1.0], [-1.0, 1.0]]])
    return CaseSpec(case_id, title, cfg or config(), queries, docs, error=clause, **inputs)


def _zero(queries: Any, docs: Any) -> None:
    queries[1] = 0.0


def _zero_docs(queries: Any, docs: Any) -> None:
    docs[0, 2] = 0.0  # a positive
    docs[1, 0] = 0.0  # a hard negative


def _tiny(queries: Any, docs: Any) -> None:
    queries[0] = [3e-13, -4e-13, 0.0]  # norm 5e-13 < 1e-12: the eps branch of cos with a non-zero row


def _duplicate(queries: Any, docs: Any) -> None:
    queries[1] = queries[0]  # two equal queries
    docs[0, 3] = docs[0, 2]  # two equal positives
    if docs.shape[0] > 1:
        docs[1, 0] = docs[0, 0]  # a hard negative equal to its own positive


def _identical(queries: Any, docs: Any) -> None:
    queries[:] = 0.5
    docs[:] = 0.5


DIRECTION_SETS = {
    "qd": [QD],
    "qd-qq": [QD, QQ],
    "qd-dq": [QD, DQ],
    "qd-dd": [QD, DD],
    "qd-qq-dq": [QD, QQ, DQ],
    "qd-qq-dd": [QD, QQ, DD],
    "qd-dq-dd": [QD, DQ, DD],
    "gte": GTE,
}

#: Short names of the directions in case ids.
SHORT = {QD: "qd", QQ: "qq", DQ: "dq", DD: "dd"}
MODE_SHORT = {"joint": "joint", "per_direction": "perdir", "per_anchor": "peranchor"}
HARDNESS = ("in_batch_negatives", "hard_negatives", "all_negatives")
#: The shapes of the three helpers of spec §14.1 (infonce(), clip_like(), nt_xent()): at least 20
#: cases each per similarity, without hardness, for implementations that claim only them.
NAMED_SHAPES = {((QD,), "joint"), ((QD, DQ), "per_direction"), (tuple(GTE), "per_anchor")}


def _zero_rows(queries: Any, docs: Any) -> None:
    queries[1] = 0.0  # a zero query
    docs[0, 2] = 0.0  # a zero positive (N = 3)
    if docs.shape[0] > 1:
        docs[1, 0] = 0.0  # a zero hard negative


def shape_cases(directions: tuple[str, ...], mode: str, similarity: str) -> list[CaseSpec]:
    """The cases of one configuration shape (directions x partition mode) and similarity: K = 1 and
    2, N = 1, zero rows, large logits, the order of directions (DIR-2), a mode with strength 0
    (HARD-6), two ranks, each hardness mode; the shapes of the helpers (NAMED_SHAPES) get 17 more,
    13 of them with K = 1.
    Whatever K does not change is a K = 1 case, so that a claim with max K 1 (no hard negatives,
    as in most NT-Xent and CLIP losses) still covers every clause it can exercise."""
    dirs = list(directions)
    name = f"shape-{'-'.join(SHORT[d] for d in directions)}-{MODE_SHORT[mode]}-{similarity}"
    label = f"{'+'.join(directions)}, {mode}, {similarity}"
    scale = 5.0 if similarity == "cos" else 1.0  # logits within a few units: no softmax saturates
    big = {"spread": 30.0, "decimals": 2, "related": False} if similarity == "dot" else {}

    def cfg(**changes: Any) -> dict[str, Any]:
        base = config(dirs, mode, scale, similarity)
        return {**base, **changes}

    small = {"n": 3, "d": 2, "decimals": 3}
    out = [
        case(f"{name}-k1", f"{label}, K=1", cfg(), k=1, **small),
        case(f"{name}-k2", f"{label}, K=2", cfg(), k=2, **small),
        case(f"{name}-n1-k1", f"{label}, N=1, K=1", cfg(), n=1, k=1, d=2, decimals=3),
        case(f"{name}-n1-k2", f"{label}, N=1, K=2", cfg(), n=1, k=2, d=2, decimals=3),
        case(
            f"{name}-zero-rows-k1",
            f"{label}, K=1: a zero query and a zero positive",
            cfg(),
            k=1,
            edit=_zero_rows,
            **small,
        ),
        case(
            f"{name}-zero-rows-k2",
            f"{label}, K=2: a zero query, positive and hard negative",
            cfg(),
            k=2,
            edit=_zero_rows,
            **small,
        ),
        case(
            f"{name}-large-logits",
            f"{label}, K=1, scale 1e3: large logits",
            cfg(scale=1000.0),
            k=1,
            n=3,
            d=2,
            extra=("NUM-1",),
            **big,
        ),
        case(
            f"{name}-order",
            f"{label}, K=1: directions reversed and repeated (DIR-2)",
            cfg(directions=[*dirs[::-1], dirs[-1]]),
            k=1,
            extra=("DIR-2",),
            **small,
        ),
        case(
            f"{name}-strength-zero",
            f"{label}, K=1: all_negatives with strength 0 is no hardness",
            cfg(hardness_mode="all_negatives"),
            k=1,
            **small,
        ),
        case(f"{name}-w2-k1", f"{label}, K=1, two ranks", cfg(), n=2, k=1, d=2, decimals=3, world_size=2),
        case(f"{name}-w2-k2", f"{label}, K=2, two ranks", cfg(), n=2, k=2, d=2, decimals=3, world_size=2),
    ]
    out += [
        case(
            f"{name}-{mode_}",
            f"{label}, {mode_} alpha 2, K={k}",
            cfg(hardness_mode=mode_, hardness_strength=2.0),
            k=k,
            **small,
        )
        for mode_, k in zip(HARDNESS, (1, 2, 1), strict=True)
    ]
    if (directions, mode) in NAMED_SHAPES:
        out += [
            case(f"{name}-k3", f"{label}, K=3", cfg(), k=3, **small),
            case(f"{name}-k4-n6", f"{label}, K=4, N=6, D=3", cfg(), n=6, k=4, d=3, decimals=3),
            case(f"{name}-n8-k2", f"{label}, K=2, N=8, D=3", cfg(), n=8, k=2, decimals=3),
            case(
                f"{name}-duplicates-k2",
                f"{label}, K=2: equal queries, equal positives, a hard negative equal to its positive",
                cfg(),
                n=4,
                k=2,
                edit=_duplicate,
            ),
            # without hard negatives (K = 1), as most CLIP and NT-Xent losses: 13 more
            case(f"{name}-n8", f"{label}, K=1, N=8, D=3", cfg(), n=8, k=1, decimals=3),
            case(f"{name}-n2", f"{label}, K=1, N=2", cfg(), n=2, k=1, d=2, decimals=3),
            case(f"{name}-n6-d4", f"{label}, K=1, N=6, D=4", cfg(), n=6, k=1, d=4, decimals=3),
            case(f"{name}-d1", f"{label}, K=1, D=1", cfg(), k=1, n=3, d=1),
            case(f"{name}-d5", f"{label}, K=1, D=5", cfg(), k=1, n=3, d=5, decimals=3),
            case(f"{name}-scale-small", f"{label}, K=1, scale 0.05", cfg(scale=0.05), k=1, **small),
            case(f"{name}-scale-large", f"{label}, K=1, scale 50", cfg(scale=50.0), k=1, **small),
            case(
                f"{name}-norm-large",
                f"{label}, K=1, rows of norm ~100",
                cfg(),
                k=1,
                n=3,
                d=2,
                spread=100.0,
                decimals=1,
            ),
            case(
                f"{name}-norm-small",
                f"{label}, K=1, rows of norm ~1e-6",
                cfg(),
                k=1,
                n=3,
                d=2,
                spread=1e-6,
                decimals=9,
            ),
            case(f"{name}-tiny-norm", f"{label}, K=1: a query of norm 5e-13", cfg(), k=1, n=4, edit=_tiny),
            case(
                f"{name}-duplicates",
                f"{label}, K=1: equal queries, equal positives",
                cfg(),
                n=4,
                k=1,
                edit=_duplicate,
            ),
            case(
                f"{name}-identical",
                f"{label}, K=1: every vector equal",
                cfg(),
                n=3,
                k=1,
                d=2,
                edit=_identical,
            ),
            case(f"{name}-w3", f"{label}, K=1, three ranks", cfg(), n=3, k=1, d=2, decimals=3, world_size=3),
        ]
    return out


def shape_errors(directions: tuple[str, ...], mode: str, similarity: str) -> list[CaseSpec]:
    """Invalid inputs and scale under one shape and similarity: LAYOUT-1, LAYOUT-2, LAYOUT-4,
    LAYOUT-5, SCALE-1 and DP-5 (for implementations that claim it and validate inputs)."""
    name = f"err-shape-{'-'.join(SHORT[d] for d in directions)}-{MODE_SHORT[mode]}-{similarity}"
    label = f"{'+'.join(directions)}, {mode}, {similarity}"
    cfg = config(list(directions), mode, 20.0 if similarity == "cos" else 1.0, similarity)
    return [
        error(
            f"{name}-queries-1d",
            f"{label}: queries (D,)",
            "LAYOUT-1",
            cfg,
            queries=[0.5, -1.0],
            docs=[[[0.5, -1.0]]],
        ),
        error(
            f"{name}-docs-batch",
            f"{label}: docs (1, 3, 2) for 2 queries",
            "LAYOUT-2",
            cfg,
            docs=[[[1.0, 1.0], [0.0, 2.0], [1.0, 0.0]]],
        ),
        error(
            f"{name}-nan",
            f"{label}: a NaN in queries",
            "LAYOUT-4",
            cfg,
            queries=[[1.0, float("nan")], [0.0, 1.0]],
        ),
        error(
            f"{name}-int",
            f"{label}: integer arrays",
            "LAYOUT-5",
            cfg,
            queries=[[1, 0], [0, 1]],
            docs=[[[1, 1], [0, 2]]],
            dtype="int64",
        ),
        error(f"{name}-scale-zero", f"{label}: scale 0", "SCALE-1", {**cfg, "scale": 0.0}),
        error(
            f"{name}-uneven",
            f"{label}: N=4 over 3 ranks",
            "DP-5",
            cfg,
            queries=np.eye(4, 2).tolist(),
            docs=[np.ones((4, 2)).tolist()],
            world_size=3,
        ),
    ]


def _valid_shapes() -> list[tuple[tuple[str, ...], str]]:
    """Every configuration shape the spec defines, simplest first (every_combination)."""
    from infonce_spec.conformance.protocol import every_combination
    from infonce_spec.vocabulary import DIRECTIONS, PARTITION_MODES

    shapes = every_combination(DIRECTIONS, PARTITION_MODES)
    order = {m: i for i, m in enumerate(PARTITION_MODES)}
    return sorted(shapes, key=lambda s: (order[s[1]], len(s[0]), [DIRECTIONS.index(d) for d in s[0]]))


SHAPE_FILES: list[tuple[str, str, list[CaseSpec]]] = [
    (
        f"shapes_{mode}.json",
        f"Every configuration shape with partition_mode={mode!r}, cos and dot: K = 1, 2, 3, N = 1, zero "
        "rows, large logits, DIR-2, HARD-6, two ranks, each hardness mode, and invalid inputs; "
        "the shapes of infonce(), clip_like() and nt_xent() get more cases.",
        [
            c
            for dirs, mode_ in _valid_shapes()
            if mode_ == mode
            for similarity in ("cos", "dot")
            for c in shape_cases(dirs, mode_, similarity) + shape_errors(dirs, mode_, similarity)
        ],
    )
    for mode in ("joint", "per_direction", "per_anchor")
]

FILES: list[tuple[str, str, list[CaseSpec]]] = [
    (
        "directions.json",
        "Every direction set (DIR-1), joint partition, cos, scale 20, K=2, N=4, D=3; and DIR-2.",
        [case(f"dir-{name}", f"directions {dirs}", config(dirs)) for name, dirs in DIRECTION_SETS.items()]
        + [
            case(
                "dir-order-repetition",
                "directions in another order and repeated mean the canonical set (DIR-2)",
                config([DQ, QQ, QD, DQ]),
                extra=("DIR-2",),
            )
        ],
    ),
    (
        "partition.json",
        "partition_mode='per_direction' (PART-3) on the directions it is defined for (PART-4); "
        "'per_anchor' (PART-5) on the directions it is defined for (PART-6).",
        [
            case(
                "part-per-direction-qd",
                "per_direction with query_to_doc alone equals joint",
                config([QD], "per_direction"),
            ),
            case(
                "part-per-direction-qd-dq",
                "symmetric InfoNCE, per_direction",
                config([QD, DQ], "per_direction"),
            ),
            case("part-per-direction-qd-dq-k1", "per_direction, K=1", config([QD, DQ], "per_direction"), k=1),
            case(
                "part-per-direction-qd-dq-dot-k3",
                "per_direction, dot, scale 2, K=3",
                config([QD, DQ], "per_direction", 2.0, "dot"),
                k=3,
            ),
            case(
                "part-per-anchor-nt-xent-k1",
                "SimCLR NT-Xent: all four directions, per_anchor, K=1",
                config(GTE, "per_anchor", 2.0),
                k=1,
            ),
            case("part-per-anchor-gte-k2", "all four directions, per_anchor, K=2", config(GTE, "per_anchor")),
            case(
                "part-per-anchor-qd-dq-dd-dot-k3",
                "query_to_doc alone and doc_to_query + doc_to_doc, per_anchor, dot, scale 1, K=3",
                config([QD, DQ, DD], "per_anchor", 1.0, "dot"),
                k=3,
            ),
            case(
                "part-per-anchor-qd-qq-equals-joint",
                "per_anchor with query_to_doc + query_to_query (one group) equals joint",
                config([QD, QQ], "per_anchor"),
            ),
            case(
                "part-per-anchor-hardness",
                "NT-Xent with all_negatives hardness, alpha 2, K=2",
                config(GTE, "per_anchor", hardness_mode="all_negatives", hardness_strength=2.0),
            ),
        ],
    ),
    (
        "columns.json",
        "K = 1 and K = 3 document columns (docs[0] positives, docs[1:] hard negatives; ROW-1, MASK-DD-2).",
        [
            case("k1-qd", "standard InfoNCE without hard negatives", config([QD]), k=1),
            case("k1-gte", "GTE loss, K=1: doc_to_doc masks only the own positive", config(GTE), k=1),
            case(
                "k1-qd-dd-dot",
                "query_to_doc + doc_to_doc, dot, K=1",
                config([QD, DD], scale=1.0, similarity="dot"),
                k=1,
            ),
            case("k3-qd", "two hard negatives per query", config([QD]), k=3),
            case("k3-gte", "GTE loss with two hard negatives per query", config(GTE), k=3),
            case(
                "k3-qd-dd-dot",
                "query_to_doc + doc_to_doc, dot, K=3",
                config([QD, DD], scale=1.0, similarity="dot"),
                k=3,
            ),
        ],
    ),
    (
        "hardness.json",
        "Hardness weighting h = alpha * s (not scaled, no gradient) per mode (HARD-2 .. HARD-5) and HARD-6.",
        [
            case(
                "hard-in-batch-negatives",
                "in_batch_negatives, alpha 5",
                config([QD], hardness_mode="in_batch_negatives", hardness_strength=5.0),
            ),
            case(
                "hard-hard-negatives",
                "hard_negatives, alpha 5",
                config([QD], hardness_mode="hard_negatives", hardness_strength=5.0),
            ),
            case(
                "hard-all-negatives",
                "all_negatives, alpha 5",
                config([QD], hardness_mode="all_negatives", hardness_strength=5.0),
            ),
            case(
                "hard-in-batch-negatives-gte-k3",
                "in_batch_negatives, alpha 2, GTE loss, K=3",
                config(GTE, hardness_mode="in_batch_negatives", hardness_strength=2.0),
                k=3,
            ),
            case(
                "hard-hard-negatives-dot-per-direction",
                "hard_negatives, alpha 0.5, dot, scale 1, symmetric per_direction",
                config([QD, DQ], "per_direction", 1.0, "dot", "hard_negatives", 0.5),
            ),
            case(
                "hard-all-negatives-qd-qq-k3",
                "all_negatives, alpha 3, query_to_doc + query_to_query, K=3",
                config([QD, QQ], hardness_mode="all_negatives", hardness_strength=3.0),
                k=3,
            ),
            case(
                "hard-hard-negatives-k1",
                "hard_negatives with K=1 selects nothing",
                config([QD], hardness_mode="hard_negatives", hardness_strength=4.0),
                k=1,
            ),
            case(
                "hard-strength-zero",
                "a mode with strength 0 is no hardness (HARD-6)",
                config([QD, DQ], hardness_mode="all_negatives"),
            ),
            case(
                "hard-mode-none-with-strength",
                "strength without a mode is no hardness (HARD-6)",
                config([QD, QQ], hardness_strength=3.0),
            ),
        ],
    ),
    (
        "similarity.json",
        "cos (SIM-1) and dot (SIM-2) at several input norms and scales.",
        [
            case("sim-dot-qd", "dot, scale 1", config([QD], scale=1.0, similarity="dot")),
            case("sim-dot-gte", "dot, scale 0.5, GTE loss", config(GTE, scale=0.5, similarity="dot")),
            case(
                "sim-cos-large-norm", "cos on rows of norm ~100", config([QD, DQ]), spread=100.0, decimals=2
            ),
            case(
                "sim-cos-small-norm", "cos on rows of norm ~1e-6", config([QD, QQ]), spread=1e-6, decimals=10
            ),
            case("sim-cos-scale-1", "cos, scale 1", config([QD, DQ], scale=1.0), k=3),
        ],
    ),
    (
        "edge.json",
        "Edge cases: N=1, D=1, zero and sub-eps rows under cos (GRAD-3), duplicated rows.",
        [
            case("edge-n1-qd-k1", "N=1, K=1: a single candidate, loss 0", config([QD]), n=1, k=1),
            case(
                "edge-n1-gte-k2",
                "N=1: query_to_query and doc_to_doc rows are empty (GRAD-2)",
                config(GTE),
                n=1,
            ),
            case(
                "edge-n1-per-direction-k3",
                "N=1, K=3, symmetric per_direction",
                config([QD, DQ], "per_direction"),
                n=1,
                k=3,
            ),
            case("edge-d1-cos", "D=1 under cos: similarities are +-1, gradients 0", config([QD, DQ]), d=1),
            case("edge-d1-dot-gte", "D=1, dot, GTE loss", config(GTE, scale=1.0, similarity="dot"), d=1),
            case("edge-zero-query-cos", "a zero query under cos (GRAD-3)", config([QD, DQ]), edit=_zero),
            case(
                "edge-zero-docs-cos",
                "a zero positive and a zero hard negative under cos",
                config([QD, QQ]),
                edit=_zero_docs,
            ),
            case(
                "edge-tiny-norm-cos",
                "a query of norm 5e-13 under cos: x / 1e-12 (GRAD-3)",
                config([QD, DQ]),
                edit=_tiny,
            ),
            case(
                "edge-zero-query-dot",
                "a zero query under dot",
                config([QD, DQ], scale=1.0, similarity="dot"),
                edit=_zero,
            ),
            case(
                "edge-duplicate-rows",
                "equal queries, equal positives, a hard negative equal to its positive",
                config([QD, DQ]),
                edit=_duplicate,
            ),
            case("edge-duplicate-rows-gte", "duplicated rows, GTE loss", config(GTE), edit=_duplicate),
            case(
                "edge-all-identical",
                "every vector equal: loss log(K N), dot",
                config([QD], scale=1.0, similarity="dot"),
                n=3,
                edit=_identical,
            ),
        ],
    ),
    (
        "numerics.json",
        "Large logits (NUM-1): scale 1e3 with large-norm dot products, and a tiny scale.",
        [
            case(
                "num-dot-scale1e3-large-norm",
                "dot, scale 1e3, rows of norm ~50: logits ~1e6",
                config([QD, DQ], scale=1000.0, similarity="dot"),
                spread=30.0,
                decimals=2,
                related=False,
                extra=("NUM-1",),
            ),
            case(
                "num-dot-scale1e3-gte-k3",
                "dot, scale 1e3, norm ~50, GTE loss, K=3",
                config(GTE, scale=1000.0, similarity="dot"),
                k=3,
                spread=30.0,
                decimals=2,
                related=False,
                extra=("NUM-1",),
            ),
            case(
                "num-dot-scale1e3-hardness",
                "dot, scale 1e3, all_negatives alpha 10, norm ~50",
                config(
                    [QD, QQ],
                    scale=1000.0,
                    similarity="dot",
                    hardness_mode="all_negatives",
                    hardness_strength=10.0,
                ),
                spread=30.0,
                decimals=2,
                related=False,
                extra=("NUM-1",),
            ),
            case(
                "num-cos-scale1e3",
                "cos, scale 1e3, K=3",
                config([QD, QQ, DQ], scale=1000.0),
                k=3,
                extra=("NUM-1",),
            ),
            case(
                "num-cos-scale-1e-3", "cos, scale 1e-3: nearly uniform softmax", config([QD, DQ], scale=1e-3)
            ),
        ],
    ),
    (
        "data_parallel.json",
        "Data parallel (DP-1 .. DP-3): per-rank loss and W-scaled local gradients for world sizes 1, 2, 3.",
        [
            case("dp-w1-qd", "world size 1", config([QD]), n=3, world_size=1),
            case("dp-w2-qd-k2", "world size 2, standard InfoNCE, K=2", config([QD]), world_size=2),
            case("dp-w2-gte-k2", "world size 2, GTE loss, K=2", config(GTE), world_size=2),
            case(
                "dp-w2-nt-xent-k1",
                "world size 2, NT-Xent (all four directions, per_anchor), K=1",
                config(GTE, "per_anchor", 2.0),
                k=1,
                world_size=2,
            ),
            case(
                "dp-w2-qd-dq-per-direction-dot-k3",
                "world size 2, symmetric per_direction, dot, K=3",
                config([QD, DQ], "per_direction", 1.0, "dot"),
                k=3,
                world_size=2,
            ),
            case(
                "dp-w3-qd-qq-hard-k3",
                "world size 3, query_to_doc + query_to_query, hard_negatives alpha 2, K=3",
                config([QD, QQ], hardness_mode="hard_negatives", hardness_strength=2.0),
                n=6,
                k=3,
                world_size=3,
            ),
            case(
                "dp-w3-gte-in-batch-k2",
                "world size 3, GTE loss, in_batch_negatives alpha 1, K=2",
                config(GTE, hardness_mode="in_batch_negatives", hardness_strength=1.0),
                n=6,
                world_size=3,
            ),
        ],
    ),
    (
        "errors.json",
        "Invalid configs and inputs: an implementation must raise an error naming the clause (VAL-1).",
        [
            error("err-directions-empty", "no direction", "DIR-1", config([])),
            error(
                "err-directions-unknown",
                "an unknown direction name",
                "DIR-1",
                config([QD, "query_to_passage"]),
            ),
            error("err-directions-without-query-to-doc", "query_to_doc missing", "DIR-1", config([DQ])),
            error("err-directions-string", "directions given as one string, not a list", "DIR-1", config(QD)),
            error(
                "err-partition-mode-unknown",
                "an unknown partition mode",
                "PART-1",
                config(partition_mode="mean"),
            ),
            error(
                "err-per-direction-query-to-query",
                "per_direction with query_to_query",
                "PART-4",
                config([QD, QQ], "per_direction"),
            ),
            error(
                "err-per-direction-doc-to-doc",
                "per_direction with doc_to_doc",
                "PART-4",
                config([QD, DQ, DD], "per_direction"),
            ),
            error(
                "err-per-anchor-doc-to-doc-without-doc-to-query",
                "per_anchor with doc_to_doc but not doc_to_query: the group of d[0, g] has no positive",
                "PART-6",
                config([QD, DD], "per_anchor"),
            ),
            error("err-scale-zero", "scale 0", "SCALE-1", config(scale=0.0)),
            error("err-scale-negative", "negative scale", "SCALE-1", config(scale=-20.0)),
            error("err-scale-infinite", "infinite scale", "SCALE-1", config(scale=float("inf"))),
            error("err-scale-nan", "NaN scale", "SCALE-1", config(scale=float("nan"))),
            error("err-scale-string", "scale given as a string", "SCALE-1", config(scale="20")),
            error("err-similarity-unknown", "an unknown similarity", "SIM-3", config(similarity="euclidean")),
            error(
                "err-hardness-mode-unknown",
                "an unknown hardness mode",
                "HARD-1",
                config(hardness_mode="semi_hard_negatives", hardness_strength=1.0),
            ),
            error(
                "err-hardness-strength-negative",
                "negative hardness strength",
                "HARD-1",
                config(hardness_mode="hard_negatives", hardness_strength=-1.0),
            ),
            error(
                "err-hardness-strength-nan",
                "NaN hardness strength",
                "HARD-1",
                config(hardness_mode="all_negatives", hardness_strength=float("nan")),
            ),
            error(
                "err-hardness-strength-boolean",
                "hardness strength given as a boolean",
                "HARD-1",
                config(hardness_mode="all_negatives", hardness_strength=True),
            ),
            error(
                "err-queries-one-dimensional",
                "queries (D,) instead of (N, D)",
                "LAYOUT-1",
                queries=[0.5, -1.0],
                docs=[[[0.5, -1.0]]],
            ),
            error(
                "err-queries-zero-width",
                "queries (2, 0): D = 0",
                "LAYOUT-1",
                queries=[[], []],
                docs=[[[], []]],
            ),
            error(
                "err-docs-two-dimensional",
                "docs (N, D) instead of (K, N, D)",
                "LAYOUT-2",
                docs=[[1.0, 1.0], [0.0, 2.0]],
            ),
            error("err-docs-no-columns", "docs with no column", "LAYOUT-2", docs=[]),
            error(
                "err-docs-batch-mismatch",
                "docs (1, 3, 2) for 2 queries",
                "LAYOUT-2",
                docs=[[[1.0, 1.0], [0.0, 2.0], [1.0, 0.0]]],
            ),
            error(
                "err-docs-width-mismatch",
                "docs of width 3 for queries of width 2",
                "LAYOUT-2",
                docs=[[[1.0, 1.0, 0.0], [0.0, 2.0, 1.0]]],
            ),
            error(
                "err-queries-nan", "a NaN in queries", "LAYOUT-4", queries=[[1.0, float("nan")], [0.0, 1.0]]
            ),
            error(
                "err-docs-infinite",
                "an infinite hard negative",
                "LAYOUT-4",
                docs=[[[1.0, 1.0], [0.0, 2.0]], [[1.0, -1.0], [float("-inf"), 1.0]]],
            ),
            error(
                "err-integer-dtype",
                "integer arrays (dtype int64)",
                "LAYOUT-5",
                queries=[[1, 0], [0, 1]],
                docs=[[[1, 1], [0, 2]]],
                dtype="int64",
            ),
            error(
                "err-world-size-uneven",
                "N=4 queries over 3 ranks: unequal local batches",
                "DP-5",
                queries=np.eye(4, 2).tolist(),
                docs=[np.ones((4, 2)).tolist()],
                world_size=3,
            ),
            error("err-world-size-zero", "world size 0", "DP-1", world_size=0),
        ],
    ),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help=f"compare with the committed files (rtol {CHECK_RTOL:g})"
    )
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write or check (default: this one)")
    args = parser.parse_args(argv)
    texts = build_vectors(FILES + SHAPE_FILES)
    if args.check:
        drift = check_vectors(args.out, texts)
        for where, what in drift:
            print(f"DRIFT {where}: {what}")
        n = sum(len(specs) for _, _, specs in FILES + SHAPE_FILES)
        print(f"{'FAIL' if drift else 'ok'}: {n} cases in {len(texts)} files checked against {args.out}")
        return 1 if drift else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (args.out / name).write_text(text)
    total = sum(len(t.encode()) for t in texts.values())
    print(f"wrote {len(texts)} files ({total / 1024:.0f} KiB) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
