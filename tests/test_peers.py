"""The conformance matrix of published implementations (peers/run_matrix.py): docs/peers.md is the
rendering of the committed reports, every finding is classified, and the peers stay out of the
project's dependencies. Nothing here installs or imports a peer."""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent


def _load_matrix() -> Any:
    spec = importlib.util.spec_from_file_location("peers_run_matrix", ROOT / "peers" / "run_matrix.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


matrix = _load_matrix()


def _report(ok: bool, roots: list[str]) -> dict[str, Any]:
    failure = {
        "clause": roots[0] if roots else None,
        "message": f"loss differs [{roots[0] if roots else ''}]",
        "example": "queries = [[1.0]]",
        "config": {"directions": ["query_to_doc"], "partition_mode": "joint"},
    }
    return {
        "adapter": f"{ROOT}/adapters/peers/peer_x.py:loss",
        "ok": ok,
        "profile": "ci",
        "capabilities": {
            "encoder": False,
            "cached": False,
            "data_parallel": True,
            "configurations": [[["query_to_doc", "doc_to_query"], "per_direction"]],
        },
        "root_causes": [
            {
                "clause": c,
                "explanation": "the spec says so",
                "established_by": ["data_parallel/embeddings [W=2]"],
                "smallest": "data_parallel/embeddings [W=2]",
                "replay": f"infonce-conformance replay {ROOT}/peers/reproducers/x.npz --adapter {ROOT}/a.py:l",
                "consequences": [],
            }
            for c in roots
        ],
        "properties": [
            {
                "property": "data_parallel/embeddings",
                "world_size": 2,
                "failure": failure if roots else None,
            }
        ],
    }


def test_the_matrix_names_peer_version_verdict_roots_and_classifies_each_finding() -> None:
    records = [
        {
            "peer": "libA",
            "version": "1.0",
            "profile": "ci",
            "status": "ran",
            "suite": {"reports": [_report(False, ["DP-3"])]},
        },
        {
            "peer": "libB",
            "version": "2.0",
            "profile": "ci",
            "status": "ran",
            "suite": {"reports": [_report(True, [])]},
        },
        {"peer": "libC", "version": "0.1", "profile": "ci", "status": "not installed: no wheel"},
    ]
    classification = {"libA:DP-3": {"kind": "documented deviation", "why": "local gradient only, documented"}}
    text = matrix.render(records, classification)
    assert (
        "| libA | 1.0 | `loss` | embeddings, data parallel | query_to_doc+doc_to_query/per_direction | ci | not conformant | DP-3 |"
        in text
    )
    assert "| libB | 2.0 | `loss` |" in text and "| conformant | -- |" in text
    assert "- libC 0.1: not installed: no wheel" in text
    assert "### libA 1.0 `loss`: DP-3" in text
    assert "a documented deviation of the peer from the spec** -- local gradient only, documented" in text
    assert "replay (in the peer's environment): `infonce-conformance replay peers/reproducers/x.npz" in text
    assert str(ROOT) not in text  # no path of this machine
    unclassified = matrix.render(records, {})
    assert "**not yet classified**" in unclassified


def test_classifications_are_one_of_three_kinds_with_a_reason(tmp_path: Path) -> None:
    bad = tmp_path / "c.json"
    bad.write_text(json.dumps({"lib:QD-1": {"kind": "bug", "why": "x"}}))
    with pytest.raises(ValueError, match="kind must be one of"):
        matrix.load_classification(bad)
    bad.write_text(json.dumps({"lib:QD-1": {"kind": "peer bug", "why": ""}}))
    with pytest.raises(ValueError, match="justification"):
        matrix.load_classification(bad)
    reviewed = matrix.load_classification()
    assert all(entry["kind"] in matrix.KINDS for entry in reviewed.values())


def test_docs_peers_md_is_generated_from_the_committed_reports() -> None:
    """docs/peers.md is never edited by hand: it equals the rendering of peers/reports/*.json."""
    records = matrix.load_records()
    assert records, "peers/reports/ holds no report: run python peers/run_matrix.py"
    expected = matrix.render(records, matrix.load_classification())
    assert (ROOT / "docs" / "peers.md").read_text() == expected, "run python peers/run_matrix.py --docs-only"
    for rec in records:  # every finding of a committed report is classified
        for rep in rec.get("suite", {}).get("reports", []):
            for cause in rep["root_causes"]:
                assert f"{rec['peer']}:{cause['clause']}" in matrix.load_classification(), cause["clause"]


def test_every_listed_adapter_is_defined_in_its_file() -> None:
    for peer in matrix.PEERS:
        tree = ast.parse((ROOT / matrix.ADAPTERS / peer.adapter_file).read_text())
        names = {
            t.id
            for node in tree.body
            if isinstance(node, ast.Assign)
            for t in node.targets
            if isinstance(t, ast.Name)
        }
        assert set(peer.adapters) <= names, (peer.key, set(peer.adapters) - names)


def test_peers_are_not_dependencies_of_the_project() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = " ".join(project.get("dependencies", []))
    declared += " ".join(" ".join(v) for v in project.get("optional-dependencies", {}).values())
    for peer in matrix.PEERS:
        assert peer.requirement not in declared, peer.requirement
        if peer.name != "sentence-transformers":  # 6.2.0 is the project's behavioural anchor (extra peers)
            assert peer.name not in declared, peer.name
