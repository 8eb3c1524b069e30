"""Verdicts exactly as strong as the evidence: the clause table of a correct implementation for each
exact claim of the spec's three named losses (``protocol.infonce``, ``clip_like``, ``nt_xent``).

A clause reads ``pass`` only when a property checked it on a claimed configuration, ``not claimed``
when no claimed configuration can exercise it (the table names what is missing), and ``pass (partly
not claimed)`` only when some claimed configuration did exercise it (:mod:`.conformance.evidence`).
The implementation is our torch loss (``adapters/bundled.py``) restricted to the claim: it refuses
any configuration outside it, so a property that calls it outside the claim fails the run.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from infonce_spec.adapters.bundled import TorchAdapter
from infonce_spec.conformance.evidence import missing_claim
from infonce_spec.conformance.properties.base import Context, Property
from infonce_spec.conformance.protocol import (
    Capabilities,
    LoadedAdapter,
    clip_like,
    every_combination,
    infonce,
    nt_xent,
)
from infonce_spec.conformance.runner import PROFILES, RunReport, run_adapter, run_property
from infonce_spec.vocabulary import DIRECTIONS, HARDNESS_MODES, PARTITION_MODES, SIMILARITIES

#: Every configuration the spec defines.
SHAPES = every_combination(DIRECTIONS, PARTITION_MODES)

#: The claims: InfoNCE with dL/dscale (cos); CLIP as a user's adapter claims it (dot, no hardness, inputs not
#: validated); NT-Xent over both similarities with validated inputs.
CLAIMS: dict[str, dict[str, Any]] = {
    "infonce": {"configurations": infonce(), "grad_scale": True},
    "clip_like": {"configurations": clip_like(), "similarities": frozenset({"dot"})},
    "nt_xent": {
        "configurations": nt_xent(),
        "similarities": frozenset({"cos", "dot"}),
        "validates_inputs": True,
    },
}


class Claimed(TorchAdapter):
    """Our torch loss, claiming exactly ``claim`` and refusing every configuration outside it."""

    def __init__(self, name: str, claim: dict[str, Any]) -> None:
        super().__init__(name)
        self.capabilities = Capabilities(name=name, **claim)

    def embeddings(self, case: Any) -> Any:
        config = case.config
        valid = (
            set(config.directions) <= set(DIRECTIONS)
            and config.partition_mode in PARTITION_MODES
            and (tuple(d for d in DIRECTIONS if d in config.directions), config.partition_mode) in SHAPES
            and config.similarity in SIMILARITIES
            and config.hardness_mode in (None, *HARDNESS_MODES)
        )
        reason = self.capabilities.claims_config(config)
        if valid and reason is not None:  # invalid input is the validation chapter's, and refused below
            raise AssertionError(f"called outside the claim: {reason}")
        return super().embeddings(case)


@cache
def report(name: str) -> RunReport:
    return run_adapter(LoadedAdapter(name, Claimed(name, CLAIMS[name])), profile="quick", reproducer_dir=None)


def clause_table(name: str) -> dict[str, str]:
    return {c: v for c, _, v, _ in report(name).clause_verdicts()}


def _expand(groups: dict[str, str]) -> dict[str, str]:
    return {clause: verdict for verdict, clauses in groups.items() for clause in clauses.split()}


PASS, PARTLY, NOT_CLAIMED = "pass", "pass (partly not claimed)", "not claimed"
NOT_CHECKED = "LAYOUT-5"  # no property covers it, whatever the claim
SERVICES = "DP-1 DP-2 DP-3 DP-4 DP-5 CACHE-1 CACHE-2 CACHE-3 CACHE-4 CACHE-5"  # none claimed here
HARDNESS = "HARD-2 HARD-3 HARD-4 HARD-5"  # HARD-6 is partly exercised without a hardness mode
VALIDATION = "LAYOUT-4 SIM-3 DIR-1 HARD-1 PART-1 PART-4 PART-6 VAL-1"
EXPECTED = {
    "infonce": _expand(
        {
            PASS: "LAYOUT-3 SIM-1 DIR-2 QD-1 QD-2 LOSS-2 GRAD-3 SCALE-2 NUM-1",
            PARTLY: "LAYOUT-1 LAYOUT-2 SCALE-1 ROW-1 HARD-6 PART-2 LOSS-1 GRAD-1",
            NOT_CLAIMED: f"SIM-2 QQ-1 MASK-QQ-1 DQ-1 DD-1 MASK-DD-1 MASK-DD-2 PART-3 PART-5 GRAD-2 "
            f"{HARDNESS} {VALIDATION} {SERVICES}",
            "not checked": NOT_CHECKED,
        }
    ),
    "clip_like": _expand(
        {
            PASS: "LAYOUT-3 DIR-2 DQ-1 PART-3 LOSS-2 NUM-1",
            PARTLY: "LAYOUT-1 LAYOUT-2 SIM-2 SCALE-1 QD-1 QD-2 ROW-1 HARD-6 LOSS-1 GRAD-1",
            NOT_CLAIMED: f"SIM-1 QQ-1 MASK-QQ-1 DD-1 MASK-DD-1 MASK-DD-2 PART-2 PART-5 GRAD-2 GRAD-3 SCALE-2 "
            f"{HARDNESS} {VALIDATION} {SERVICES}",
            "not checked": NOT_CHECKED,
        }
    ),
    "nt_xent": _expand(
        {
            PASS: "LAYOUT-1 LAYOUT-2 LAYOUT-3 LAYOUT-4 SIM-3 DIR-1 DIR-2 HARD-1 PART-1 PART-5 PART-6 LOSS-2 "
            "GRAD-3 NUM-1 VAL-1",
            PARTLY: "SIM-1 SIM-2 SCALE-1 QD-1 QD-2 QQ-1 MASK-QQ-1 DQ-1 DD-1 MASK-DD-1 MASK-DD-2 ROW-1 HARD-6 "
            "PART-4 LOSS-1 GRAD-1 GRAD-2",
            NOT_CLAIMED: f"PART-2 PART-3 SCALE-2 {HARDNESS} {SERVICES}",
            "not checked": NOT_CHECKED,
        }
    ),
}


@pytest.mark.parametrize("name", list(CLAIMS))
def test_the_clause_table_of_a_claim_is_pinned(name: str) -> None:
    rep = report(name)
    assert rep.ok, [(r.label, r.failure) for r in rep.results if r.failure]
    assert clause_table(name) == EXPECTED[name]


@pytest.mark.parametrize("name", list(CLAIMS))
def test_no_pass_where_no_claimed_configuration_can_exercise_the_clause(name: str) -> None:
    rep = report(name)
    for clause, _, verdict, names in rep.clause_verdicts():
        need = missing_claim(clause, rep.capabilities)
        if need is not None:
            assert verdict == "not claimed" and names[0] == f"needs {need}", (clause, verdict, names)
        if verdict.startswith("pass"):
            checked = [r for r in rep.results if r.status == "pass" and clause in r.clauses]
            assert checked, (clause, verdict)


def test_a_clip_claim_without_hardness_or_validation() -> None:
    """CLIP, dot, no hardness, inputs not validated: PART-2 (no joint configuration) and PART-4 (no
    validation) are not claimed; HARD-6 passes only partly (hardness_mode=None with a strength is
    checked, a mode with strength 0 is not claimed); QD-1 is exercised by the claimed
    query_to_doc + doc_to_query configuration, as the golden vectors of that claim say."""
    table = clause_table("clip_like")
    assert (table["PART-2"], table["PART-4"]) == ("not claimed", "not claimed")
    assert table["HARD-6"] == "pass (partly not claimed)"
    rows = {c: names for c, _, _, names in report("clip_like").clause_verdicts()}
    assert rows["HARD-6"][0].startswith("partly needs a hardness mode")
    assert rows["PART-2"][0] == "needs a joint configuration"
    assert table["QD-1"].startswith("pass") and table["PART-3"] == "pass"
    rep = report("clip_like")
    assert rep.world_sizes == () and rep.mode == "single process"


@pytest.mark.parametrize("name", list(CLAIMS))
def test_run_and_verify_agree_on_what_passes(name: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The golden vectors run through the same claimed adapter (``golden run``): every clause the
    vectors judge passes in ``verify`` exactly when it passes (wholly or partly) in ``run``."""
    from infonce_spec.conformance.golden.run import write_results
    from infonce_spec.conformance.golden.verify import verify

    loaded = LoadedAdapter(f"{__name__}:{name}", Claimed(name, CLAIMS[name]))
    claim, _ = write_results(loaded, tmp_path / "results.json")
    judged = verify(tmp_path / "results.json", claim=claim).clauses
    assert sum(row["verdict"] == "pass" for row in judged.values()) >= 10, judged
    run = clause_table(name)
    disagree = {
        clause: (row["verdict"], run[clause])
        for clause, row in judged.items()
        if row["verdict"] != "not covered"
        and row["verdict"].startswith("pass") != run[clause].startswith("pass")
    }
    assert disagree == {}


class OnlyHardness(Property):
    """Checks nothing but HARD-2, and claims to need nothing (no ``name``: never registered)."""

    clauses = ("HARD-2",)
    summary = "a test double"

    def draw(self, data: Any, ctx: Any) -> dict[str, Any]:
        raise AssertionError("a property with no clause it can exercise is not run")


def test_a_property_left_with_no_clause_it_can_exercise_is_not_claimed() -> None:
    loaded = LoadedAdapter("clip", Claimed("clip_like", CLAIMS["clip_like"]))
    result = run_property(OnlyHardness(), Context(loaded), PROFILES["quick"])
    assert (result.status, result.reason, result.examples) == ("not claimed", "needs a hardness mode", 0)
