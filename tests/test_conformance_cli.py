"""The conformance CLI end to end: bundled adapters pass; a broken adapter is caught, with a reproducer.

The broken adapter lives in this module (a ~30-line numpy loss, query_to_doc + query_to_query, dot,
joint) and forgets the query_to_query self mask (MASK-QQ-1). The CLI loads it by file path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from infonce_spec.conformance import Capabilities, EmbeddingCase, LossGrads

HERE = Path(__file__).resolve()
ROOT = HERE.parents[1]


class NumpyQueryToQuery:
    """query_to_doc + query_to_query, joint, dot similarity, in numpy; ``mask_self`` toggles MASK-QQ-1."""

    capabilities = Capabilities(
        name="numpy-qq",
        directions=frozenset({"query_to_doc", "query_to_query"}),
        partition_modes=frozenset({"joint"}),
        similarities=frozenset({"dot"}),
        hardness_modes=frozenset(),
    )
    mask_self = True

    def embeddings(self, case: EmbeddingCase) -> LossGrads:
        q, docs, s = case.queries, case.docs, case.config.scale
        k, n, dim = docs.shape
        flat = docs.reshape(k * n, dim)
        qq = "query_to_query" in case.config.directions
        blocks = [s * q @ flat.T] + ([s * q @ q.T] if qq else [])
        if qq and self.mask_self:
            blocks[1] = np.where(np.eye(n, dtype=bool), -np.inf, blocks[1])
        z = np.concatenate(blocks, axis=1)
        m = z.max(axis=1, keepdims=True)
        p = np.exp(z - m)
        lse = m[:, 0] + np.log(p.sum(axis=1))
        p /= n * p.sum(axis=1, keepdims=True)  # dL/dlogits, without the positive's -1/N
        p_d, p_q = p[:, : k * n], p[:, k * n :]
        g_q = s * (p_d @ flat) - s * docs[0] / n
        g_d = s * (p_d.T @ q)
        g_d[:n] -= s * q / n
        if qq:
            g_q += s * (p_q @ q) + s * (p_q.T @ q)
        loss = float(np.mean(lse - s * np.sum(q * docs[0], axis=1)))
        return LossGrads(loss, g_q, g_d.reshape(k, n, dim))


class BrokenSelfMask(NumpyQueryToQuery):
    """The same loss with the query itself left in its query_to_query row (violates MASK-QQ-1)."""

    mask_self = False


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "infonce_spec.conformance", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
    )


@pytest.mark.distributed
def test_run_quick_on_the_bundled_adapters_exits_zero(tmp_path: Path) -> None:
    out = _cli(
        "run",
        "--profile",
        "quick",
        "--world-sizes",
        "1,2",
        "--json",
        str(tmp_path / "r.json"),
        "--report",
        str(tmp_path / "r.md"),
        "--reproducers",
        str(tmp_path / "repro"),
        "--no-progress",
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["ok"] and len(report["reports"]) == 3
    for rep in report["reports"]:
        verdicts = {c["clause"]: c["verdict"] for c in rep["clauses"]}
        assert verdicts["MASK-QQ-1"] == "pass"
        cached = rep["adapter"] != "infonce_spec.adapters.bundled:uncached"
        assert verdicts["CACHE-5"] == ("pass" if cached else "not claimed")  # cached/loss_stage_memory
    md = (tmp_path / "r.md").read_text()
    assert "| MASK-QQ-1 | self excluded | pass |" in md
    assert not (tmp_path / "repro").exists()


def test_broken_self_mask_is_flagged_with_reproducer_and_replay(tmp_path: Path) -> None:
    repro = tmp_path / "repro"
    select = [arg for text in ("QD-1", "MASK-QQ-1", "DD-1") for arg in ("--select", text)]
    out = _cli(
        "run",
        "--adapter",
        f"{HERE}:BrokenSelfMask",
        "--profile",
        "quick",
        "--json",
        str(tmp_path / "r.json"),
        "--reproducers",
        str(repro),
        "--no-progress",
        *select,
    )
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    rep = json.loads((tmp_path / "r.json").read_text())["reports"][0]
    verdicts = {c["clause"]: c["verdict"] for c in rep["clauses"]}
    assert verdicts["MASK-QQ-1"] == "FAIL"
    assert verdicts["QD-1"] == "pass"  # what the adapter gets right still passes
    assert verdicts["DD-1"] == "not claimed"  # and what it does not claim is reported as such
    mask = next(p for p in rep["properties"] if p["property"] == "masks/query_to_query_self")
    failure = mask["failure"]
    assert failure["clause"] == "MASK-QQ-1"
    assert "masked pair" in failure["message"] and "allowed" in failure["message"]
    assert failure["mismatch"]["difference"] > 1e3 * failure["mismatch"]["bound"]
    npz = Path(failure["reproducer"])
    assert npz.exists() and failure["replay"].startswith(f"infonce-conformance replay {npz}")
    again = _cli("replay", str(npz), "--adapter", f"{HERE}:BrokenSelfMask")
    assert again.returncode == 1 and "MASK-QQ-1" in again.stdout, again.stdout + again.stderr
    fixed = _cli("replay", str(npz), "--adapter", f"{HERE}:NumpyQueryToQuery")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr


def test_list_names_every_property_and_clause() -> None:
    out = _cli("list", "--adapter", f"{HERE}:NumpyQueryToQuery")
    assert out.returncode == 0, out.stderr
    assert "masks/query_to_query_self" in out.stdout and "MASK-QQ-1" in out.stdout
    assert "[not claimed: needs directions ['doc_to_doc']]" in out.stdout
    assert "clauses not checked by any property: LAYOUT-5\n" in out.stdout


def test_the_numpy_adapter_itself_is_correct() -> None:
    """The fixed twin passes the reference (so the failure above is the mask, not the toy)."""
    from infonce_spec.conformance.properties.base import Context
    from infonce_spec.conformance.properties.reference import reference_check
    from infonce_spec.conformance.protocol import load_adapter
    from infonce_spec.reference import Config

    rng = np.random.default_rng(0)
    ctx = Context(load_adapter(f"{HERE}:NumpyQueryToQuery"))
    config = Config(directions=("query_to_doc", "query_to_query"), similarity="dot", scale=3.0)
    case = {"queries": rng.normal(size=(4, 5)), "docs": rng.normal(size=(2, 4, 5)), "config": config}
    reference_check(case, ctx, "QQ-1")
    assert ctx.worst_ratio < 0.1
