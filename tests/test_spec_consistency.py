"""The spec, the code and the tests agree on clause IDs, versions and the worked example."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import infonce_spec
from infonce_spec.reference import Config, loss_and_grad

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "spec" / "infonce-spec.md"
CLAUSE = re.compile(r"\b((?:[A-Z]{2,}-)+\d+)\b")
ANCHOR = re.compile(r'<a id="((?:[A-Z]{2,}-)+\d+)"></a>')
ANCHOR_LINK = re.compile(r"\]\(#((?:[A-Z]{2,}-)+\d+)\)")
NOT_CLAUSES = {"UTF-8", "RFC-2119", "SHA-256"}


def _spec_text() -> str:
    if not SPEC.is_file():
        pytest.fail(f"{SPEC.relative_to(ROOT)} is missing")
    return SPEC.read_text()


def spec_clauses() -> set[str]:
    return set(ANCHOR.findall(_spec_text()))


def _cited(folders: list[str], suffixes: tuple[str, ...] = (".py",)) -> dict[str, set[Path]]:
    cited: dict[str, set[Path]] = {}
    for folder in folders:
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in suffixes and "__pycache__" not in path.parts and path.is_file():
                for clause in CLAUSE.findall(path.read_text(errors="replace")):
                    cited.setdefault(clause, set()).add(path.relative_to(ROOT))
    return {c: p for c, p in cited.items() if c not in NOT_CLAUSES}


def test_every_clause_has_an_anchor_and_an_index_entry():
    text = _spec_text()
    anchors = ANCHOR.findall(text)
    duplicates = sorted({a for a in anchors if anchors.count(a) > 1})
    assert not duplicates, f"clause anchors defined twice: {duplicates}"
    index = text[text.lower().rfind("clause index") :]
    missing = sorted(a for a in set(anchors) if a not in index)
    assert not missing, f"clauses missing from the clause index at the end of the spec: {missing}"


def test_code_cites_only_clauses_the_spec_defines():
    defined = spec_clauses()
    cited = _cited(["reference", "adapters", "conformance", "src", "tests", "benchmarks"])
    unknown = {c: sorted(map(str, p))[:3] for c, p in cited.items() if c not in defined}
    assert not unknown, f"clause IDs cited in code but not defined in the spec: {unknown}"


#: Keyword arguments whose value is what a check expects or says when it fails.
CHECK_KEYWORDS = frozenset({"match", "clause", "err_msg", "msg"})
#: Callees whose positional string arguments name what they check (``reference_check(case, ctx,
#: "GRAD-1")``, ``assert_within(..., "DP-3", ...)``).
CHECK_CALLS = ("assert", "check", "close", "within", "raises", "expect")


def _strings(node: ast.AST) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _callee(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr.lower()
    return func.id.lower() if isinstance(func, ast.Name) else ""


def clauses_a_test_checks(source: str) -> set[str]:
    """The clauses a test module checks: those named in an ``assert``'s message, a
    ``pytest.raises(match=...)``, a ``clause=`` / ``err_msg=`` / ``msg=`` argument, a string argument
    of an assertion or check helper, or a ``parametrize`` table (also one bound at module level).
    Comments, docstrings and other strings (a lookup such as ``verdicts["LAYOUT-5"]``, a sentence
    saying that a clause is *not* checked) do not count."""
    tree = ast.parse(source)
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert) and node.msg is not None:
            found += _strings(node.msg)
        elif isinstance(node, ast.Call):
            name = _callee(node.func)
            found += [s for kw in node.keywords if kw.arg in CHECK_KEYWORDS for s in _strings(kw.value)]
            if any(word in name for word in CHECK_CALLS):
                found += [
                    a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)
                ]
            if name == "parametrize":
                found += [s for a in node.args[1:] for s in _strings(a)]
    for stmt in tree.body:  # module-level tables that parametrize tests
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and isinstance(stmt.value, (ast.List, ast.Tuple)):
            found += _strings(stmt.value)
    return {c for s in found for c in CLAUSE.findall(s)} - NOT_CLAUSES


def clauses_the_tests_check() -> dict[str, set[str]]:
    """Clause -> the test modules that check it (this module, which holds the clause table's own
    tests, excluded)."""
    checked: dict[str, set[str]] = {}
    for path in sorted((ROOT / "tests").rglob("*.py")):
        if path.resolve() != Path(__file__).resolve():
            for clause in clauses_a_test_checks(path.read_text()):
                checked.setdefault(clause, set()).add(path.name)
    return checked


def unchecked_clauses(props: list[Any]) -> list[str]:
    """Clauses of the spec that neither one of ``props`` (their ``clauses``) nor a test checks."""
    covered = {c for p in props for c in p.clauses} | set(clauses_the_tests_check())
    return sorted(spec_clauses() - covered)


def test_every_normative_clause_is_checked_by_a_test():
    """Coverage is what the suite's registered properties and the tests' checks name -- never the
    clause table (infonce_spec.clauses), which lists every clause by construction."""
    from infonce_spec.conformance.properties.base import properties

    unchecked = unchecked_clauses(properties())
    assert not unchecked, f"spec clauses no conformance property or test checks: {unchecked}"


def test_the_coverage_guard_fails_without_the_property_that_checks_a_clause():
    """Removing a property whose clauses no other property or test checks makes the guard fail,
    naming them (so the guard above can fail)."""
    from infonce_spec.conformance.properties.base import properties

    props, by_tests = properties(), set(clauses_the_tests_check())
    sole = {}
    for prop in props:
        others = {c for q in props if q is not prop for c in q.clauses}
        only = set(prop.clauses) - others - by_tests
        if only:
            sole[prop.name] = only
    assert sole, "every clause is checked twice over: remove a test citation to exercise this guard"
    for name, only in sole.items():
        assert set(unchecked_clauses([p for p in props if p.name != name])) == only, name
    assert "MASK-QQ-1" not in clauses_a_test_checks('assert verdicts["MASK-QQ-1"] == "pass"\n')
    assert clauses_a_test_checks('with pytest.raises(ValueError, match=r"\\[DIR-1\\]"):\n    f()\n') == {
        "DIR-1"
    }


def test_versions_agree():
    text = _spec_text()
    assert infonce_spec.SPEC_VERSION in text.split("\n\n", 3)[0] + text[:2000], "spec header version"
    cff = (ROOT / "CITATION.cff").read_text()
    assert re.search(rf"^version:\s*\"?{re.escape(infonce_spec.SPEC_VERSION)}\"?\s*$", cff, re.M), (
        "CITATION.cff version"
    )
    assert infonce_spec.SPEC_VERSION in (ROOT / "spec" / "CHANGELOG.md").read_text()


def test_worked_example_numbers_match_the_reference():
    example = json.loads((ROOT / "spec" / "worked_example.json").read_text())
    cases = example["cases"] if "cases" in example else [example]
    assert cases, "the worked example lists no case"
    for case in cases:
        q = np.asarray(case["inputs"]["queries"] if "inputs" in case else case["queries"], dtype=np.float64)
        d = np.asarray(case["inputs"]["docs"] if "inputs" in case else case["docs"], dtype=np.float64)
        config = Config(**{k: tuple(v) if k == "directions" else v for k, v in case["config"].items()})
        result = loss_and_grad(q, d, config)
        expected = case.get("expected", case)
        np.testing.assert_allclose(
            result.loss, expected["loss"], rtol=1e-12, err_msg=f"LOSS-1 {case.get('name')}"
        )
        for field in ("per_query_loss", "grad_queries", "grad_docs", "grad_scale"):
            if field in expected:
                np.testing.assert_allclose(
                    np.asarray(getattr(result, field)),
                    np.asarray(expected[field]),
                    rtol=1e-12,
                    atol=1e-15,
                    err_msg=f"GRAD-1 worked example {case.get('name')}: {field}",
                )


def _index_rows() -> dict[str, tuple[str, tuple[str, ...]]]:
    """The spec's clause index (Appendix A): ID -> (summary, the clauses it presupposes)."""
    text = _spec_text()
    rows: dict[str, tuple[str, ...]] = {}
    for line in text[text.index('<a id="clause-index">') :].splitlines():
        m = re.match(r"\| \[((?:[A-Z]{2,}-)+\d+)\]", line)
        if m:
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            rows[m.group(1)] = (cells[1], tuple(ANCHOR_LINK.findall(cells[-1])))
    return rows


def test_clause_table_is_the_spec_index():
    """infonce_spec.clauses (the code's clause table) is Appendix A: same IDs, same order, same
    presuppositions, and the titles are the bold-face titles of the clauses' definitions."""
    from infonce_spec.clauses import CLAUSES

    rows = _index_rows()
    summaries = {c.id: (rows[c.id][0], c.summary) for c in CLAUSES if rows[c.id][0] != c.summary}
    assert not summaries, f"summaries differ (spec, code): {summaries}"
    assert list(rows) == [c.id for c in CLAUSES], "clause order differs between the spec index and the code"
    wrong = {c.id: (rows[c.id], c.presupposes) for c in CLAUSES if rows[c.id][1] != c.presupposes}
    assert not wrong, f"presupposes differ (spec, code): {wrong}"
    text = _spec_text()
    for c in CLAUSES:
        titles = (f"({c.title})", f"(`{c.title}`)")
        assert any(f'<a id="{c.id}"></a>**{c.id}** {t}' in text for t in titles), (
            f"{c.id}: title {c.title!r} is not the one its definition in the spec gives"
        )


def test_presupposition_graph_is_acyclic():
    from infonce_spec.clauses import CLAUSES, presupposes

    cyclic = [c.id for c in CLAUSES if c.id in presupposes(c.id)]
    assert not cyclic, f"clauses that presuppose themselves (a cycle): {cyclic}"


def test_clause_ids_sort_in_the_order_the_spec_defines_them():
    """``spec_order`` (the diagnosis' and the premises' sort key) follows the definitions' order in
    the text, with "no clause" first."""
    from infonce_spec.clauses import CLAUSE_IDS, spec_order

    text = (Path(infonce_spec.__file__).resolve().parents[2] / "spec" / "infonce-spec.md").read_text()
    defined = sorted(CLAUSE_IDS, key=lambda c: text.index(f'<a id="{c}"></a>**{c}**'))
    assert sorted(CLAUSE_IDS, key=spec_order) == defined
    assert sorted(["DP-3", None, "SIM-1"], key=spec_order) == [None, "SIM-1", "DP-3"]
