"""Meta-test of the conformance suite on the mutant catalogue: every bug caught, and diagnosed with its
clause as the only root cause; every correct implementation passes without noise.

What runs here, within the test budget (about 40-60 s of the project's 150 s on 2 cores):

* the catalogue is well formed (every tag a clause of the spec, every new mutant with its provenance);
* one full run of the suite (``quick`` profile, W = 2) against the correct variant "the global L on
  every rank" passes with no failure and no "follows from". Single process it *is* the mutants'
  correct trunk (``loss_rows`` is its only override, and it is the identity without a process
  group), so this one run covers the trunk's single-process chapters and the variant's
  data-parallel ones (DP-2 allows the global L);
* :data:`SUBSET` -- one mutant per systematic cause of misdiagnosis -- is caught and diagnosed with exactly
  its tagged root cause (the clause table's FAIL set is the tag alone, everything else "follows
  from" it), with the ``quick`` profile and the single-process chapters whose code the mutant
  changes (:func:`chapters`; none of them is a data-parallel bug, and a chapter whose code is the
  trunk's passes as the trunk does);
* the bundled torch adapters (correct) show no root cause and no "follows from" in the command line
  run of them (``test_the_bundled_adapters_pass_without_noise`` in tests/test_conformance_cli.py);
* the recorded kill matrix in docs/mutants.md covers the whole catalogue and every correct
  implementation.

The full check -- every mutant, the ci profile, every chapter with the data-parallel one at W = 2,
and the correct implementations -- is the kill matrix, ``python -m infonce_spec.conformance.mutants
--markdown docs/mutants.md``, whose tables docs/mutants.md records (tens of minutes on 2 cores).
Nothing is printed here: a failure message carries the FAIL set and the report's root-cause lines.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis.configuration import set_hypothesis_home_dir, storage_directory

pytest.importorskip("torch")

from infonce_spec.clauses import CLAUSE_IDS
from infonce_spec.conformance.mutants.adapter import TorchAdapter
from infonce_spec.conformance.mutants.cached import GradCache
from infonce_spec.conformance.mutants.catalogue import CATALOGUE, CORRECT, FAULT, VARIANTS, Mutant
from infonce_spec.conformance.mutants.killmatrix import Row, row_of, run

DOCS = Path(__file__).resolve().parents[1] / "docs" / "mutants.md"

#: One mutant per systematic cause of misdiagnosis: a softmax bug every chapter sees (the masks chapter
#: used to file it as a leaking mask), a crash on a valid input (one adapter-fault verdict, not a
#: clause per property), a None scale gradient (a fault filed under SCALE-2 alone), and an ignored
#: upstream gradient in the cached backward (CACHE-2 alone, not CACHE-4 too).
SUBSET: tuple[str, ...] = (
    "partition_without_positive",
    "hard_negatives_by_cat",
    "scale_grad_none",
    "cache_ignores_upstream",
)

#: Subset mutants the suite still diagnoses wrongly, with the defect in words. Such a test is
#: an expected failure that must stay caught; once the diagnosis is right the test fails until the
#: entry goes (like a strict xfail).
MISDIAGNOSED: dict[str, str] = {}

#: The mutants of the systematic causes must say where the bug comes from.
WITH_PROVENANCE = ("partition_without_positive", "hard_negatives_by_cat", "scale_grad_none")


@pytest.fixture(autouse=True, scope="module")
def hypothesis_storage_outside_the_checkout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The runs here call the runner in this process: hypothesis' storage (its constants cache) goes
    to a temporary folder, not ``.hypothesis/`` in the checkout, and back afterwards."""
    previous = storage_directory(intent_to_write=False).home_directory
    set_hypothesis_home_dir(tmp_path_factory.mktemp("hypothesis"))
    yield
    set_hypothesis_home_dir(previous)


def explain(row: Row) -> str:
    """The diagnosis of a run, for a failure message."""
    lines = [
        f"{row.id}: expected roots {row.expected}, found {row.roots}; FAIL set {row.fail_set}",
        *(f"  root: {line}" for line in row.root_lines),
        *(f"  {c}: {v}" for c, v in row.follows.items()),
        *(f"  {p}" for p in row.failed_properties),
    ]
    return "\n".join(lines)


def test_catalogue_is_well_formed() -> None:
    assert len(CATALOGUE) >= 25
    for m in CATALOGUE.values():
        assert m.clause in CLAUSE_IDS, f"{m.id}: unknown clause {m.clause}"
        assert m.description, m.id
        assert m.expected_roots == ({FAULT} if m.fault else {m.clause}), m.id
    for mid in (*WITH_PROVENANCE, *SUBSET, *MISDIAGNOSED):
        assert mid in CATALOGUE, f"{mid} is not in the catalogue"
    for mid in WITH_PROVENANCE:
        assert CATALOGUE[mid].reference, f"{mid} has no provenance line"
    for v in VARIANTS.values():
        assert v.clause in CLAUSE_IDS and v.reference, v.id
        assert v.spec in CORRECT


def test_correct_variant_passes_without_noise() -> None:
    spec = VARIANTS["dp_global_loss_every_rank"].spec
    report, seconds = run(spec, profile="quick", world_sizes=(2,))
    row = row_of(report, id="dp_global_loss_every_rank", seconds=seconds)
    assert row.ok and not row.follows and not row.roots, explain(row)
    levels = {r.level for r in report.results if r.status == "pass"}
    assert levels == {"embeddings", "encoder", "data_parallel"}, f"chapters that passed: {sorted(levels)}"


def chapters(m: Mutant) -> set[str]:
    """The single-process levels whose code the mutant changes: a loss hook (:class:`InfoNCE`) is used
    by the embeddings and the encoder chapters, a cache hook (:class:`GradCache`) by the encoder
    chapter only, an override of ``TorchAdapter.embeddings`` by the embeddings chapter only."""
    cls = type(m.adapter)
    if cls.embeddings is not TorchAdapter.embeddings:
        return {"embeddings"}
    if cls.cache_class is not GradCache:
        return {"encoder"}
    return {"embeddings", "encoder"}


@pytest.mark.parametrize("mid", SUBSET)
def test_mutant_is_diagnosed_with_its_tag_only(mid: str) -> None:
    m = CATALOGUE[mid]
    levels = chapters(m)
    report, seconds = run(m.spec, profile="quick", world_sizes=(), select=lambda p: p.level in levels)
    row = row_of(report, id=mid, tag=m.clause, level=m.level, expected=m.expected_roots, seconds=seconds)
    assert row.caught, f"{mid} ({m.clause}) SURVIVED the suite: {m.description}"
    if mid in MISDIAGNOSED:
        if row.root_right:
            pytest.fail(f"{mid} is now diagnosed right: remove it from MISDIAGNOSED")
        pytest.xfail(f"{MISDIAGNOSED[mid]}\n{explain(row)}")
    assert row.root_right, explain(row)


def test_recorded_kill_matrix_covers_the_catalogue() -> None:
    """docs/mutants.md records the full kill matrix (generated, never hand-edited): one row per mutant
    and per correct implementation."""
    text = DOCS.read_text()
    begin, end = text.find("<!-- killmatrix:begin"), text.find("<!-- killmatrix:end -->")
    assert 0 <= begin < end, "docs/mutants.md has no generated kill matrix"
    block = text[begin:end]
    recorded = set(re.findall(r"^\| `([a-z0-9_]+)` \|", block, flags=re.M))
    missing = sorted(set(CATALOGUE) - recorded)
    assert not missing, f"regenerate the kill matrix: no recorded run of {missing}"
    for spec in CORRECT:
        assert f"`{spec}`" in block, f"regenerate the kill matrix: no recorded run of {spec}"


#: Under exact claims (conformance/mutants/claims.py): the three real bugs that used to give 2-11 roots
#: (a CLIP loss with its scale detached in one direction, optax's cos floor on the squared norm, a
#: shape crash whose messages carry the shapes), and the bugs the claims' premise ladder could not step
#: down from (a hard-negative row bug and the sum of the two anchor groups). Each must be one root,
#: its own, and a violation must be explained by its own known mistake.
CLAIMED_SUBSET: tuple[tuple[str, str], ...] = (
    ("scale_detached_dq", "clip_like"),
    ("cos_eps_squared_norm", "nt_xent"),
    ("shape_crash_varying", "clip_like"),
    ("dq_transposed_qd_block", "clip_like"),
    ("per_anchor_sum_groups", "nt_xent"),
)


@pytest.mark.parametrize(("mid", "claim"), CLAIMED_SUBSET)
def test_mutant_under_an_exact_claim_is_one_root_its_own_and_explained(mid: str, claim: str) -> None:
    from infonce_spec.conformance.mutants.claims import applies, claimed_spec

    m = CATALOGUE[mid]
    assert applies(mid, claim), f"{mid} cannot show under {claim}"
    report, seconds = run(
        claimed_spec(mid, claim), profile="quick", world_sizes=(), select=lambda p: p.level == "embeddings"
    )
    row = row_of(report, id=mid, tag=m.clause, level=m.level, expected=m.expected_roots, seconds=seconds)
    assert row.caught and row.root_right, explain(row)
    if m.fault:
        (cause,) = report.diagnosis.roots
        # every case of the claim has doc_to_query: the trigger is K >= 2 alone
        assert cause.trigger.startswith("every case with K >= 2 failed"), cause.line()
    else:
        assert row.explanation_right is True, f"explained by {row.explained_by}\n{explain(row)}"


def test_correct_trunk_under_an_exact_claim_is_silent() -> None:
    from infonce_spec.conformance.mutants.claims import correct_specs

    (name, spec), *_ = correct_specs("clip_like")
    report, seconds = run(spec, profile="quick", world_sizes=(), select=lambda p: p.level == "embeddings")
    row = row_of(report, id=name, seconds=seconds)
    assert row.ok and not row.follows and not row.roots, explain(row)
