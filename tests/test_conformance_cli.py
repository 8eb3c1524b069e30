"""The conformance CLI end to end: bundled adapters pass; a broken adapter is caught, with a reproducer;
user adapters load like pytest test files; errors are one line with pytest-like exit codes.

The broken adapter lives in this module (a ~30-line numpy loss, query_to_doc + query_to_query, dot,
joint) and forgets the query_to_query self mask (MASK-QQ-1). The CLI loads it by file path.
Exit codes: 0 conformant, 1 not conformant, 2 usage or load error, 3 interrupted, 4 internal error.

A process start costs (torch, the adapter's imports), so one process serves every test that reads
it: this module's run of the bundled adapters, its run of the broken adapter, one ``list`` per adapter name, and one run whose adapters fail to load one after another.
Each behaviour a user sees through a process (an exit status, one line and no traceback) is checked
on a process at least once; the other checks of the same code call ``cli.main`` in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


@pytest.fixture
def in_process() -> Iterator[None]:
    """``cli.main`` called in this process, inside the test session's ``shared_forkserver`` block
    (tests/conftest.py): a command's end stops its workers and pools but keeps the session's
    forkserver (``interrupt.shutdown``), which is checked here."""
    from tests.processes import forkserver_pid

    before = forkserver_pid()
    yield
    if before is not None:
        assert forkserver_pid() == before, "the command stopped the forkserver"


@dataclass(frozen=True)
class CliRun:
    """One ``infonce-conformance run`` process: its exit code, output and reports."""

    returncode: int
    stdout: str
    stderr: str
    report: dict[str, Any]
    markdown: str
    reproducers: Path

    @property
    def output(self) -> str:
        """The end of what it printed (for failure messages)."""
        return self.stdout[-3000:] + self.stderr[-3000:]


def cli_run(tmp: Path, *args: str) -> CliRun:
    """``python -m infonce_spec.conformance run ARGS`` with ``--json``, ``--report`` and
    ``--reproducers`` in ``tmp``, from the repository root."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "infonce_spec.conformance",
            "run",
            *args,
            "--json",
            str(tmp / "r.json"),
            "--report",
            str(tmp / "r.md"),
            "--reproducers",
            str(tmp / "repro"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    report = json.loads((tmp / "r.json").read_text()) if (tmp / "r.json").is_file() else {}
    markdown = (tmp / "r.md").read_text() if (tmp / "r.md").is_file() else ""
    return CliRun(out.returncode, out.stdout, out.stderr, report, markdown, tmp / "repro")


@pytest.fixture(scope="module")
def bundled_cli_run(tmp_path_factory: pytest.TempPathFactory) -> CliRun:
    """``infonce-conformance run --profile quick --world-sizes 1,2`` over the bundled adapters (no
    ``--adapter``), a process as a user starts it: one run, read by the tests below."""
    return cli_run(tmp_path_factory.mktemp("bundled-cli-run"), "--profile", "quick", "--world-sizes", "1,2")


@pytest.mark.distributed
def test_run_quick_on_the_bundled_adapters_exits_zero(bundled_cli_run: CliRun) -> None:
    """The command line run of the bundled adapters passes, with a Markdown report and no reproducer."""
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


@pytest.mark.distributed
def test_the_bundled_adapters_pass_without_noise(bundled_cli_run: CliRun) -> None:
    """The bundled torch implementations are correct: the run has no root cause and no "follows
    from" verdict in any clause row (the mutant catalogue's correct side, tests/test_mutants.py)."""
    reports = bundled_cli_run.report.get("reports", [])
    assert reports, bundled_cli_run.output
    for rep in reports:
        noisy = [
            c for c in rep["clauses"] if c["verdict"] == "FAIL" or c["verdict"].startswith("follows from")
        ]
        assert rep["ok"] and not rep["root_causes"] and not noisy, (
            f"{rep['adapter']}: {noisy or rep['root_causes']}"
        )


def test_the_numpy_adapter_itself_is_correct() -> None:
    """The fixed twin passes the reference (so the failure below is the mask, not the toy)."""
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
#
# One user folder per module (read, never changed, by every test below) and one process per thing a
# user sees: the broken adapter's run (read by three tests), each `list`, one run in which an
# adapter loads and every kind of load error follows it.

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


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's folder outside the repository: adapter.py importing its sibling myloss.py."""
    folder = tmp_path_factory.mktemp("users") / "user"
    folder.mkdir()
    (folder / "myloss.py").write_text(SIBLING)
    (folder / "adapter.py").write_text(USER_ADAPTER)
    return folder


@dataclass(frozen=True)
class UserRun:
    """``infonce-conformance run`` in the user's folder: the process, its JSON and Markdown reports."""

    process: subprocess.CompletedProcess[str]
    report: dict[str, Any]
    markdown: str
    reproducers: Path

    @property
    def output(self) -> str:
        return self.process.stdout[-3000:] + self.process.stderr[-3000:]


def _user_run(folder: Path, out: Path, *args: str) -> UserRun:
    """The console script's ``run ARGS`` in ``folder``, its reports and reproducers in ``out`` (relative
    paths, as a user types them, when ``out`` is ``folder``)."""
    name = (lambda p: p.name) if out == folder else str
    process = _script(
        "run",
        *args,
        "--profile",
        "quick",
        "--json",
        name(out / "r.json"),
        "--report",
        name(out / "r.md"),
        "--reproducers",
        name(out / "repro"),
        "--no-progress",
        cwd=folder,
    )
    report = json.loads((out / "r.json").read_text()) if (out / "r.json").is_file() else {}
    markdown = (out / "r.md").read_text() if (out / "r.md").is_file() else ""
    return UserRun(process, report, markdown, (out / "repro").resolve())


@pytest.fixture(scope="module")
def broken_run(user_folder: Path) -> UserRun:
    """``infonce-conformance run --adapter ./adapter.py:Broken --select QD-1 --select MASK-QQ-1
    --select DD-1`` in the user's folder (reports and reproducers relative to it): what the broken
    adapter gets right, what it breaks (MASK-QQ-1, with its reproducer) and what it does not claim."""
    select = [arg for text in ("QD-1", "MASK-QQ-1", "DD-1") for arg in ("--select", text)]
    return _user_run(user_folder, user_folder, "--adapter", "./adapter.py:Broken", *select)


@pytest.fixture(scope="module")
def listed(user_folder: Path) -> Callable[[str], subprocess.CompletedProcess[str]]:
    """``infonce-conformance list --adapter NAME`` in the user's folder: one process per NAME."""
    done: dict[str, subprocess.CompletedProcess[str]] = {}

    def list_adapter(name: str) -> subprocess.CompletedProcess[str]:
        if name not in done:
            done[name] = _script("list", "--adapter", name, cwd=user_folder)
        return done[name]

    return list_adapter


def test_broken_self_mask_is_flagged_with_reproducer_and_replay(broken_run: UserRun) -> None:
    out = broken_run
    assert out.process.returncode == 1, out.output
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
    fixed = _cli("replay", str(npz), "--adapter", f"{HERE}:NumpyQueryToQuery")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr


def test_a_user_adapter_runs_and_its_printed_replay_command_works(
    broken_run: UserRun, user_folder: Path
) -> None:
    out = broken_run
    assert out.process.returncode == 1, out.output
    mask = next(
        p for p in out.report["reports"][0]["properties"] if p["property"] == "masks/query_to_query_self"
    )
    replay = mask["failure"]["replay"].split()
    assert replay[:2] == ["infonce-conformance", "replay"]
    again = _script(*replay[1:], cwd=user_folder.parent)  # from another folder, as printed
    assert again.returncode == 1 and "MASK-QQ-1" in again.stdout, again.stdout + again.stderr
    assert "[MASK-QQ-1]" in again.stdout, again.stdout + again.stderr


def test_the_run_ends_with_one_summary_line_and_never_cuts_a_table(broken_run: UserRun) -> None:
    out = broken_run  # its selection MASK-QQ-1 holds every query_to_query property
    assert out.process.returncode == 1, out.output
    stdout = out.process.stdout
    assert "…" not in stdout  # CI logs are not terminals: wrap, never truncate
    assert "reference/query_to_query" in stdout and str(out.reproducers) in stdout
    last = stdout.strip().splitlines()[-1]
    assert last.startswith("FAIL: 0 of 1 adapters conformant, 1 not; properties: ")
    assert "MASK-QQ-1" in last  # the root cause


@pytest.mark.parametrize("name", ["./adapter.py:ClipAdapter", "adapter:ClipAdapter"])
def test_a_user_adapter_imports_its_sibling_module(listed, name: str) -> None:  # type: ignore[no-untyped-def]
    out = listed(name)
    assert out.returncode == 0, out.stderr
    assert "reference/query_to_doc" in out.stdout and "[claimed]" in out.stdout


def test_list_names_every_property_and_clause(listed) -> None:  # type: ignore[no-untyped-def]
    out = listed("./adapter.py:ClipAdapter")  # NumpyQueryToQuery's claims
    assert out.returncode == 0, out.stderr
    assert "masks/query_to_query_self" in out.stdout and "MASK-QQ-1" in out.stdout
    assert "[not claimed: needs directions ['doc_to_doc']]" in out.stdout
    assert "clauses not checked by any property: LAYOUT-5\n" in out.stdout


LOAD_ERRORS = [
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
]
#: The adapters of :func:`load_error_run` that cannot be loaded, in order: every kind above, then a
#: file path whose attribute is missing.
CANNOT_LOAD = [*dict.fromkeys(name for name, _ in LOAD_ERRORS), f"{HERE}:NoSuchAdapter"]


@pytest.fixture(scope="module")
def load_error_run(user_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> UserRun:
    """``infonce-conformance run --adapter tests/test_conformance_cli.py:NumpyQueryToQuery`` followed by
    every adapter of :data:`CANNOT_LOAD`, ``--select reference/query_to_doc``, in the user's folder:
    the adapter that loads runs and is written, each of the others is one line on stderr."""
    adapters = [arg for name in [f"{HERE}:NumpyQueryToQuery", *CANNOT_LOAD] for arg in ("--adapter", name)]
    out = tmp_path_factory.mktemp("load-error-run")
    return _user_run(user_folder, out, *adapters, "--select", "reference/query_to_doc")


@pytest.fixture
def in_user_folder(user_folder: Path, monkeypatch: pytest.MonkeyPatch, in_process: None) -> Iterator[Path]:
    """This process in the user's folder, as a ``cli.main`` call there; afterwards sys.path, the
    current folder and sys.modules are as before (the user's modules and this module's copy that
    adapter.py imports are removed)."""
    monkeypatch.chdir(user_folder)
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield user_folder
    for name in set(sys.modules) - before:
        path = getattr(sys.modules[name], "__file__", None) or ""
        if path.startswith((str(user_folder), str(HERE.parent))):
            del sys.modules[name]


@pytest.mark.parametrize(("name", "says"), LOAD_ERRORS)
def test_a_load_error_is_one_line_and_exit_2(
    load_error_run: UserRun, in_user_folder: Path, capsys: pytest.CaptureFixture[str], name: str, says: str
) -> None:
    """``run`` (the module's one process, whose adapters fail to load one after another) and ``list``
    (in this process; :func:`test_list_with_an_adapter_that_cannot_load_is_exit_2` is its process)."""
    from infonce_spec.conformance import cli

    out = load_error_run.process
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr + out.stdout
    errors = _errors(out.stderr)
    assert len(errors) == len(CANNOT_LOAD), out.stderr  # one line per adapter that cannot be loaded
    line = errors[CANNOT_LOAD.index(name)]
    assert says in line and line.startswith("infonce-conformance: error: "), out.stderr
    assert cli.main(["list", "--adapter", name]) == 2
    listed = capsys.readouterr()
    assert "Traceback" not in listed.err + listed.out
    errors = _errors(listed.err)
    assert len(errors) == 1 and says in errors[0], listed.err
    assert errors[0].startswith("infonce-conformance: error: ")


def test_list_with_an_adapter_that_cannot_load_is_exit_2(listed) -> None:  # type: ignore[no-untyped-def]
    """The process: exit status 2, one line, no traceback (the other load errors are checked above)."""
    out = listed("adapter:RaisingConstructor")
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr + out.stdout
    (error,) = _errors(out.stderr)
    assert error.startswith("infonce-conformance: error: cannot load adapter 'adapter:RaisingConstructor': ")
    assert "RaisingConstructor() raised RuntimeError: no GPU on this machine (adapter.py, line 20)" in error


def test_the_adapters_that_fail_to_load_are_listed_and_the_one_that_loads_is_written(
    load_error_run: UserRun,
) -> None:
    out = load_error_run
    assert out.process.returncode == 2, out.output
    assert "Traceback" not in out.process.stderr and "has no attribute 'NoSuchAdapter'" in out.process.stderr
    data = out.report
    assert [r["adapter"] for r in data["reports"]] == [f"{HERE}:NumpyQueryToQuery"]
    (prop,) = data["reports"][0]["properties"]  # --select a property's name: that property only
    assert prop["property"] == "reference/query_to_doc"
    assert data["reports"][0]["ok"] and not data["ok"] and data["exit_code"] == 2
    assert [e["adapter"] for e in data["load_errors"]] == CANNOT_LOAD
    assert "| QD-1 |" in out.markdown and "## Adapters that could not be loaded" in out.markdown
    # one summary line over all adapters ends the run
    last = out.process.stdout.strip().splitlines()[-1]
    n = len(CANNOT_LOAD)
    assert last.startswith(
        f"ERROR: 1 of {n + 1} adapters conformant; {n} could not be loaded; properties: 1 pass, 0 FAIL"
    )


def test_a_replay_against_an_adapter_that_cannot_load_is_exit_2(
    tmp_path: Path, in_process: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from infonce_spec.conformance import cli

    assert cli.main(["replay", str(tmp_path / "none.npz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such reproducer" in err


# --- selections, profiles, help, version, list -----------------------------------------------------
#
# In this process (``cli.main``): the exit statuses of ``return`` and of argparse's ``SystemExit`` are
# the process's; the version is asked of a process.


def test_an_unknown_selection_is_an_error_naming_the_choices(
    tmp_path: Path, in_process: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from infonce_spec.conformance import cli

    code = cli.main(
        ["run", "--select", "nosuchprop", "--profile", "quick", "--json", str(tmp_path / "r.json")]
    )
    out = capsys.readouterr()
    assert code == 2, out.out + out.err
    assert "--select 'nosuchprop' matches no property" in out.err
    assert "masks/query_to_query_self" in out.err and "MASK-QQ-1" in out.err  # the valid choices
    assert "PASS" not in out.out and not (tmp_path / "r.json").exists()  # nothing ran


def test_an_unknown_profile_is_an_error_naming_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    from infonce_spec.conformance import cli

    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", "--profile", "fast"])
    assert exit_.value.code == 2 and "choose from 'quick', 'ci', 'thorough'" in capsys.readouterr().err


def test_help_lists_the_exit_codes_without_markup(capsys: pytest.CaptureFixture[str]) -> None:
    from infonce_spec.conformance import cli

    for command in ([], ["run"]):
        with pytest.raises(SystemExit) as exit_:
            cli.main([*command, "--help"])
        assert exit_.value.code == 0
        stdout = capsys.readouterr().out
        assert "``" not in stdout
        assert "exit codes:" in stdout and "3  interrupted" in stdout and "4  internal error" in stdout


def test_version_names_package_and_spec() -> None:
    from infonce_spec import SPEC_VERSION, __version__

    out = _cli("--version")
    assert out.returncode == 0
    assert f"infonce-spec package {__version__}, spec {SPEC_VERSION}" in out.stdout


def test_list_names_the_bundled_adapters(in_process: None, capsys: pytest.CaptureFixture[str]) -> None:
    from infonce_spec.conformance import cli
    from infonce_spec.conformance.runner import BUNDLED_ADAPTERS

    assert cli.main(["list"]) == 0
    stdout = capsys.readouterr().out
    assert all(f"    {spec}\n" in stdout for spec in BUNDLED_ADAPTERS)


# --- exit codes and partial results --------------------------------------------------------------


def test_interrupt_exits_3_and_writes_what_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_process: None
) -> None:
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
    assert data["status"] == "interrupted" and data["ok"] is False
    assert data["reports"][0]["status"] == "interrupted" and data["reports"][0]["ok"] is False
    assert [p["property"] for p in data["reports"][0]["properties"]] == ["reference/query_to_doc"]


def test_internal_error_exits_4_with_one_line_and_the_traceback_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], in_process: None
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
