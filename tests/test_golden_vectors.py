"""The golden vectors (spec/vectors/): regenerated without drift, complete, and verifiable.

* the committed files equal what ``spec/vectors/generate.py`` writes (1e-12 per array), so CI fails on drift;
* the manifest lists every case and the catalogue covers the required corners and error clauses;
* the verifier passes the reference itself and rejects tampered results, naming the clause;
* claims: every claim the spec allows has every clause it can exercise covered by cases it covers,
  the helpers' claims get >= 20 cases, results outside a claim are not judged, a gap is INCOMPLETE;
* end to end: the JavaScript implementation in tests/js passes, also restricted to a claim; its
  broken copy fails on MASK-DD-2, and passes a claim that cannot reach doc_to_doc;
* ``golden run``: the bundled adapters pass through the plug-in protocol, catalogue mutants fail
  naming their clause.
"""

from __future__ import annotations

import copy
import importlib.util
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from infonce_spec import SPEC_SHA256, SPEC_VERSION
from infonce_spec.conformance import golden
from infonce_spec.errors import SpecViolation
from infonce_spec.reference import Config, loss_and_grad, rank_expectations
from infonce_spec.vocabulary import DIRECTIONS

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT / "spec" / "vectors"
MANIFEST = VECTORS / "MANIFEST.json"
JS = ROOT / "tests" / "js"
NODE = shutil.which("node")


def _generator():
    spec = importlib.util.spec_from_file_location("golden_generate", VECTORS / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cases():
    return golden.load_cases(VECTORS)[1]


@pytest.fixture(scope="module")
def reference_results(cases):
    """The reference itself as an implementation under test: its results file must pass."""
    results = {}
    for _, case in cases:
        try:
            config = Config(**case["config"])
            q = np.asarray(case["inputs"]["queries"], dtype=case["inputs"].get("dtype", "float64"))
            d = np.asarray(case["inputs"]["docs"], dtype=case["inputs"].get("dtype", "float64"))
            r = loss_and_grad(q, d, config)
            entry = {"loss": r.loss, "per_query_loss": r.per_query_loss.tolist(), "grad_scale": r.grad_scale}
            entry |= {"grad_queries": r.grad_queries.tolist(), "grad_docs": r.grad_docs.tolist()}
            if "data_parallel" in case:
                ranks = rank_expectations(q, d, config, case["data_parallel"]["world_size"])
                entry["ranks"] = [
                    {
                        "rank": x.rank,
                        "loss": x.loss,
                        "grad_queries": x.grad_queries.tolist(),
                        "grad_docs": x.grad_docs.tolist(),
                    }
                    for x in ranks
                ]
            results[case["id"]] = entry
        except SpecViolation as exc:
            results[case["id"]] = {"error": exc.clause}
    return {"implementation": "infonce_spec.reference", "spec_version": SPEC_VERSION, "results": results}


def _verify(tmp_path, results, *extra):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    report = tmp_path / "report.json"
    code = golden.main(["verify", str(path), "--vectors", str(VECTORS), "--json", str(report), *extra])
    return code, json.loads(report.read_text()) if report.exists() else None


# ---------------------------------------------------------------- the files
def test_committed_vectors_match_the_generator(capsys):
    """``python spec/vectors/generate.py --check``: regenerated in memory, no drift beyond 1e-12."""
    code = _generator().main(["--check"])
    out = capsys.readouterr().out
    assert code == 0, f"golden vectors drifted; run `python spec/vectors/generate.py` and review:\n{out}"


def test_check_reports_drift_by_case_and_field(tmp_path):
    """Below 1e-12 relative is rounding (other BLAS builds); above it is drift, named by case and field."""
    texts = golden.build_vectors(_generator().FILES)
    for name, text in texts.items():
        (tmp_path / name).write_text(text)
    data = json.loads((tmp_path / "edge.json").read_text())
    grad = data["cases"][5]["expected"]["grad_docs"]
    grad[0][0][0] *= 1 + 1e-14
    (tmp_path / "edge.json").write_text(golden.dumps(data))
    assert golden.check_vectors(tmp_path, texts) == []
    grad[0][0][0] *= 1 + 1e-9
    (tmp_path / "edge.json").write_text(golden.dumps(data))
    ((where, what),) = golden.check_vectors(tmp_path, texts)
    assert where == f"edge.json.cases[{data['cases'][5]['id']}].expected.grad_docs"
    assert what.startswith("worst relative error") and "at [0, 0, 0]" in what


def test_manifest_lists_every_case_and_file():
    manifest = json.loads(MANIFEST.read_text())
    assert manifest["format"] == golden.FORMAT
    assert manifest["schema_version"] == manifest["spec_version"] == SPEC_VERSION
    listed_files = [entry["path"] for entry in manifest["files"]]
    total = MANIFEST.stat().st_size
    for entry in manifest["files"]:
        data = json.loads((VECTORS / entry["path"]).read_text())
        total += (VECTORS / entry["path"]).stat().st_size
        assert data["schema_version"] == SPEC_VERSION
        assert [c["id"] for c in data["cases"]] == [c["id"] for c in entry["cases"]], entry["path"]
        for listed, case in zip(entry["cases"], data["cases"], strict=True):
            assert listed["clauses"] == case["clauses"]
            assert set(case["clauses"]) <= set(golden.ALL_CLAUSES), case["id"]
    on_disk = sorted(p.name for p in VECTORS.glob("*.json") if p.name != "MANIFEST.json")
    assert sorted(listed_files) == on_disk, "every case file must be listed in MANIFEST.json"
    # ~800 cases: every configuration shape x similarity with its edge cases (~1.3 MB, ~230 KB gzipped)
    assert total < 1_500_000, f"the vectors folder should stay small, it holds {total} bytes of JSON"
    covered = set(manifest["clauses"]) | set(manifest["not_covered"])
    assert covered == set(golden.ALL_CLAUSES), sorted(set(golden.ALL_CLAUSES) - covered)


def test_clause_list_follows_the_spec():
    anchors = re.findall(
        r'<a id="([A-Z]+(?:-[A-Z]+)?-\d+)"></a>', (ROOT / "spec" / "infonce-spec.md").read_text()
    )
    assert golden.ALL_CLAUSES == tuple(anchors)


def test_catalogue_covers_the_required_corners(cases):
    values = [c for _, c in cases if "expected" in c]
    shapes = [(np.asarray(c["inputs"]["docs"]).shape, c) for c in values]
    configs = [Config(**c["config"]) for c in values]
    others = ("query_to_query", "doc_to_query", "doc_to_doc")
    every_set = {("query_to_doc", *extra) for r in range(4) for extra in itertools.combinations(others, r)}
    assert {cfg.directions for cfg in configs} >= every_set, "each direction set (DIR-1)"
    assert {cfg.partition_mode for cfg in configs} == {"joint", "per_direction", "per_anchor"}
    assert {cfg.similarity for cfg in configs} == {"cos", "dot"}
    assert {cfg.hardness_mode for cfg in configs} == {
        None,
        "in_batch_negatives",
        "hard_negatives",
        "all_negatives",
    }
    assert {s[0] for s, _ in shapes} >= {1, 2, 3}, "K in {1, 2, 3}"
    assert any(s[1] == 1 for s, _ in shapes) and any(s[2] == 1 for s, _ in shapes), "N=1 and D=1"
    assert any("GRAD-3" in c["clauses"] for c in values), "a zero vector under cos"
    assert any(
        cfg.scale >= 1e3 and cfg.similarity == "dot" and "NUM-1" in c["clauses"]
        for cfg, c in zip(configs, values, strict=True)
    )
    worlds = {(c["data_parallel"]["world_size"], s[0]) for s, c in shapes if "data_parallel" in c}
    assert any(w == 2 and k >= 2 for w, k in worlds) and any(w == 3 and k >= 2 for w, k in worlds)
    errors = {c["expected_error"]["clause"] for _, c in cases if "expected_error" in c}
    assert errors >= {"LAYOUT-1", "LAYOUT-2", "LAYOUT-4", "LAYOUT-5", "DIR-1", "PART-1", "PART-4", "SCALE-1"}
    assert errors >= {"SIM-3", "HARD-1", "DP-5"}


# ---------------------------------------------------------------- the verifier
def test_reference_results_pass(tmp_path, reference_results):
    code, report = _verify(tmp_path, reference_results)
    assert code == 0, report["summary"]
    assert report["ok"] and all(row["verdict"] == "pass" for row in report["clauses"].values())


def test_tampered_gradient_fails_naming_the_case(tmp_path, reference_results):
    results = copy.deepcopy(reference_results)
    grad = results["results"]["hard-hard-negatives"]["grad_docs"]
    grad[1][2][0] *= 1 + 1e-7  # beyond 1e-9 relative, far inside float32 noise
    code, report = _verify(tmp_path, results)
    assert code == 1
    (failed,) = [c for c in report["checks"] if c["verdict"] == "FAIL"]
    assert failed["case"] == "hard-hard-negatives" and failed["aspect"] == "values"
    assert "grad_docs[1, 2, 0]" in failed["details"][0] and "> 1e-09" in failed["details"][0]
    assert set(failed["suspects"]) <= set(failed["clauses"])
    results["dtype"] = "float32"  # the same error is within the float32 bound
    assert _verify(tmp_path, results)[0] == 0


def test_missing_cases_and_fields_are_not_covered(tmp_path, reference_results, cases):
    results = copy.deepcopy(reference_results)
    del results["results"]["edge-zero-query-cos"]
    code, report = _verify(tmp_path, results)
    assert code == 1, "a required case that was not checked is never a pass"
    assert report["clauses"]["GRAD-3"]["verdict"] == "pass"  # other GRAD-3 cases remain
    assert report["clauses"]["GRAD-3"]["not covered"] == 1
    assert _verify(tmp_path, results, "--allow-not-covered")[0] == 0
    for cid in [c["id"] for _, c in cases if "GRAD-3" in c["clauses"]]:
        results["results"].pop(cid, None)
    assert (
        _verify(tmp_path, results, "--allow-not-covered")[1]["clauses"]["GRAD-3"]["verdict"] == "not covered"
    )


def test_optional_parts_are_not_covered_unless_claimed(tmp_path, reference_results, cases):
    """A fixed scale (SCALE-2), no data parallelism (section 9) and no finiteness check (LAYOUT-4 is a
    SHOULD): not covered, and not required, unless the results answer them somewhere."""
    results = copy.deepcopy(reference_results)
    for entry in results["results"].values():
        entry.pop("ranks", None)
        entry.pop("grad_scale", None)
    optional_errors = [
        c["id"] for _, c in cases if c.get("expected_error", {}).get("clause") in ("LAYOUT-4", "DP-5")
    ]
    for cid in optional_errors:
        results["results"][cid] = results["results"]["k1-qd"]  # values instead of an error
    code, report = _verify(tmp_path, results)
    assert code == 0, report["summary"]
    for clause in ("SCALE-2", "DP-2", "DP-3", "LAYOUT-4", "DP-5"):
        assert report["clauses"][clause]["verdict"] == "not covered", clause
    assert report["clauses"]["QD-1"]["verdict"] == "pass"
    results["results"]["dp-w2-qd-k2"]["ranks"] = reference_results["results"]["dp-w2-qd-k2"]["ranks"]
    code, report = _verify(tmp_path, results)  # claims data parallelism: DP-5 is now a MUST
    assert code == 1 and report["clauses"]["DP-5"]["verdict"] == "FAIL"
    data_parallel = sum("expected" in c and "data_parallel" in c for _, c in cases)
    assert report["clauses"]["DP-3"]["verdict"] == "pass"
    assert report["clauses"]["DP-3"]["not covered"] == data_parallel - 1


def test_wrong_error_clause_and_error_on_valid_input_fail(tmp_path, reference_results):
    results = copy.deepcopy(reference_results)
    results["results"]["err-per-direction-query-to-query"] = {"error": "PART-1"}
    results["results"]["k1-qd"] = {"error": {"clause": "LAYOUT-2", "message": "boom"}}
    code, report = _verify(tmp_path, results)
    assert code == 1
    failed = {c["case"]: c for c in report["checks"] if c["verdict"] == "FAIL"}
    assert (
        "raised [PART-1], but the spec requires [PART-4]"
        in failed["err-per-direction-query-to-query"]["details"][0]
    )
    assert "raised [LAYOUT-2] on a valid input" in failed["k1-qd"]["details"][0]
    assert report["clauses"]["PART-4"]["verdict"] == "FAIL"


def test_unusable_results_exit_2(tmp_path, reference_results):
    assert _verify(tmp_path, {**reference_results, "dtype": "bfloat16"})[0] == 2
    assert _verify(tmp_path, {**reference_results, "spec_version": "0.9"})[0] == 2
    assert _verify(tmp_path, {"cases": {}})[0] == 2


def test_module_command_line_and_show(tmp_path, reference_results):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(reference_results))
    cmd = [sys.executable, "-m", "infonce_spec.conformance.golden"]
    run = subprocess.run(
        [*cmd, "verify", str(path), "--report", str(tmp_path / "r.md")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith("PASS") and "| MASK-DD-2 | pass |" in (tmp_path / "r.md").read_text()
    show = subprocess.run([*cmd, "show", "edge-zero-query-cos"], capture_output=True, text=True, check=False)
    assert show.returncode == 0 and '"id": "edge-zero-query-cos"' in show.stdout


def test_vectors_are_found_from_any_folder(tmp_path, reference_results):
    """The vectors come with the package: verify and show work outside the checkout, without --vectors."""
    path = tmp_path / "results.json"
    path.write_text(json.dumps(reference_results))
    env = {k: v for k, v in os.environ.items() if k != "INFONCE_VECTORS"}
    cmd = [sys.executable, "-m", "infonce_spec.conformance.golden"]
    show = subprocess.run([*cmd, "show", "dir-qd"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert show.returncode == 0 and '"id": "dir-qd"' in show.stdout, show.stderr
    cli = [sys.executable, "-m", "infonce_spec.conformance", "verify", str(path)]
    verify = subprocess.run(cli, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert verify.returncode == 0 and verify.stdout.startswith("PASS:"), verify.stdout + verify.stderr
    assert golden.default_vectors_dir().samefile(VECTORS)  # in a checkout: spec/vectors itself


def test_nothing_fails_but_not_everything_is_answered_is_incomplete(tmp_path, reference_results):
    results = copy.deepcopy(reference_results)
    del results["results"]["k1-qd"]
    code, report = _verify(tmp_path, results)
    assert code == 1 and report["verdict"] == "INCOMPLETE" and report["summary"].startswith("INCOMPLETE: ")
    code, report = _verify(tmp_path, results, "--allow-not-covered")
    assert code == 0 and report["summary"].startswith("INCOMPLETE: ") and "FAIL:" not in report["summary"]


def test_per_query_losses_are_required_only_when_exposed(tmp_path, reference_results):
    """LOSS-2: an implementation without per-query losses is not failed for them; one that exposes
    them somewhere must answer them everywhere."""
    results = copy.deepcopy(reference_results)
    for entry in results["results"].values():
        entry.pop("per_query_loss", None)
    code, report = _verify(tmp_path, results)
    assert code == 0 and report["verdict"] == "PASS", report["summary"]
    assert report["claims"]["per_query_loss"] is False
    results["results"]["k1-qd"]["per_query_loss"] = reference_results["results"]["k1-qd"]["per_query_loss"]
    code, report = _verify(tmp_path, results)
    assert code == 1 and report["verdict"] == "FAIL"
    assert any("per_query_loss: missing" in d for c in report["checks"] for d in c["details"])


# ---------------------------------------------------------------- a consumer in another language
def _node(tmp_path, script, ids=None):
    out = tmp_path / f"{Path(script).stem}.json"
    run = subprocess.run(
        [NODE, str(JS / script), str(MANIFEST), str(out), *([str(ids)] if ids else [])],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    return out


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_javascript_implementation_passes(tmp_path):
    out = _node(tmp_path, "infonce.mjs")
    code = golden.main(
        ["verify", str(out), "--report", str(tmp_path / "js.md"), "--json", str(tmp_path / "js.json")]
    )
    report = json.loads((tmp_path / "js.json").read_text())
    assert code == 0, (tmp_path / "js.md").read_text()
    assert {row["verdict"] for row in report["clauses"].values()} == {"pass"}


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_broken_javascript_is_rejected_naming_mask_dd_2(tmp_path):
    out = _node(tmp_path, "infonce_broken.mjs")
    code = golden.main(["verify", str(out), "--json", str(tmp_path / "broken.json")])
    report = json.loads((tmp_path / "broken.json").read_text())
    assert code == 1
    failing = [clause for clause, row in report["clauses"].items() if row["verdict"] == "FAIL"]
    assert failing == ["MASK-DD-2"], report["summary"]
    assert all(c["suspects"] == ["MASK-DD-2"] for c in report["checks"] if c["verdict"] == "FAIL")


# ---------------------------------------------------------------- claims: what an implementation implements
HARDNESS = ("in_batch_negatives", "hard_negatives", "all_negatives")


def _claim(path, **fields):
    path.write_text(json.dumps(fields))
    return golden.load_claim(path)


def _every_shape():
    from infonce_spec.conformance.protocol import every_combination
    from infonce_spec.vocabulary import DIRECTIONS, PARTITION_MODES

    return sorted(every_combination(DIRECTIONS, PARTITION_MODES))


def test_every_claim_is_covered_by_the_vectors(cases):
    """Every configuration shape x similarity x hardness mode (or none) x max K (1 or any), plain or
    with every optional part: each clause the claim can exercise is covered by a case it covers."""
    from infonce_spec.conformance.protocol import Capabilities

    def shape_of(case):
        return frozenset(case["config"]["directions"]), case["config"]["partition_mode"]

    errors = [c for _, c in cases if "expected_error" in c]
    for dirs, mode in _every_shape():
        # a claim of exactly this shape covers value cases of this shape only (claims_config)
        mine = [c for _, c in cases if "expected" in c and shape_of(c) == (frozenset(dirs), mode)]
        for similarity in ("cos", "dot"):
            for hardness in ((), *((h,) for h in HARDNESS)):
                for max_k in (1, None):
                    for parts in (False, True):
                        caps = Capabilities(
                            name="t",
                            configurations=frozenset({(dirs, mode)}),
                            similarities=frozenset({similarity}),
                            hardness_modes=frozenset(hardness),
                            max_k=max_k,
                            grad_scale=parts,
                            data_parallel=parts,
                            validates_inputs=parts,
                        )
                        claim = golden.Claim(caps, per_query_loss=parts)
                        candidates = mine + (errors if parts else [])
                        applicable = [c for c in candidates if golden.case_applies(claim, c)]
                        covered = {clause for c in applicable for clause in c["clauses"]}
                        gaps = set(golden.exercisable_clauses(claim)) - covered
                        assert not gaps, f"{claim.text()}: no case covers {sorted(gaps)}"
                        assert len(applicable) >= 7, claim.text()  # K = 1: k1, n1, zero rows, ...


@pytest.mark.parametrize("helper", ["infonce", "clip_like", "nt_xent"])
@pytest.mark.parametrize("similarity", ["cos", "dot"])
@pytest.mark.parametrize("max_k", [1, None])
def test_the_helpers_claims_get_twenty_cases(tmp_path, cases, helper, similarity, max_k):
    """infonce(), clip_like(), nt_xent() (spec §14.1), without hard negatives or with any K."""
    claim = _claim(tmp_path / "c.json", configurations=[helper], similarities=[similarity], max_k=max_k)
    applicable = [c for _, c in cases if golden.case_applies(claim, c)]
    assert len(applicable) >= 20, [c["id"] for c in applicable]
    assert all("expected" in c for c in applicable), "error cases only with validates_inputs"


def test_claims_files_are_checked(tmp_path):
    path = tmp_path / "c.json"
    with pytest.raises(ValueError, match=r"unknown claims fields \['similarity'\]"):
        _claim(path, similarity=["dot"])
    with pytest.raises(ValueError, match=r"PART-4"):
        _claim(path, configurations=[[["query_to_doc", "query_to_query"], "per_direction"]])
    with pytest.raises(ValueError, match=r"unknown configuration name 'clip'"):
        _claim(path, configurations=["clip"])
    with pytest.raises(ValueError, match=r"'grad_scale' is true or false"):
        _claim(path, grad_scale="yes")
    claim = _claim(path, configurations=["clip_like", "infonce"], similarities=["dot"], max_k=1)
    assert claim.capabilities.shapes() == (
        (("query_to_doc",), "joint"),
        (("query_to_doc", "doc_to_query"), "per_direction"),
    )
    assert "SIM-1" not in golden.exercisable_clauses(claim) and "ROW-1" not in golden.exercisable_clauses(
        claim
    )
    if sys.version_info >= (3, 11):
        toml = tmp_path / "c.toml"
        toml.write_text('configurations = ["nt_xent"]\nsimilarities = ["cos", "dot"]\ngrad_scale = true\n')
        loaded = golden.load_claim(toml)
        assert loaded.capabilities.grad_scale and loaded.capabilities.similarities == {"cos", "dot"}


def test_results_outside_the_claim_are_not_judged(tmp_path, reference_results):
    """The reference's full results against a CLIP-style claim: only its cases are judged."""
    claims = tmp_path / "clip.json"
    claims.write_text(json.dumps({"configurations": ["clip_like"], "similarities": ["dot"]}))
    code, report = _verify(tmp_path, reference_results, "--claims", str(claims))
    assert code == 0 and report["verdict"] == "PASS", report["summary"]
    assert report["applicable_cases"] >= 20 and len(report["outside_the_claim"]) > 500
    assert "DD-1" not in report["clauses"] and report["clauses"]["SIM-2"]["verdict"] == "pass"
    broken = copy.deepcopy(reference_results)
    broken["results"]["shape-qd-dq-perdir-dot-k2"]["loss"] += 1e-6
    broken["results"]["shape-qd-dq-dd-joint-dot-k2"]["loss"] += 1e-6  # outside: not judged
    code, report = _verify(tmp_path, broken, "--claims", str(claims))
    assert code == 1 and [c["case"] for c in report["checks"] if c["verdict"] == "FAIL"] == [
        "shape-qd-dq-perdir-dot-k2"
    ]


def test_a_clause_no_applicable_case_covers_is_incomplete(tmp_path, reference_results):
    """A vectors folder without the large-logit cases: a claim that can exercise NUM-1 is not PASS."""
    vectors = tmp_path / "vectors"
    shutil.copytree(VECTORS, vectors)
    manifest = json.loads((vectors / "MANIFEST.json").read_text())
    dropped = {c["id"] for entry in manifest["files"] for c in entry["cases"] if "NUM-1" in c["clauses"]}
    for entry in manifest["files"]:
        entry["cases"] = [c for c in entry["cases"] if c["id"] not in dropped]
    (vectors / "MANIFEST.json").write_text(json.dumps(manifest))
    reference_results = {
        **reference_results,
        "results": {k: v for k, v in reference_results["results"].items() if k not in dropped},
    }
    claims = tmp_path / "clip.json"
    claims.write_text(json.dumps({"configurations": ["clip_like"], "similarities": ["dot"]}))
    results = tmp_path / "results.json"
    results.write_text(json.dumps(reference_results))
    code = golden.main(
        [
            "verify",
            str(results),
            "--vectors",
            str(vectors),
            "--claims",
            str(claims),
            "--json",
            str(tmp_path / "r.json"),
        ]
    )
    report = json.loads((tmp_path / "r.json").read_text())
    assert code == 1 and report["verdict"] == "INCOMPLETE" and report["gaps"] == ["NUM-1"]
    assert "no case covers NUM-1" in report["summary"]


def test_cases_lists_what_a_claim_covers(tmp_path, cases, capsys):
    claims = tmp_path / "c.json"
    claims.write_text(json.dumps({"configurations": ["nt_xent"], "max_k": 1}))
    assert golden.main(["cases", "--claims", str(claims)]) == 0
    listed = capsys.readouterr().out.split()
    claim = golden.load_claim(claims)
    assert listed == [c["id"] for _, c in cases if golden.case_applies(claim, c)] and len(listed) >= 20


CLAIMS = {
    "clip_like-dot": {"configurations": ["clip_like"], "similarities": ["dot"]},
    "nt_xent-cos-k1": {"configurations": ["nt_xent"], "max_k": 1},
    "infonce-dot": {"configurations": ["infonce"], "similarities": ["dot"], "grad_scale": True},
}


@pytest.mark.skipif(NODE is None, reason="node is not installed")
@pytest.mark.parametrize("name", sorted(CLAIMS))
def test_javascript_restricted_to_a_claim_passes(tmp_path, capsys, name):
    """The JavaScript implementation computes only the cases `golden cases` lists for the claim;
    verify --claims gives PASS with >= 20 cases and no clause the claim can exercise left uncovered."""
    claims = tmp_path / "claims.json"
    claims.write_text(json.dumps(CLAIMS[name]))
    assert golden.main(["cases", "--claims", str(claims)]) == 0
    ids = capsys.readouterr().out.split()
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    out = _node(tmp_path, "infonce.mjs", tmp_path / "ids.txt")
    assert sorted(json.loads(out.read_text())["results"]) == sorted(ids)
    code = golden.main(["verify", str(out), "--claims", str(claims), "--json", str(tmp_path / "r.json")])
    report = json.loads((tmp_path / "r.json").read_text())
    assert code == 0 and report["verdict"] == "PASS", report["summary"]
    assert report["applicable_cases"] == len(ids) >= 20 and report["gaps"] == []
    exercisable = golden.exercisable_clauses(golden.load_claim(claims))
    assert {report["clauses"][c]["verdict"] for c in exercisable} == {"pass"}


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_broken_javascript_passes_a_claim_without_doc_to_doc(tmp_path, capsys):
    """The MASK-DD-2 bug is out of reach of a CLIP-style claim and within reach of a GTE one."""
    for claim, verdict in (
        ({"configurations": ["clip_like"]}, "PASS"),
        ({"directions": list(DIRECTIONS)}, "FAIL"),
    ):
        claims = tmp_path / "claims.json"
        claims.write_text(json.dumps(claim))
        golden.main(["cases", "--claims", str(claims)])
        (tmp_path / "ids.txt").write_text(capsys.readouterr().out)
        out = _node(tmp_path, "infonce_broken.mjs", tmp_path / "ids.txt")
        golden.main(["verify", str(out), "--claims", str(claims), "--json", str(tmp_path / "r.json")])
        report = json.loads((tmp_path / "r.json").read_text())
        assert report["verdict"] == verdict, report["summary"]
    assert [c for c, row in report["clauses"].items() if row["verdict"] == "FAIL"] == ["MASK-DD-2"]


# ---------------------------------------------------------------- golden run: a Python adapter's results writer
@pytest.mark.slow
@pytest.mark.parametrize(
    ("adapter", "clause"),
    [
        ("infonce_spec.adapters.bundled:uncached", None),
        ("infonce_spec.adapters.bundled:cached", None),
        ("infonce_spec.adapters.bundled:data_parallel", None),
        ("infonce_spec.conformance.mutants.catalogue:adapters.dd_keeps_own_hard_negatives", "MASK-DD-2"),
        ("infonce_spec.conformance.mutants.catalogue:adapters.per_direction_sum", "PART-3"),
    ],
)
def test_golden_run_through_an_adapter(tmp_path, adapter, clause):
    """Every vector the adapter's claim covers goes through its embeddings() (the plug-in protocol);
    the bundled torch implementations PASS, a catalogue mutant FAILs on exactly its clause."""
    out, report = tmp_path / "results.json", tmp_path / "report.json"
    code = golden.main(["run", "--adapter", adapter, "--out", str(out), "--json", str(report)])
    data = json.loads(report.read_text())
    failing = [c for c, row in data["clauses"].items() if row["verdict"] == "FAIL"]
    if clause is None:
        assert code == 0 and data["verdict"] == "PASS" and data["gaps"] == [], data["summary"]
        assert data["claim"]["validates_inputs"] and "LAYOUT-5" in data["claim"]["skips"]
    else:
        assert code == 1 and failing == [clause], data["summary"]
    assert data["applicable_cases"] >= 600 and data["spec_sha256"] == SPEC_SHA256
    results = json.loads(out.read_text())
    assert results["spec_version"] == SPEC_VERSION and len(results["results"]) == data["applicable_cases"]


def test_golden_run_names_an_adapter_that_cannot_load(tmp_path, capsys):
    code = golden.main(["run", "--adapter", "no_such_module:adapter", "--out", str(tmp_path / "r.json")])
    assert code == 2 and "no module named 'no_such_module'" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


# ---------------------------------------------------------------- a minimal results writer in C++ (docs)
CPP = ROOT / "tests" / "cpp" / "results_writer.cpp"
GXX = shutil.which("g++")
NLOHMANN = any(Path(p, "nlohmann", "json.hpp").is_file() for p in ("/usr/include", "/usr/local/include"))


def test_the_guide_shows_the_cpp_writer_as_it_is():
    assert CPP.read_text() in (ROOT / "docs" / "golden-vectors.md").read_text()


@pytest.mark.slow
@pytest.mark.skipif(GXX is None or not NLOHMANN, reason="g++ or nlohmann/json.hpp is not installed")
def test_cpp_results_writer_passes_its_claim(tmp_path, capsys):
    """docs/golden-vectors.md's C++ writer: compiled, run on the cases of its claim, verified: PASS."""
    binary = tmp_path / "writer"
    build = subprocess.run(
        [GXX, "-std=c++17", "-O0", "-o", str(binary), str(CPP)], capture_output=True, text=True, timeout=300
    )
    assert build.returncode == 0, build.stderr[-3000:]
    claims = tmp_path / "claims.json"
    claims.write_text(
        json.dumps(
            {
                "configurations": ["infonce"],
                "similarities": ["dot"],
                "grad_scale": True,
                "per_query_loss": True,
            }
        )
    )
    assert golden.main(["cases", "--claims", str(claims)]) == 0
    (tmp_path / "ids.txt").write_text(capsys.readouterr().out)
    out = tmp_path / "results.json"
    run = subprocess.run(
        [str(binary), str(MANIFEST), str(tmp_path / "ids.txt"), str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    code = golden.main(["verify", str(out), "--claims", str(claims), "--json", str(tmp_path / "r.json")])
    report = json.loads((tmp_path / "r.json").read_text())
    assert code == 0 and report["verdict"] == "PASS" and report["applicable_cases"] >= 20, report["summary"]
