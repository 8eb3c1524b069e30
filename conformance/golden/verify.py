"""Golden vectors: the verifier of a results file from an implementation in any language."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from infonce_spec import SPEC_SHA256, SPEC_VERSION
from infonce_spec.release import release_line

from .claims import Claim, case_applies, exercisable_clauses, load_claim
from .format import ALL_CLAUSES, ASPECT_CLAUSES, FLOOR, NOT_COVERED, TOLERANCES, decode, relative_error
from .load import default_vectors_dir, load_cases

# verifier
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
    #: The claims file's claim (``None``: every case applies, optional parts inferred from the results).
    claim: Claim | None = None
    #: Clauses the claim can exercise that no case it covers checks (a gap of the vectors).
    gaps: list[str] = field(default_factory=list)
    #: Case ids in the results that the claim does not cover: not judged.
    outside: list[str] = field(default_factory=list)

    @property
    def applicable(self) -> int:
        """How many cases of the vectors the claim covers (all of them without a claims file)."""
        return len({c.case for c in self.checks if c.file != "?"})

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.verdict == "FAIL"]

    @property
    def missing(self) -> list[Check]:
        """Required checks that the results do not answer."""
        return [c for c in self.checks if c.required and c.verdict == "not covered"]

    @property
    def ok(self) -> bool:
        """True iff no check fails, every required check ran (and so passed) and the vectors cover
        every clause the claim can exercise."""
        return not self.failed and not self.missing and not self.gaps

    @property
    def verdict(self) -> str:
        """``PASS`` (every required check ran and passed), ``FAIL`` (a check fails) or ``INCOMPLETE``
        (nothing fails, but the results leave required checks unanswered)."""
        if self.failed:
            return "FAIL"
        return "INCOMPLETE" if self.missing or self.gaps else "PASS"

    def summary(self) -> str:
        counts = {v: sum(c.verdict == v for c in self.checks) for v in ("pass", "FAIL", "not covered")}
        bad = [c for c, row in self.clauses.items() if row["verdict"] == "FAIL"]
        text = (
            f"{self.verdict}: {counts['pass']} checks pass, {counts['FAIL']} FAIL, "
            f"{counts['not covered']} not covered"
        )
        text += f" ({len(self.missing)} of them required)" if self.missing else ""
        text += f"; {self.applicable} cases apply to the claim" if self.claim is not None else ""
        text += f"; no case covers {', '.join(self.gaps)}" if self.gaps else ""
        return text + (f"; clauses FAIL: {', '.join(bad)}" if bad else "")

    def header(self) -> str:
        """What was checked against what: the implementation, the release and the claim."""
        claim = f"; claim: {self.claim.text()}" if self.claim is not None else ""
        return f"{self.implementation} against the golden vectors of {release_line()}{claim}"

    def to_json(self) -> dict[str, Any]:
        return {
            "implementation": self.implementation,
            "spec_version": SPEC_VERSION,
            "spec_sha256": SPEC_SHA256,
            "claim": self.claim.to_json() if self.claim is not None else None,
            "applicable_cases": self.applicable,
            "gaps": self.gaps,
            "outside_the_claim": self.outside,
            "results": self.results_path,
            "vectors": self.vectors,
            "dtype": self.dtype,
            "tolerances": self.tolerances,
            "claims": self.claims,
            "ok": self.ok,
            "verdict": self.verdict,
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
            f"- vectors: `{self.vectors}` ({release_line()})",
            f"- claim: {self.claim.text()}; {self.applicable} cases apply"
            if self.claim is not None
            else "- claim: none given (every case applies)",
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
        if self.gaps:
            lines += [
                "",
                f"Clauses the claim can exercise that no case it covers checks: {', '.join(self.gaps)}",
            ]
        if self.outside:
            lines += ["", f"Results outside the claim, not judged: {len(self.outside)} cases"]
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
        elif isinstance(got, dict) and "fault" in got:
            check.verdict = "FAIL"
            check.details.append(f"the adapter did not answer: {got['fault']}")
        elif got is not None and required:
            check.verdict = "FAIL"
            check.details.append(
                f"returned values, but the spec requires a {want['type']} naming [{want['clause']}]"
            )
        elif got is not None:
            why = f"a {want['level']}" if condition is None else f"for {condition} implementations only"
            check.details.append(f"returned values: rejecting this input is {why} (not claimed)")
        return [check]
    aspects = {"values": tuple(c for c in clauses if not any(c in s for s in ASPECT_CLAUSES.values()))}
    aspects["grad_scale"] = ("SCALE-2",)
    if "data_parallel" in case:
        aspects["ranks"] = tuple(c for c in clauses if c in ASPECT_CLAUSES["ranks"])
    required = {"values": True, "grad_scale": claims["grad_scale"], "ranks": claims["data_parallel"]}
    checks = {a: Check(cid, file, a, cs, required=required[a]) for a, cs in aspects.items()}
    if got is None:
        return list(checks.values())
    if not isinstance(got, dict) or "error" in got or "fault" in got:
        why = "not an object"
        if isinstance(got, dict):
            why = f"the adapter did not answer: {got['fault']}" if "fault" in got else ""
            why = why or f"raised [{_error_clause(got)}] on a valid input"
        for check in checks.values():
            check.verdict = "FAIL"
            check.details.append(why)
        return list(checks.values())
    expected = case["expected"]
    for name, kind in _VALUE_FIELDS:
        if name == "per_query_loss" and not claims["per_query_loss"]:
            continue  # LOSS-2: required only from implementations that expose per-query losses
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


def verify(
    results_path: Path | str, vectors_dir: Path | str | None = None, claim: Claim | Path | str | None = None
) -> Report:
    """Check ``results_path`` (results JSON, see ``spec/vectors/SCHEMA.md``) against the vectors.

    ``claim`` (a :class:`Claim` or a claims file) restricts the verdict to the cases the claim
    covers and says which optional parts are required; without it every case applies and the
    optional parts answered anywhere in the results are required everywhere. Raises ``ValueError``
    for an unreadable results or claims file, an unknown ``dtype`` or a spec version other than the
    vectors'.
    """
    manifest, cases = load_cases(vectors_dir)
    if claim is not None and not isinstance(claim, Claim):
        claim = load_claim(claim)
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
    known = {case["id"] for _, case in cases}
    if claim is None:
        entries = [e for e in got.values() if isinstance(e, dict)]
        claims = {
            "grad_scale": any("grad_scale" in e for e in entries),
            "data_parallel": any("ranks" in e for e in entries),
            "per_query_loss": any("per_query_loss" in e for e in entries),
        }
        outside: list[str] = []
    else:
        caps = claim.capabilities
        claims = {
            "grad_scale": caps.grad_scale,
            "data_parallel": caps.data_parallel,
            "per_query_loss": claim.per_query_loss,
        }
        cases = [(file, case) for file, case in cases if case_applies(claim, case)]
        outside = sorted(cid for cid in got if cid in known and cid not in {c["id"] for _, c in cases})
    checks = [
        c
        for file, case in cases
        for c in _case_checks(file, case, got.get(case["id"]), TOLERANCES[dtype], claims)
    ]
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
    gaps: list[str] = []
    if claim is not None:
        covered = {c for check in checks for c in check.clauses}
        gaps = [c for c in exercisable_clauses(claim) if c not in covered]
    return Report(
        implementation=str(results.get("implementation", "unnamed implementation")),
        results_path=str(results_path),
        vectors=str(vectors_dir if vectors_dir is not None else default_vectors_dir()),
        dtype=dtype,
        tolerances=TOLERANCES[dtype],
        claims=claims,
        checks=checks,
        clauses=_clause_table(checks),
        claim=claim,
        gaps=gaps,
        outside=outside,
    )
