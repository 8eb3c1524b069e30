"""Golden vectors: language-neutral JSON test vectors of infonce-spec, their generator and verifier.

``spec/vectors/`` holds small cases (inputs, config, expected loss and gradients, per-rank
data-parallel expectations, and invalid inputs with the clause their error must name), written by
``spec/vectors/generate.py`` from the float64 reference. ``spec/vectors/SCHEMA.md`` is the schema;
``docs/golden-vectors.md`` the guide. This module holds

* the JSON conventions (numbers, non-finite values) and the writer (:func:`dumps`);
* the generator (:func:`build_vectors`) and the drift check (:func:`check_vectors`);
* the loader (:func:`load_cases`) -- cases are found through ``MANIFEST.json``, never by globbing;
* the verifier (:func:`verify`) of a results file from an implementation in any language, and its
  command line (:func:`main`; ``python -m infonce_spec.conformance.golden verify RESULTS``).

In any mismatch between the vectors and ``spec/infonce-spec.md``, the spec is right.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from infonce_spec import SPEC_VERSION
from infonce_spec.errors import SpecViolation
from infonce_spec.reference import Config, loss_and_grad, rank_expectations

__all__ = [
    "ALL_CLAUSES",
    "CHECK_RTOL",
    "FLOOR",
    "FORMAT",
    "SCHEMA_VERSION",
    "TOLERANCES",
    "VERIFY_HELP",
    "CaseSpec",
    "Report",
    "add_verify_arguments",
    "build_vectors",
    "check_vectors",
    "dumps",
    "load_cases",
    "main",
    "relative_error",
    "run_verify",
    "verify",
]

FORMAT = "infonce-spec-golden-vectors"
#: The schema is versioned with the spec: vectors for spec X are schema X.
SCHEMA_VERSION = SPEC_VERSION
#: Every clause of the spec, in the spec's order (reports and the manifest's index follow it).
ALL_CLAUSES = tuple(
    "LAYOUT-1 LAYOUT-2 LAYOUT-3 LAYOUT-4 LAYOUT-5 SIM-1 SIM-2 SIM-3 SCALE-1 DIR-1 DIR-2 QD-1 QD-2 QQ-1 "
    "MASK-QQ-1 DQ-1 DD-1 MASK-DD-1 MASK-DD-2 ROW-1 HARD-1 HARD-2 HARD-3 HARD-4 HARD-5 HARD-6 PART-1 PART-2 "
    "PART-3 PART-4 LOSS-1 LOSS-2 GRAD-1 GRAD-2 GRAD-3 SCALE-2 NUM-1 DP-1 DP-2 DP-3 DP-4 DP-5 CACHE-1 "
    "CACHE-2 CACHE-3 CACHE-4 CACHE-5 VAL-1".split()
)
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
_ASPECT_CLAUSES = {"grad_scale": {"SCALE-2"}, "ranks": {"DP-1", "DP-2", "DP-3"}}
_DIRECTION_CLAUSES = {
    "query_to_query": ("QQ-1", "MASK-QQ-1", "GRAD-2"),
    "doc_to_query": ("DQ-1",),
    "doc_to_doc": ("DD-1", "MASK-DD-1", "GRAD-2"),
}


# ---------------------------------------------------------------- JSON conventions and writer
def _scalar(x: Any) -> str:
    if x is None or isinstance(x, bool | str):
        return json.dumps(x)
    if isinstance(x, int | np.integer):
        return str(int(x))
    x = float(x)
    if not math.isfinite(x):  # the protobuf JSON convention: "NaN", "Infinity", "-Infinity"
        return json.dumps("NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity"))
    return repr(x)  # the shortest decimal that reads back to the same binary64 (<= 17 digits)


def _emit(obj: Any, level: int) -> str:
    pad = "  " * level
    if isinstance(obj, dict):
        items = [f"{pad}  {json.dumps(k)}: {_emit(v, level + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}" if items else "{}"
    if isinstance(obj, list | tuple | np.ndarray):
        obj = obj.tolist() if isinstance(obj, np.ndarray) else obj
        if not any(isinstance(v, list | tuple | dict) for v in obj):
            return "[" + ", ".join(_scalar(v) for v in obj) + "]"
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


# ---------------------------------------------------------------- generator
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
    """The clauses a value case exercises, derived from its config and inputs (documented in SCHEMA.md)."""
    k = docs.shape[0]
    found = {"LAYOUT-1", "LAYOUT-2", "LAYOUT-3", "SCALE-1", "SCALE-2", "QD-1", "QD-2", "LOSS-1", "LOSS-2"}
    found |= {"GRAD-1", "SIM-1" if config.similarity == "cos" else "SIM-2"}
    found.add("PART-2" if config.partition_mode == "joint" else "PART-3")
    for direction in config.directions:
        found.update(_DIRECTION_CLAUSES.get(direction, ()))
    if k >= 2:
        found.add("ROW-1")
        if "doc_to_doc" in config.directions:
            found.add("MASK-DD-2")
    if config.hardness_active:
        found |= {"HARD-2", "HARD-3", "HARD-4", "HARD-5"}
    elif config.hardness_mode is not None or config.hardness_strength > 0:
        found.add("HARD-6")
    norms = np.linalg.norm(np.concatenate([queries, docs.reshape(-1, docs.shape[-1])]), axis=1)
    if config.similarity == "cos" and bool(np.any(norms < 1e-12)):
        found.add("GRAD-3")
    if spec.world_size is not None:
        found |= {"DP-1", "DP-2", "DP-3"}
    return sorted(found | set(spec.extra_clauses), key=ALL_CLAUSES.index)


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
        "description": "Golden vectors of infonce-spec: read the case files listed here (see SCHEMA.md).",
        "generator": "spec/vectors/generate.py",
        "files": entries,
        "clauses": {c: index[c] for c in ALL_CLAUSES if c in index},
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


# ---------------------------------------------------------------- loader
def default_vectors_dir() -> Path:
    """``$INFONCE_VECTORS``, else ``spec/vectors`` of this checkout, else ``./spec/vectors``."""
    if os.environ.get("INFONCE_VECTORS"):
        return Path(os.environ["INFONCE_VECTORS"])
    here = Path(__file__).resolve().parents[1] / "spec" / "vectors"
    return here if (here / "MANIFEST.json").is_file() else Path("spec/vectors")


def load_cases(vectors: Path | str | None = None) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    """The manifest and every ``(file name, case)`` it lists, in manifest order (numbers decoded)."""
    path = Path(vectors) if vectors is not None else default_vectors_dir()
    manifest_path = path if path.is_file() else path / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{manifest_path} is not a {FORMAT} manifest")
    cases = []
    for entry in manifest["files"]:
        data = decode(json.loads((manifest_path.parent / entry["path"]).read_text()))
        by_id = {c["id"]: c for c in data["cases"]}
        for listed in entry["cases"]:
            if listed["id"] not in by_id:
                raise ValueError(f"{entry['path']} lacks case {listed['id']} listed in the manifest")
            cases.append((entry["path"], by_id[listed["id"]]))
    return manifest, cases


# ---------------------------------------------------------------- verifier
VERIFY_HELP = (
    "check a results file written by any implementation, in any language, against the golden vectors"
)
_VALUE_FIELDS = (("loss", "values"), ("per_query_loss", "values"), ("grad_queries", "gradients"))
_VALUE_FIELDS += (("grad_docs", "gradients"),)
_RANK_FIELDS = (("loss", "values"), ("grad_queries", "gradients"), ("grad_docs", "gradients"))


@dataclass
class Check:
    """One aspect of one case (``values``, ``grad_scale``, ``ranks`` or ``error``) and its verdict."""

    case: str
    file: str
    aspect: str
    clauses: tuple[str, ...]
    verdict: str = "not covered"
    required: bool = True
    details: list[str] = field(default_factory=list)
    errors: dict[str, float | str] = field(default_factory=dict)
    suspects: tuple[str, ...] = ()


@dataclass
class Report:
    """The verdict of a results file: every check, and per clause pass / FAIL / not covered."""

    implementation: str
    results_path: str
    vectors: str
    dtype: str
    tolerances: dict[str, float]
    claims: dict[str, bool]
    checks: list[Check]
    clauses: dict[str, dict[str, Any]]

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.verdict == "FAIL"]

    @property
    def missing(self) -> list[Check]:
        """Required checks that the results do not answer."""
        return [c for c in self.checks if c.required and c.verdict == "not covered"]

    @property
    def ok(self) -> bool:
        """True iff no check fails and every required check ran (and so passed)."""
        return not self.failed and not self.missing

    def summary(self) -> str:
        counts = {v: sum(c.verdict == v for c in self.checks) for v in ("pass", "FAIL", "not covered")}
        bad = [c for c, row in self.clauses.items() if row["verdict"] == "FAIL"]
        head = "PASS" if self.ok else "FAIL"
        text = f"{head}: {counts['pass']} checks pass, {counts['FAIL']} FAIL, {counts['not covered']} not covered"
        text += f" ({len(self.missing)} of them required)" if self.missing else ""
        return text + (f"; clauses FAIL: {', '.join(bad)}" if bad else "")

    def to_json(self) -> dict[str, Any]:
        return {
            "implementation": self.implementation,
            "results": self.results_path,
            "vectors": self.vectors,
            "dtype": self.dtype,
            "tolerances": self.tolerances,
            "claims": self.claims,
            "ok": self.ok,
            "summary": self.summary(),
            "clauses": self.clauses,
            "not_covered_by_vectors": NOT_COVERED,
            "checks": [
                vars(c) | {"clauses": list(c.clauses), "suspects": list(c.suspects)} for c in self.checks
            ],
        }

    def to_markdown(self) -> str:
        tol = ", ".join(f"{k} {v:g}" for k, v in self.tolerances.items())
        lines = [
            f"# Golden-vector verification: {self.implementation}",
            "",
            f"- results: `{self.results_path}` (dtype {self.dtype}; bounds {tol}, per array, relative to "
            f"max(max|expected|, {FLOOR:g}))",
            f"- vectors: `{self.vectors}` (spec {SPEC_VERSION})",
            "- optional parts answered (claimed): "
            + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in self.claims.items()),
            f"- verdict: **{self.summary()}**",
            "",
            "## Clauses",
            "",
            "| clause | verdict | checks pass | FAIL | not in results | note |",
            "|---|---|---|---|---|---|",
        ]
        for clause, row in self.clauses.items():
            lines.append(
                f"| {clause} | {row['verdict']} | {row['pass']} | {row['FAIL']} | {row['not covered']} | {row['note']} |"
            )
        lines += [
            "",
            "Not covered by the golden vectors (see the conformance suite): " + ", ".join(NOT_COVERED),
        ]
        if self.failed:
            lines += ["", "## Failures", ""]
            for c in self.failed:
                lines.append(
                    f"- `{c.case}` [{c.aspect}] ({c.file}); clauses {', '.join(c.clauses)}; "
                    f"most likely broken: **{', '.join(c.suspects)}**"
                )
                lines += [f"  - {d}" for d in c.details]
                lines.append(f"  - replay: `python -m infonce_spec.conformance.golden show {c.case}`")
        for required in (True, False):
            left = [c for c in self.checks if c.verdict == "not covered" and c.required == required]
            if left:
                kind = "required" if required else "optional, not claimed"
                lines += ["", f"## Not covered: {kind} ({len(left)} checks)", ""]
                lines += [f"- `{c.case}` [{c.aspect}] {'; '.join(c.details)}".rstrip() for c in left]
        return "\n".join(lines) + "\n"


def _compare(name: str, got: Any, expected: Any, rtol: float, check: Check) -> None:
    try:
        arr = np.asarray(decode(got), dtype=np.float64)
    except (TypeError, ValueError):
        check.details.append(f"{name}: {json.dumps(got)[:80]} is not a number or an array of numbers")
        return
    exp = np.asarray(expected, dtype=np.float64)
    if arr.shape != exp.shape:
        check.details.append(f"{name}: shape {arr.shape}, but should be {exp.shape}")
        return
    err, worst = relative_error(arr, exp, FLOOR)
    check.errors[name] = err if math.isfinite(err) else "Infinity"  # the JSON report stays strict JSON
    if not err <= rtol:
        at = f"[{', '.join(map(str, worst))}]" if worst else ""
        at += "" if np.isfinite(arr[worst]) else " is not finite (NUM-1, GRAD-2)"
        check.details.append(
            f"{name}{at}: got {float(arr[worst])!r}, expected {float(exp[worst])!r}; relative error {err:.3g} > {rtol:g} "
            f"(relative to max(max|expected|, {FLOOR:g}) = {max(float(np.max(np.abs(exp))), FLOOR):.6g})"
        )


def _error_clause(got: dict[str, Any]) -> str:
    error = got["error"]
    return str(error.get("clause") if isinstance(error, dict) else error)


def _case_checks(
    file: str, case: dict[str, Any], got: Any, tol: dict[str, float], claims: dict[str, bool]
) -> list[Check]:
    cid, clauses = case["id"], tuple(case["clauses"])
    if "expected_error" in case:
        want = case["expected_error"]
        condition = want.get("condition")
        required = want["level"] == "MUST" and (condition is None or claims[condition])
        check = Check(cid, file, "error", clauses, required=required)
        if isinstance(got, dict) and "error" in got:
            ok = _error_clause(got) == want["clause"]
            check.verdict = "pass" if ok else "FAIL"
            if not ok:
                check.details.append(
                    f"raised [{_error_clause(got)}], but the spec requires [{want['clause']}]"
                )
        elif got is not None and required:
            check.verdict = "FAIL"
            check.details.append(
                f"returned values, but the spec requires a {want['type']} naming [{want['clause']}]"
            )
        elif got is not None:
            why = f"a {want['level']}" if condition is None else f"for {condition} implementations only"
            check.details.append(f"returned values: rejecting this input is {why} (not claimed)")
        return [check]
    aspects = {"values": tuple(c for c in clauses if not any(c in s for s in _ASPECT_CLAUSES.values()))}
    aspects["grad_scale"] = ("SCALE-2",)
    if "data_parallel" in case:
        aspects["ranks"] = tuple(c for c in clauses if c in _ASPECT_CLAUSES["ranks"])
    required = {"values": True, "grad_scale": claims["grad_scale"], "ranks": claims["data_parallel"]}
    checks = {a: Check(cid, file, a, cs, required=required[a]) for a, cs in aspects.items()}
    if got is None:
        return list(checks.values())
    if not isinstance(got, dict) or "error" in got:
        why = f"raised [{_error_clause(got)}] on a valid input" if isinstance(got, dict) else "not an object"
        for check in checks.values():
            check.verdict = "FAIL"
            check.details.append(why)
        return list(checks.values())
    expected = case["expected"]
    for name, kind in _VALUE_FIELDS:
        if name not in got:
            checks["values"].details.append(f"{name}: missing from the results (required)")
        else:
            _compare(name, got[name], expected[name], tol[kind], checks["values"])
    if "grad_scale" in got:
        _compare(
            "grad_scale", got["grad_scale"], expected["grad_scale"], tol["gradients"], checks["grad_scale"]
        )
    if "ranks" in checks and "ranks" in got:
        _compare_ranks(got["ranks"], case["data_parallel"]["ranks"], tol, checks["ranks"])
    for aspect, check in checks.items():
        ran = aspect == "values" or aspect in got
        check.verdict = ("FAIL" if check.details else "pass") if ran else "not covered"
    return list(checks.values())


def _compare_ranks(got: Any, expected: list[dict[str, Any]], tol: dict[str, float], check: Check) -> None:
    if not isinstance(got, list) or len(got) != len(expected) or not all(isinstance(r, dict) for r in got):
        check.details.append(f"ranks: should be a list of {len(expected)} objects (one per rank, DP-1)")
        return
    by_rank = {int(r.get("rank", i)): r for i, r in enumerate(got)}
    for want in expected:
        rank = by_rank.get(want["rank"])
        if rank is None:
            check.details.append(f"ranks: rank {want['rank']} missing")
            continue
        for name, kind in _RANK_FIELDS:
            label = f"ranks[{want['rank']}].{name}"
            if name in rank:
                _compare(label, rank[name], want[name], tol[kind], check)
            else:
                check.details.append(f"{label}: missing")


def _clause_table(checks: list[Check]) -> dict[str, dict[str, Any]]:
    """Per clause: counts, and the verdict with a differential diagnosis of failures.

    Each failing check is attributed to the clauses of its case with the highest failure ratio
    (failing / run checks exercising the clause), if that ratio is at least one half: when only
    the doc_to_doc cases with hard negatives fail, MASK-DD-2 fails (nearly) everywhere while QD-1
    passes in most cases, so MASK-DD-2 is blamed. Otherwise (a failure no clause explains) every
    clause of the failing check is blamed. Blamed clauses are FAIL; so is any clause whose every
    check fails.
    """
    ratio: dict[str, float] = {}
    for clause in {c for check in checks for c in check.clauses}:
        ran = [c.verdict for c in checks if clause in c.clauses and c.verdict != "not covered"]
        ratio[clause] = ran.count("FAIL") / len(ran) if ran else 0.0
    per_case: dict[str, set[str]] = {}
    for check in checks:
        per_case.setdefault(check.case, set()).update(check.clauses)
    blamed: dict[str, set[str]] = {}
    for check in checks:
        if check.verdict == "FAIL":
            top = max((ratio[c] for c in per_case[check.case]), default=0.0)
            suspects = {c for c in per_case[check.case] if ratio[c] == top} if top >= 0.5 else set()
            suspects = suspects or set(check.clauses)
            check.suspects = tuple(sorted(suspects, key=ALL_CLAUSES.index))
            for clause in suspects:
                blamed.setdefault(clause, set()).add(check.case)
    table = {}
    for clause in ALL_CLAUSES:
        mine = [c for c in checks if clause in c.clauses]
        if not mine:
            continue
        counts = {v: sum(c.verdict == v for c in mine) for v in ("pass", "FAIL", "not covered")}
        if clause in blamed:
            verdict, note = "FAIL", f"failing cases: {', '.join(sorted(blamed[clause]))}"
        elif counts["pass"] or counts["FAIL"]:
            verdict, note = "pass", ""
            if counts["FAIL"]:
                others = sorted(
                    {s for c in mine if c.verdict == "FAIL" for s in c.suspects}, key=ALL_CLAUSES.index
                )
                note = f"its {counts['FAIL']} failing check(s) are attributed to {', '.join(others)}"
        else:
            verdict, note = "not covered", "no case exercising it is in the results"
        table[clause] = {"verdict": verdict, **counts, "note": note}
    return table


def verify(results_path: Path | str, vectors_dir: Path | str | None = None) -> Report:
    """Check ``results_path`` (results JSON, see ``spec/vectors/SCHEMA.md``) against the vectors.

    Raises ``ValueError`` for an unreadable results file, an unknown ``dtype`` or a spec version
    other than the vectors'.
    """
    manifest, cases = load_cases(vectors_dir)
    results = json.loads(Path(results_path).read_text())
    if not isinstance(results, dict) or not isinstance(results.get("results"), dict):
        raise ValueError(
            f"{results_path}: a results file is an object with a 'results' object (see SCHEMA.md)"
        )
    dtype = results.get("dtype", "float64")
    if dtype not in TOLERANCES:
        raise ValueError(
            f"{results_path}: dtype {dtype!r} has no documented bound; use one of {list(TOLERANCES)}"
        )
    version = results.get("spec_version", manifest["spec_version"])
    if version != manifest["spec_version"]:
        raise ValueError(
            f"{results_path}: results for spec {version}, vectors for spec {manifest['spec_version']}"
        )
    got = results["results"]
    entries = [e for e in got.values() if isinstance(e, dict)]
    claims = {
        "grad_scale": any("grad_scale" in e for e in entries),
        "data_parallel": any("ranks" in e for e in entries),
    }
    checks = [
        c
        for file, case in cases
        for c in _case_checks(file, case, got.get(case["id"]), TOLERANCES[dtype], claims)
    ]
    known = {case["id"] for _, case in cases}
    checks += [
        Check(
            cid,
            "?",
            "unknown",
            (),
            "FAIL",
            details=["results hold a case id that the manifest does not list"],
        )
        for cid in got
        if cid not in known
    ]
    return Report(
        implementation=str(results.get("implementation", "unnamed implementation")),
        results_path=str(results_path),
        vectors=str(vectors_dir if vectors_dir is not None else default_vectors_dir()),
        dtype=dtype,
        tolerances=TOLERANCES[dtype],
        claims=claims,
        checks=checks,
        clauses=_clause_table(checks),
    )


# ---------------------------------------------------------------- command line
def add_verify_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``verify``; :func:`run_verify` takes the parsed namespace."""
    parser.add_argument("results", type=Path, help="results JSON written by the implementation under test")
    parser.add_argument("--vectors", type=Path, default=None, help="vectors folder or its MANIFEST.json")
    parser.add_argument("--report", type=Path, default=None, help="write the Markdown report here")
    parser.add_argument("--json", type=Path, default=None, dest="json_out", help="write the JSON report here")
    parser.add_argument(
        "--allow-not-covered",
        action="store_true",
        help="exit 0 when nothing fails although some cases or optional fields are absent from the results",
    )


def run_verify(args: argparse.Namespace) -> int:
    """Run ``verify`` from parsed arguments; print the verdict, write the reports, return the exit status.

    0: no check fails and every required check ran (``--allow-not-covered``: no check fails);
    1: otherwise; 2: the results or the vectors cannot be read.
    """
    try:
        report = verify(args.results, args.vectors)
    except (OSError, ValueError, KeyError) as exc:
        print(f"verify: {exc}", file=sys.stderr)
        return 2
    if args.report:
        args.report.write_text(report.to_markdown())
    if args.json_out:
        args.json_out.write_text(json.dumps(report.to_json(), indent=1) + "\n")
    print(report.summary())
    for check in report.failed[:10]:
        print(f"  {check.case} [{check.aspect}] (suspect {', '.join(check.suspects)}): {check.details[0]}")
    if len(report.failed) > 10:
        print(f"  ... and {len(report.failed) - 10} more failing checks (see --report)")
    if report.ok or (args.allow_not_covered and not report.failed):
        return 0
    return 1


def _run_show(args: argparse.Namespace) -> int:
    _, cases = load_cases(args.vectors)
    for file, case in cases:
        if case["id"] == args.case:
            print(f"{case['id']} is in {file}", file=sys.stderr)
            print(dumps(case), end="")
            return 0
    print(f"show: no case {args.case!r} in the manifest", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """``verify RESULTS [--vectors DIR] [--report out.md] [--json out.json]`` or ``show CASE_ID``."""
    parser = argparse.ArgumentParser(
        prog="python -m infonce_spec.conformance.golden", description=VERIFY_HELP
    )
    sub = parser.add_subparsers(dest="command", required=True)
    verify_parser = sub.add_parser("verify", help=VERIFY_HELP, description=VERIFY_HELP)
    add_verify_arguments(verify_parser)
    verify_parser.set_defaults(func=run_verify)
    show = sub.add_parser("show", help="print one case (inputs, config, expected) to replay a failure")
    show.add_argument("case")
    show.add_argument("--vectors", type=Path, default=None)
    show.set_defaults(func=_run_show)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
