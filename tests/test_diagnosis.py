"""The diagnosis of a run (conformance/diagnosis.py): roots from the clause graph, consequences
labelled, premise failures and adapter faults as one verdict each; the clause table shows FAIL only
for roots and never "pass" for a clause a failure was filed under."""

from __future__ import annotations

import dataclasses

import pytest

from infonce_spec.adapters.bundled import TorchAdapter
from infonce_spec.clauses import CLAUSES, presupposes
from infonce_spec.conformance.diagnosis import diagnose
from infonce_spec.conformance.protocol import LoadedAdapter
from infonce_spec.conformance.runner import Failure, PropertyResult, RunReport, run_adapter


def _result(
    name: str, clauses: tuple[str, ...], status: str = "pass", blamed: str | None = None, **kw
) -> PropertyResult:
    r = PropertyResult(name, clauses, "", "embeddings", status)
    if status not in ("pass", "not claimed"):
        r.failure = Failure(blamed, kw.pop("message", f"{name} failed"), "", None, None, **kw)
    return r


#: Claims every feature, so that every clause can be exercised (the tests here are about failures).
EVERYTHING = TorchAdapter("t", cached=True, data_parallel=True).capabilities.with_(
    validates_inputs=True, torch_memory=True
)


def _report(*results: PropertyResult) -> RunReport:
    return RunReport("x:y", EVERYTHING, "quick", (), list(results), 0.0)


def _verdicts(rep: RunReport) -> dict[str, str]:
    return {c: v for c, _, v, _ in rep.clause_verdicts()}


def test_the_presupposed_clause_is_the_root_and_the_rest_follow_from_it():
    rep = _report(
        _result("reference/doc_to_doc", ("DD-1", "MASK-DD-2"), "FAIL", "DD-1"),
        _result("masks/doc_to_doc_own_hard_negative", ("MASK-DD-2", "GRAD-2"), "FAIL", "MASK-DD-2"),
        _result("numerics/large_logits", ("NUM-1",), "premise", "DD-1", premise="moderate"),
        _result("reference/query_to_doc", ("QD-1",), "pass"),
    )
    diag = rep.diagnosis
    assert [c.clause for c in diag.roots] == ["MASK-DD-2"]
    assert diag.follows["reference/doc_to_doc"] == ("MASK-DD-2",)
    assert diag.follows["numerics/large_logits"] == ("MASK-DD-2",)
    v = _verdicts(rep)
    assert v["MASK-DD-2"] == "FAIL"
    assert v["DD-1"] == "follows from MASK-DD-2"
    assert v["NUM-1"] == "not established"
    assert v["QD-1"] == "pass"
    assert [c for c, x in v.items() if x == "FAIL"] == ["MASK-DD-2"]
    assert rep.verdict(rep.results[0]) == "follows from MASK-DD-2"


def test_independent_roots_are_all_named():
    rep = _report(
        _result("data_parallel/embeddings", ("DP-1", "DP-2", "DP-3"), "FAIL", "DP-2"),
        _result("cached/equals_uncached", ("CACHE-1",), "FAIL", "CACHE-1"),
        _result("cached/reentrant", ("CACHE-4",), "FAIL", "CACHE-4"),
    )
    assert {c.clause for c in rep.diagnosis.roots} == {"DP-2", "CACHE-1"}
    assert _verdicts(rep)["CACHE-4"] == "follows from CACHE-1"


def test_a_premise_failure_no_root_explains_is_a_root_itself():
    rep = _report(_result("invariance/zero_hardness", ("HARD-6",), "premise", "QQ-1", premise="canonical"))
    (root,) = rep.diagnosis.roots
    assert root.clause == "QQ-1" and "premise" in root.kind
    assert _verdicts(rep)["QQ-1"] == "FAIL"
    assert _verdicts(rep)["HARD-6"] == "not established"


def test_identical_adapter_faults_are_one_root_filed_under_their_contract_clause():
    faults = [
        _result(
            f"p{i}",
            ("QD-1",),
            "fault",
            "SCALE-2",
            message="embeddings() returned grad_scale=None, but the adapter claims grad_scale [SCALE-2]",
            fault_kind="output",
            fault_call="embeddings",
        )
        for i in range(5)
    ]
    rep = _report(*faults, _result("reference/grad_scale", ("SCALE-2",), "FAIL", "SCALE-2"))
    (root,) = rep.diagnosis.roots
    assert root.kind == "adapter fault" and root.clause == "SCALE-2"
    assert len(root.established_by) == 5
    v = _verdicts(rep)
    assert v["SCALE-2"] == "FAIL"
    assert v["QD-1"] == "not established"  # five properties could not check it; nothing passed it


def test_a_clause_a_failure_was_filed_under_never_reads_pass():
    """A wrongly shaped gradient is filed under LAYOUT-2 by a property that does not cover LAYOUT-2,
    while another property covering LAYOUT-2 passes: the row must not say pass."""
    rep = _report(
        _result("invariance/hard_negative_order", ("LAYOUT-2", "LAYOUT-3"), "pass"),
        _result("reference/query_to_doc", ("QD-1",), "fault", "LAYOUT-2", fault_kind="output"),
    )
    assert _verdicts(rep)["LAYOUT-2"] == "FAIL"


@pytest.mark.parametrize("clause", [c.id for c in CLAUSES])
def test_a_single_failure_is_its_own_root(clause):
    rep = _report(_result("p", (clause,), "FAIL", clause))
    assert [c.clause for c in rep.diagnosis.roots] == [clause]
    assert [c for c, v in _verdicts(rep).items() if v == "FAIL"] == [clause]


def test_failures_along_a_chain_of_presuppositions_have_one_root():
    chain = ["DP-4", *sorted(presupposes("DP-4"))]
    rep = _report(*(_result(f"p{i}", (c,), "FAIL", c) for i, c in enumerate(chain)))
    roots = {c.clause for c in rep.diagnosis.roots}
    assert roots and all(not (presupposes(r) & set(chain)) for r in roots)
    assert "DP-4" not in roots and "DP-3" not in roots


def test_diagnose_of_a_clean_run_is_empty():
    diag = diagnose([_result("a", ("QD-1",)), _result("b", ("PART-2",), "not claimed")])
    assert diag.roots == [] and diag.follows == {}


class _DotAsCos(TorchAdapter):
    """A single-process adapter whose dot similarity normalises the embeddings (computes cos): one
    bug, SIM-2 (the pytorch-metric-learning DotProductSimilarity default)."""

    def __init__(self) -> None:
        super().__init__("dot_as_cos")
        self.capabilities = dataclasses.replace(self.capabilities, name="dot_as_cos", data_parallel=False)

    def embeddings(self, case):  # type: ignore[no-untyped-def]
        if case.config.similarity == "dot":
            case = dataclasses.replace(case, config=dataclasses.replace(case.config, similarity="cos"))
        return super().embeddings(case)


def test_a_single_bug_is_one_root_and_every_other_failure_follows_from_it():
    """End to end, on the properties that meet the bug: the clause table's only FAIL is SIM-2."""
    chosen = {
        "reference/query_to_doc",
        "reference/all_options",
        "invariance/dot_scale_identity",
        "numerics/large_logits",
    }
    rep = run_adapter(
        LoadedAdapter("dot_as_cos", _DotAsCos()),
        profile="quick",
        world_sizes=(),
        reproducer_dir=None,
        select=lambda p: p.name in chosen,
    )
    assert not rep.ok
    fails = [c for c, _, v, _ in rep.clause_verdicts() if v == "FAIL"]
    assert fails == ["SIM-2"], rep.clause_verdicts()
    assert all(
        rep.verdict(r) in ("pass", "FAIL")
        or r.label not in chosen
        or rep.verdict(r).startswith("follows from SIM-2")
        for r in rep.results
    )


def test_adapter_faults_of_one_origin_are_one_root_whatever_their_messages_say():
    """One root per (kind, clause, call, exception type, innermost adapter frame): a shape error whose
    text carries each case's shapes is one fault, not one per message; another frame is another."""
    frame = "my_adapter.py:42 in embeddings"
    faults = [
        _result(
            f"p{i}",
            ("QD-1",),
            "fault",
            None,
            message=f"embeddings() raised ValueError: shapes ({i + 2}, 3) and ({i}, 4) differ",
            fault_kind="exception",
            fault_call="embeddings",
            frame=frame,
            features=frozenset({"K >= 2", "doc_to_query", f"N = {i}"}),
        )
        for i in range(4)
    ]
    other = _result(
        "q",
        ("QD-1",),
        "fault",
        None,
        message="embeddings() raised ValueError: shapes (2, 3) and (1, 4) differ",
        fault_kind="exception",
        fault_call="embeddings",
        frame="my_adapter.py:77 in _gather",
        features=frozenset({"K >= 2", "doc_to_query"}),
    )
    rep = _report(*faults, other)
    assert [len(c.established_by) for c in rep.diagnosis.roots] == [4, 1]


def test_a_fault_root_names_what_its_failing_cases_share_and_the_passing_ones_lack():
    fault = _result(
        "p",
        ("QD-1",),
        "fault",
        None,
        message="embeddings() raised RuntimeError: boom",
        fault_kind="exception",
        fault_call="embeddings",
        frame="a.py:1 in embeddings",
        features=frozenset({"K >= 2", "doc_to_query", "similarity dot"}),
    )
    passing = _result("r", ("QD-1",))
    passing.passed = [
        frozenset({"K = 1", "doc_to_query", "similarity dot"}),
        frozenset({"K >= 2", "no doc_to_query", "similarity dot"}),
    ]
    (root,) = _report(fault, passing).diagnosis.roots
    assert root.trigger == (
        "every case with K >= 2 and doc_to_query failed (1); none of the 2 cases that passed had them"
    )
    assert f"trigger: {root.trigger}" in root.line()


def test_trigger_says_when_the_passing_cases_share_every_common_feature():
    from infonce_spec.conformance.triggers import trigger

    failing = [frozenset({"K >= 2", "similarity cos"})]
    passing = [frozenset({"K >= 2", "similarity cos", "N = 1"}), frozenset({"K = 1", "similarity cos"})]
    assert trigger(failing, passing).endswith("1 of the 2 cases that passed had these too")
    assert trigger(failing, passing[:1]) == ""  # nothing the failing cases share sets them apart
    assert trigger([frozenset()], passing) == ""


def test_a_strong_failure_presupposing_a_premise_root_follows_from_it():
    """GRAD-3 (the cos backward) presupposes SIM-1: when SIM-1 is shown only by a premise check,
    the GRAD-3 failure still follows from it -- one bug, one root."""
    rep = _report(
        _result("numerics/cos_eps", ("GRAD-3",), "FAIL", "GRAD-3"),
        _result("reference/per_anchor", ("PART-5",), "premise", "SIM-1"),
    )
    assert [c.clause for c in rep.diagnosis.roots] == ["SIM-1"]
    assert _verdicts(rep)["GRAD-3"] == "follows from SIM-1"
