"""Golden vectors: the generator (from the float64 reference) and the drift check."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from infonce_spec import SPEC_SHA256, SPEC_VERSION
from infonce_spec.errors import SpecViolation
from infonce_spec.reference import Config, loss_and_grad, rank_expectations

from .format import (
    ALL_CLAUSES,
    CHECK_RTOL,
    FLOOR,
    FORMAT,
    NOT_COVERED,
    SCHEMA_VERSION,
    SHOULD_ERRORS,
    decode,
    dumps,
    relative_error,
    value_clauses,
)


# generator
@dataclass(frozen=True)
class CaseSpec:
    """One case of the catalogue: inputs and config; ``error`` is the clause the reference must raise."""

    id: str
    title: str
    config: dict[str, Any]
    queries: Any
    docs: Any
    world_size: int | None = None
    extra_clauses: tuple[str, ...] = ()
    error: str | None = None
    dtype: str = "float64"


def _value_clauses(spec: CaseSpec, config: Config, queries: np.ndarray, docs: np.ndarray) -> list[str]:
    """The clauses a value case exercises: those of its config and inputs, DP-1 .. DP-3 for a
    data-parallel case and the catalogue's extra clauses (documented in SCHEMA.md)."""
    found = set(value_clauses(config, queries, docs)) | set(spec.extra_clauses)
    if spec.world_size is not None:
        found |= {"DP-1", "DP-2", "DP-3"}
    return sorted(found, key=ALL_CLAUSES.index)


def build_case(spec: CaseSpec) -> dict[str, Any]:
    """The JSON record of one case, expected values computed by the reference."""
    inputs: dict[str, Any] = {"queries": spec.queries, "docs": spec.docs}
    if spec.dtype != "float64":
        inputs["dtype"] = spec.dtype
    record: dict[str, Any] = {"id": spec.id, "title": spec.title, "clauses": []}
    record.update(config=spec.config, inputs=inputs)
    try:
        config = Config(**decode(dict(spec.config)))
        queries = np.asarray(decode(spec.queries), dtype=spec.dtype)
        docs = np.asarray(decode(spec.docs), dtype=spec.dtype)
        result = loss_and_grad(queries, docs, config)
        ranks = (
            rank_expectations(queries, docs, config, spec.world_size) if spec.world_size is not None else None
        )
    except SpecViolation as exc:
        if exc.clause != spec.error:
            raise AssertionError(
                f"{spec.id}: the reference raised {exc.clause}, the catalogue says {spec.error}"
            ) from exc
        record["clauses"] = sorted({exc.clause, "VAL-1"}, key=ALL_CLAUSES.index)
        if spec.world_size is not None:
            record["data_parallel"] = {"world_size": spec.world_size}
        record["expected_error"] = {
            "clause": exc.clause,
            "type": "TypeError" if isinstance(exc, TypeError) else "ValueError",
            "level": "SHOULD" if exc.clause in SHOULD_ERRORS else "MUST",
        }
        if spec.world_size is not None:
            record["expected_error"]["condition"] = "data_parallel"
        return record
    if spec.error is not None:
        raise AssertionError(f"{spec.id}: the catalogue expects {spec.error}, the reference raised nothing")
    record["clauses"] = _value_clauses(spec, config, queries, docs)
    record["expected"] = {
        "loss": result.loss,
        "per_query_loss": result.per_query_loss,
        "grad_queries": result.grad_queries,
        "grad_docs": result.grad_docs,
        "grad_scale": result.grad_scale,
    }
    if ranks is not None:
        rows = [
            {"rank": r.rank, "loss": r.loss, "grad_queries": r.grad_queries, "grad_docs": r.grad_docs}
            for r in ranks
        ]
        record["data_parallel"] = {"world_size": spec.world_size, "ranks": rows}
    return record


def build_vectors(files: Sequence[tuple[str, str, Sequence[CaseSpec]]]) -> dict[str, str]:
    """Every file's JSON text, ``MANIFEST.json`` included, from ``(file name, description, cases)``."""
    head = {"format": FORMAT, "schema_version": SCHEMA_VERSION, "spec_version": SPEC_VERSION}
    texts: dict[str, str] = {}
    entries, index = [], {}
    for name, description, specs in files:
        cases = [build_case(spec) for spec in specs]
        texts[name] = dumps({**head, "file": name, "description": description, "cases": cases})
        summary = [
            {"id": c["id"], "kind": "error" if "expected_error" in c else "value", "clauses": c["clauses"]}
            for c in cases
        ]
        entries.append({"path": name, "description": description, "cases": summary})
        for case in cases:
            for clause in case["clauses"]:
                index.setdefault(clause, []).append(case["id"])
    ids = [c["id"] for e in entries for c in e["cases"]]
    if len(ids) != len(set(ids)):
        raise AssertionError(f"duplicate case ids: {sorted({i for i in ids if ids.count(i) > 1})}")
    manifest = {
        **head,
        "spec_sha256": SPEC_SHA256,
        "description": "Golden vectors of infonce-spec: read the case files listed here (see SCHEMA.md).",
        "generator": "spec/vectors/generate.py",
        "files": entries,
        "clauses": {c: len(index[c]) for c in ALL_CLAUSES if c in index},
        "not_covered": {c: why for c, why in NOT_COVERED.items() if c not in index},
    }
    texts["MANIFEST.json"] = dumps(manifest)
    return texts


def _is_numeric(tree: Any) -> bool:
    if isinstance(tree, list):
        return bool(tree) and all(_is_numeric(v) for v in tree)
    return isinstance(tree, int | float) and not isinstance(tree, bool)


def _drift(expected: Any, got: Any, path: str, found: list[tuple[str, str]]) -> None:
    if _is_numeric(expected) and _is_numeric(got):
        err, worst = relative_error(got, expected, FLOOR)
        if err > CHECK_RTOL:
            where = f" at {list(worst)}" if worst else ""
            found.append((path, f"worst relative error {err:.3g}{where} > {CHECK_RTOL:g}"))
    elif isinstance(expected, dict) and isinstance(got, dict):
        for key in sorted(set(expected) | set(got), key=lambda k: (k not in expected, k)):
            if key not in got or key not in expected:
                found.append((f"{path}.{key}", "missing" if key not in got else "not generated"))
            else:
                _drift(expected[key], got[key], f"{path}.{key}", found)
    elif isinstance(expected, list) and isinstance(got, list) and len(expected) == len(got):
        for i, (e, g) in enumerate(zip(expected, got, strict=True)):
            label = str(e.get("id", e.get("path", i))) if isinstance(e, dict) else str(i)
            _drift(e, g, f"{path}[{label}]", found)
    elif expected != got:
        found.append((path, f"committed {json.dumps(got)[:60]}, generated {json.dumps(expected)[:60]}"))


def check_vectors(vectors_dir: Path, texts: dict[str, str]) -> list[tuple[str, str]]:
    """Differences between the committed files and freshly generated ``texts`` beyond :data:`CHECK_RTOL`.

    Numbers compare per array, relative to ``max(max|expected|, FLOOR)``; everything else exactly.
    Files in ``vectors_dir`` that the generator does not write are reported too.
    """
    found: list[tuple[str, str]] = []
    for name, text in texts.items():
        path = vectors_dir / name
        if not path.is_file():
            found.append((name, "missing (run spec/vectors/generate.py)"))
            continue
        _drift(json.loads(text), json.loads(path.read_text()), name, found)
    stray = sorted(p.name for p in vectors_dir.glob("*.json") if p.name not in texts)
    found += [(name, "not written by the generator (stale file?)") for name in stray]
    return found
