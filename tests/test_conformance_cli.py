"""The conformance CLI end to end: bundled adapters pass; a broken adapter is caught, with a reproducer;
user adapters load like pytest test files; errors are one line with pytest-like exit codes.

The broken adapter lives in this module (a ~30-line numpy loss, query_to_doc + query_to_query, dot,
joint) and forgets the query_to_query self mask (MASK-QQ-1). The CLI loads it by file path.
Exit codes: 0 conformant, 1 not conformant, 2 usage or load error, 3 interrupted, 4 internal error.
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


def _cli(*args: str, timeout: float = 300, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "infonce_spec.conformance", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )


def _script(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The console script, as a user runs it: the current folder is not on sys.path by itself."""
    script = Path(sys.executable).with_name("infonce-conformance")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


@pytest.mark.distributed
def test_run_quick_on_the_bundled_adapters_exits_zero(bundled_cli_run) -> None:  # type: ignore[no-untyped-def]
    """The session's one command line run of the bundled adapters (tests/conftest.py)."""
    out = bundled_cli_run
    assert out.returncode == 0, out.output
    report = out.report
    assert report["ok"] and len(report["reports"]) == 3
    for rep in report["reports"]:
        verdicts = {c["clause"]: c["verdict"] for c in rep["clauses"]}
        assert verdicts["MASK-QQ-1"] == "pass"
        cached = rep["adapter"] != "infonce_spec.adapters.bundled:uncached"
        assert verdicts["CACHE-5"] == ("pass" if cached else "not claimed")  # cached/loss_stage_memory
    assert "| MASK-QQ-1 | self excluded | pass |" in out.markdown
    assert not out.reproducers.exists()


def test_broken_self_mask_is_flagged_with_reproducer_and_replay(broken_self_mask_cli_run) -> None:  # type: ignore[no-untyped-def]
    """The session's one run of BrokenSelfMask (tests/conftest.py: --select QD-1, MASK-QQ-1, DD-1)."""
    out = broken_self_mask_cli_run
    assert out.returncode == 1, out.output
    rep = out.report["reports"][0]
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
    from infonce_spec.conformance.properties.checks import reference_check
    from infonce_spec.conformance.protocol import load_adapter
    from infonce_spec.reference import Config

    rng = np.random.default_rng(0)
    ctx = Context(load_adapter(f"{HERE}:NumpyQueryToQuery"))
    config = Config(directions=("query_to_doc", "query_to_query"), similarity="dot", scale=3.0)
    case = {"queries": rng.normal(size=(4, 5)), "docs": rng.normal(size=(2, 4, 5)), "config": config}
    reference_check(case, ctx, "QQ-1")
    assert ctx.worst_ratio < 0.1


# --- user adapters load like pytest test files ----------------------------------------------------

SIBLING = "SCALE = 1.0  # imported by adapter.py as a sibling module\n"
USER_ADAPTER = f"""
import sys

from myloss import SCALE  # a sibling module in the same folder

sys.path.insert(0, {str(HERE.parent)!r})
from test_conformance_cli import BrokenSelfMask, NumpyQueryToQuery


class ClipAdapter(NumpyQueryToQuery):
    scale_check = SCALE


class Broken(BrokenSelfMask):
    pass


class RaisingConstructor(NumpyQueryToQuery):
    def __init__(self):
        raise RuntimeError("no GPU on this machine")
"""


@pytest.fixture
def user_folder(tmp_path: Path) -> Path:
    """A user's folder outside the repository: adapter.py importing its sibling myloss.py."""
    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "myloss.py").write_text(SIBLING)
    (folder / "adapter.py").write_text(USER_ADAPTER)
    return folder


@pytest.mark.parametrize("name", ["./adapter.py:ClipAdapter", "adapter:ClipAdapter"])
def test_a_user_adapter_imports_its_sibling_module(user_folder: Path, name: str) -> None:
    out = _script("list", "--adapter", name, cwd=user_folder)
    assert out.returncode == 0, out.stderr
    assert "reference/query_to_doc" in out.stdout and "[claimed]" in out.stdout


def test_a_user_adapter_runs_and_its_printed_replay_command_works(user_folder: Path) -> None:
    out = _script(
        "run",
        "--adapter",
        "./adapter.py:Broken",
        "--profile",
        "quick",
        "--select",
        "masks/query_to_query_self",
        "--json",
        "r.json",
        "--no-progress",
        cwd=user_folder,
    )
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    (prop,) = json.loads((user_folder / "r.json").read_text())["reports"][0]["properties"]
    replay = prop["failure"]["replay"].split()
    assert replay[:2] == ["infonce-conformance", "replay"]
    again = _script(*replay[1:], cwd=user_folder.parent)  # from another folder, as printed
    assert again.returncode == 1 and "[MASK-QQ-1]" in again.stdout, again.stdout + again.stderr


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("nosuchmodule:Adapter", "no module named 'nosuchmodule'"),
        ("nosuchmodule:Adapter", "bundled adapters: infonce_spec.adapters.bundled:uncached, "),
        (
            "adapter:NoSuchClass",
            "adapter has no attribute 'NoSuchClass'; adapters it defines: Broken, BrokenSelfMask, ClipAdapter,",
        ),
        ("./missing.py:Adapter", "no such file"),
        (
            "adapter:RaisingConstructor",
            "RaisingConstructor() raised RuntimeError: no GPU on this machine (adapter.py, line 20)",
        ),
        ("./myloss.py:SCALE", "has no `capabilities`"),
        ("no_colon", "adapter must be named 'package.module:attribute' or 'path/to/file.py:attribute'"),
    ],
)
def test_a_load_error_is_one_line_and_exit_2(user_folder: Path, name: str, says: str) -> None:
    for command in (["run", "--adapter", name, "--profile", "quick"], ["list", "--adapter", name]):
        out = _script(*command, cwd=user_folder)
        assert out.returncode == 2, (command, out.stdout, out.stderr)
        assert "Traceback" not in out.stderr + out.stdout
        errors = [line for line in out.stderr.splitlines() if line.strip()]
        assert len(errors) == 1 and says in errors[0], out.stderr
        assert errors[0].startswith("infonce-conformance: error: ")


def test_a_replay_against_an_adapter_that_cannot_load_is_exit_2(user_folder: Path, tmp_path: Path) -> None:
    missing = _script("replay", str(tmp_path / "none.npz"), cwd=user_folder)
    assert (
        missing.returncode == 2 and missing.stderr.count("\n") == 1 and "no such reproducer" in missing.stderr
    )


# --- selections, profiles, help, version, list -----------------------------------------------------


def test_an_unknown_selection_is_an_error_naming_the_choices(tmp_path: Path) -> None:
    out = _cli("run", "--select", "nosuchprop", "--profile", "quick", "--json", str(tmp_path / "r.json"))
    assert out.returncode == 2, out.stdout + out.stderr
    assert "--select 'nosuchprop' matches no property" in out.stderr
    assert "masks/query_to_query_self" in out.stderr and "MASK-QQ-1" in out.stderr  # the valid choices
    assert "PASS" not in out.stdout and not (tmp_path / "r.json").exists()  # nothing ran


def test_an_unknown_profile_is_an_error_naming_the_choices() -> None:
    out = _cli("run", "--profile", "fast")
    assert out.returncode == 2 and "choose from 'quick', 'ci', 'thorough'" in out.stderr


def test_help_lists_the_exit_codes_without_markup() -> None:
    for command in ([], ["run"]):
        out = _cli(*command, "--help")
        assert out.returncode == 0
        assert "``" not in out.stdout
        assert (
            "exit codes:" in out.stdout
            and "3  interrupted" in out.stdout
            and "4  internal error" in out.stdout
        )


def test_version_names_package_and_spec() -> None:
    from infonce_spec import SPEC_VERSION, __version__

    out = _cli("--version")
    assert out.returncode == 0
    assert f"infonce-spec package {__version__}, spec {SPEC_VERSION}" in out.stdout


def test_list_names_the_bundled_adapters() -> None:
    from infonce_spec.conformance.runner import BUNDLED_ADAPTERS

    out = _cli("list")
    assert out.returncode == 0 and all(f"    {spec}\n" in out.stdout for spec in BUNDLED_ADAPTERS)


# --- exit codes and partial results --------------------------------------------------------------


def test_two_adapters_the_second_fails_to_load_the_first_is_written(tmp_path: Path) -> None:
    out = _cli(
        "run",
        "--adapter",
        f"{HERE}:NumpyQueryToQuery",
        "--adapter",
        f"{HERE}:NoSuchAdapter",
        "--profile",
        "quick",
        "--select",
        "reference/query_to_doc",
        "--json",
        str(tmp_path / "r.json"),
        "--report",
        str(tmp_path / "r.md"),
        "--no-progress",
    )
    assert out.returncode == 2, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Traceback" not in out.stderr and "has no attribute 'NoSuchAdapter'" in out.stderr
    data = json.loads((tmp_path / "r.json").read_text())
    assert [r["adapter"] for r in data["reports"]] == [f"{HERE}:NumpyQueryToQuery"]
    assert data["reports"][0]["ok"] and not data["ok"] and data["exit_code"] == 2
    assert data["load_errors"][0]["adapter"] == f"{HERE}:NoSuchAdapter"
    md = (tmp_path / "r.md").read_text()
    assert "| QD-1 |" in md and "## Adapters that could not be loaded" in md
    # one summary line over all adapters ends the run
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith(
        "ERROR: 1 of 2 adapters conformant; 1 could not be loaded; properties: 1 pass, 0 FAIL"
    )


def test_the_run_ends_with_one_summary_line_and_never_cuts_a_table(broken_self_mask_cli_run) -> None:  # type: ignore[no-untyped-def]
    out = broken_self_mask_cli_run  # its selection MASK-QQ-1 holds every query_to_query property
    assert out.returncode == 1, out.output
    assert "…" not in out.stdout  # CI logs are not terminals: wrap, never truncate
    assert "reference/query_to_query" in out.stdout and str(out.reproducers) in out.stdout
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("FAIL: 0 of 1 adapters conformant, 1 not; properties: ")
    assert "MASK-QQ-1" in last  # the root cause


def test_interrupt_exits_3_and_writes_what_finished(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from infonce_spec.conformance import cli, runner

    real = runner.run_property
    calls = {"n": 0}

    def interrupted_after_one(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] > 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "run_property", interrupted_after_one)
    code = cli.main(
        [
            "run",
            "--adapter",
            f"{HERE}:NumpyQueryToQuery",
            "--profile",
            "quick",
            "--select",
            "reference/query_to",
            "--json",
            str(tmp_path / "r.json"),
            "--no-progress",
        ]
    )
    assert code == cli.ExitCode.INTERRUPTED == 3
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["interrupted"] and data["exit_code"] == 3
    assert [p["property"] for p in data["reports"][0]["properties"]] == ["reference/query_to_doc"]


def test_internal_error_exits_4_with_one_line_and_the_traceback_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from infonce_spec.conformance import cli

    def broken(args):  # type: ignore[no-untyped-def]
        raise RuntimeError("a bug in the suite")

    monkeypatch.setattr(cli, "_cmd_list", broken)
    assert cli.main(["list"]) == cli.ExitCode.INTERNAL_ERROR == 4
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("infonce-conformance: internal error: RuntimeError: a bug in the suite")
    written = Path(line.rsplit("traceback written to ", 1)[1].rstrip(")"))
    try:
        assert "Traceback" in written.read_text() and "a bug in the suite" in written.read_text()
    finally:
        written.unlink()
