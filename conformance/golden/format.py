"""Golden vectors: the JSON conventions, constants and the writer (numbers read back exactly)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from infonce_spec import SPEC_VERSION
from infonce_spec.clauses import CLAUSE_IDS
from infonce_spec.reference import Config
from infonce_spec.vocabulary import DIRECTION_SPECS

FORMAT = "infonce-spec-golden-vectors"
#: The schema is versioned with the spec: vectors for spec X are schema X.
SCHEMA_VERSION = SPEC_VERSION
#: Every clause of the spec, in the spec's order (reports and the manifest's index follow it).
ALL_CLAUSES = CLAUSE_IDS
#: Clauses no golden vector can check (they need a model, a training step or a process group).
NOT_COVERED = {
    "DP-4": "parameter gradients averaged over ranks need a model; the conformance suite checks it",
    **{
        f"CACHE-{i}": "GradCache needs an encoder and mini-batches; the conformance suite checks it"
        for i in range(1, 6)
    },
}
#: Per-array error: max|got - expected| / max(max|expected|, FLOOR) (arrays below 1 compare absolutely).
FLOOR = 1.0
#: ``generate.py --check``: regenerated vectors may differ from the committed ones by this much.
CHECK_RTOL = 1e-12
#: Verifier bounds per declared results dtype: values (losses) and gradients.
TOLERANCES = {"float64": {"values": 1e-9, "gradients": 1e-9}, "float32": {"values": 1e-4, "gradients": 1e-3}}
#: Spec section 11: rejecting non-finite values is a MUST for the reference, a SHOULD for implementations.
SHOULD_ERRORS = frozenset({"LAYOUT-4"})
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
ASPECT_CLAUSES = {"grad_scale": {"SCALE-2"}, "ranks": {"DP-1", "DP-2", "DP-3"}}
#: The clauses a direction's rows exercise in any case: its row clause and its masks (GRAD-2 with
#: them); MASK-DD-2, the mask of the own *hard negatives*, only with K >= 2 (added by the generator).
_DIRECTION_CLAUSES = {
    name: (spec.clause, *(m for m in spec.masks if m != "MASK-DD-2"), *(("GRAD-2",) if spec.masks else ()))
    for name, spec in DIRECTION_SPECS.items()
}


# JSON conventions and writer
def _scalar(x: Any) -> str:
    if x is None or isinstance(x, bool | str):
        return json.dumps(x)
    if isinstance(x, int | np.integer):
        return str(int(x))
    x = float(x)
    if not math.isfinite(x):  # the protobuf JSON convention: "NaN", "Infinity", "-Infinity"
        return json.dumps("NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity"))
    return repr(x)  # the shortest decimal that reads back to the same binary64 (<= 17 digits)


#: Longest line the writer joins a matrix into (longer ones get a row per line), and an object
#: of numbers, strings and flat lists (a config, a manifest entry).
_LINE = 100
_OBJECT_LINE = 300


def _emit(obj: Any, level: int) -> str:
    pad = "  " * level
    if isinstance(obj, dict):
        flat = all(
            not isinstance(v, dict | list | tuple) or not any(isinstance(w, list | tuple | dict) for w in v)
            for v in obj.values()
        )
        if flat and obj:  # a config or a manifest entry: one line when it is short
            line = "{" + ", ".join(f"{json.dumps(k)}: {_emit(v, level + 1)}" for k, v in obj.items()) + "}"
            if len(line) <= _OBJECT_LINE:
                return line
        items = [f"{pad}  {json.dumps(k)}: {_emit(v, level + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}" if items else "{}"
    if isinstance(obj, list | tuple | np.ndarray):
        obj = obj.tolist() if isinstance(obj, np.ndarray) else obj
        if not any(isinstance(v, list | tuple | dict) for v in obj):
            return "[" + ", ".join(_scalar(v) for v in obj) + "]"
        if not any(isinstance(w, list | tuple | dict) for v in obj if isinstance(v, list | tuple) for w in v):
            line = "[" + ", ".join(_emit(v, level + 1) for v in obj) + "]"
            if len(line) <= _LINE and not any(isinstance(v, dict) for v in obj):
                return line  # a short matrix on one line
        return "[\n" + ",\n".join(f"{pad}  {_emit(v, level + 1)}" for v in obj) + f"\n{pad}]"
    return _scalar(obj)


def dumps(obj: Any) -> str:
    """JSON text of the vectors: objects indented, innermost number lists on one line."""
    return _emit(obj, 0) + "\n"


def decode(tree: Any) -> Any:
    """``tree`` with the strings "NaN", "Infinity", "-Infinity" turned into floats."""
    if isinstance(tree, str):
        return _NON_FINITE.get(tree, tree)
    if isinstance(tree, list):
        return [decode(v) for v in tree]
    if isinstance(tree, dict):
        return {k: decode(v) for k, v in tree.items()}
    return tree


def relative_error(got: Any, expected: Any, floor: float = FLOOR) -> tuple[float, tuple[int, ...]]:
    """``max|got - expected| / max(max|expected|, floor)`` over one array, and the worst index."""
    g, e = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    if g.shape != e.shape:
        return math.inf, ()
    if e.size == 0:
        return 0.0, ()
    diff = np.where(np.isfinite(g), np.abs(g - e), math.inf)
    worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(diff)), diff.shape))
    return float(diff[worst] / max(float(np.max(np.abs(e))), floor)), worst


def value_clauses(config: Config, queries: np.ndarray, docs: np.ndarray) -> list[str]:
    """The clauses a value case with ``config`` on these inputs exercises (spec order): layout,
    scale, ``query_to_doc``, loss and gradients always; the similarity; the partition; each
    direction's row, masks and GRAD-2; ROW-1 and MASK-DD-2 with K >= 2; HARD-2 .. HARD-5 with an
    active hardness mode that selects entries (HARD-3 alone for ``hard_negatives`` with K = 1, which
    selects none), HARD-6 with a mode or strength that is not active; GRAD-3 for a row of norm
    below the cos floor."""
    k = docs.shape[0]
    found = {"LAYOUT-1", "LAYOUT-2", "LAYOUT-3", "SCALE-1", "SCALE-2", "QD-1", "QD-2", "LOSS-1", "LOSS-2"}
    found |= {"GRAD-1", "SIM-1" if config.similarity == "cos" else "SIM-2"}
    found.add({"joint": "PART-2", "per_direction": "PART-3", "per_anchor": "PART-5"}[config.partition_mode])
    for direction in config.directions:
        found.update(_DIRECTION_CLAUSES.get(direction, ()))
    if k >= 2:
        found.add("ROW-1")
        if "doc_to_doc" in config.directions:
            found.add("MASK-DD-2")
    if config.hardness_active and (k >= 2 or config.hardness_mode != "hard_negatives"):
        found |= {"HARD-2", "HARD-3", "HARD-4", "HARD-5"}
    elif config.hardness_active:
        found.add("HARD-3")  # hard_negatives with K = 1: the selection holds no entry
    elif config.hardness_mode is not None or config.hardness_strength > 0:
        found.add("HARD-6")
    norms = np.linalg.norm(np.concatenate([queries, docs.reshape(-1, docs.shape[-1])]), axis=1)
    if config.similarity == "cos" and bool(np.any(norms < 1e-12)):
        found.add("GRAD-3")
    return sorted(found, key=ALL_CLAUSES.index)
