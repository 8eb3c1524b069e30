"""The pytest plugin: inert without --infonce-adapter; one test per property with it; the one-liner API.

A pytest process start costs more than a second (pytest, its plugins, numpy, the suite), so one
real ``pytest`` process is kept -- the CI use: ``--infonce-adapter ... --junitxml``, its exit status
and report -- and the other runs are pytest's own in this process (``pytester.runpytest_inprocess``:
its sys.modules, sys.path and current folder are put back after each run), each with the plugin's
state of a new process (:func:`inner_pytest`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from infonce_spec.conformance import isolation, pytest_plugin

pytest_plugins = ["pytester"]

CLI_TESTS = Path(__file__).resolve().with_name("test_conformance_cli.py")


def _pytest(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=folder,
        env=env,
    )


@pytest.fixture
def inner_pytest(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., tuple[int, str]]]:
    """``pytest -q -p no:cacheprovider ARGS`` in ``pytester.path``, in this process: returns
    ``(exit status, stdout)``. Each run starts from the plugin state of a new process (no adapter
    loaded, no results, no pools); the call workers its adapters started are stopped afterwards."""
    before = set(isolation._LIVE)

    def run(*args: str, **kwargs: Any) -> tuple[int, str]:
        for name in ("_ADAPTERS", "_RESULTS", "_HARNESSES", "_COLLECTED"):
            monkeypatch.setattr(pytest_plugin, name, {})
        result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider", *args, **kwargs)
        assert not pytest_plugin._HARNESSES, "an in-process run must not start data-parallel pools"
        return int(result.ret), result.stdout.str()

    yield run
    started = set(isolation._LIVE) - before
    for key, worker in list(isolation._WORKERS.items()):
        if worker in started:
            del isolation._WORKERS[key]
    for worker in started:
        worker.discard()


def test_without_the_option_the_plugin_adds_nothing(pytester: pytest.Pytester, inner_pytest) -> None:  # type: ignore[no-untyped-def]
    items = ["a", "b"]
    config = SimpleNamespace(
        getoption=lambda name, default=None: [] if name == "infonce_adapter" else default
    )
    assert pytest_plugin.pytest_collection_modifyitems(None, config, items) is None
    assert items == ["a", "b"]
    (pytester.path / "test_one.py").write_text("def test_one():\n    assert True\n")
    _, stdout = inner_pytest("--collect-only")
    assert "1 test collected" in stdout, stdout


def test_the_option_generates_one_test_per_property_with_junit(tmp_path: Path) -> None:
    """The one real ``pytest`` process: the plugin from the entry point, exit status 1, JUnit."""
    junit = tmp_path / "junit.xml"
    out = _pytest(
        tmp_path,
        f"--infonce-adapter={CLI_TESTS}:BrokenSelfMask",
        "--infonce-profile=quick",
        "--infonce-world-sizes=1",
        f"--infonce-reproducers={tmp_path / 'repro'}",
        "-k",
        "query_to_query or query_to_doc or doc_to_doc",
        f"--junitxml={junit}",
    )
    assert out.returncode == 1, out.stdout[-3000:]
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    failure = cases["masks/query_to_query_self"].find("failure")
    assert failure is not None and "[MASK-QQ-1]" in (failure.get("message", "") + (failure.text or ""))
    assert "replay: infonce-conformance replay" in (failure.text or "")
    assert cases["reference/query_to_doc"].find("failure") is None
    skipped = cases["reference/doc_to_doc"].find("skipped")
    assert skipped is not None and "not claimed" in skipped.get("message", "")


def test_conformance_tests_one_liner(pytester: pytest.Pytester, inner_pytest) -> None:  # type: ignore[no-untyped-def]
    (pytester.path / "test_mine.py").write_text(
        "from infonce_spec.conformance.pytest_plugin import conformance_tests\n"
        f"test_conformance = conformance_tests({str(CLI_TESTS) + ':NumpyQueryToQuery'!r}, profile='quick',"
        " world_sizes=())\n"
    )
    code, stdout = inner_pytest("-rs", "-k", "reference or masks or invariance")
    assert code == 0, stdout[-3000:]
    assert "passed" in stdout and "not claimed: needs directions ['doc_to_doc']" in stdout


def test_the_generated_tests_are_counted_as_collected(pytester: pytest.Pytester, inner_pytest) -> None:  # type: ignore[no-untyped-def]
    """pytest says how many tests it collected before running them (not "collected 0 items")."""
    (pytester.path / "test_one.py").write_text("def test_one():\n    assert True\n")
    code, stdout = inner_pytest(
        "--collect-only", f"--infonce-adapter={CLI_TESTS}:NumpyQueryToQuery", "--infonce-world-sizes=1,2"
    )
    assert code == 0, stdout[-3000:]
    from infonce_spec.conformance.pytest_plugin import _cases

    generated = len(_cases((1, 2)))
    assert f"{generated + 1} tests collected" in stdout, stdout[-2000:]


def test_a_user_adapter_that_imports_a_sibling_module_loads(pytester: pytest.Pytester, inner_pytest) -> None:  # type: ignore[no-untyped-def]
    (pytester.path / "myloss.py").write_text("SCALE = 1.0\n")
    (pytester.path / "adapter.py").write_text(
        "from myloss import SCALE\n"
        f"import sys; sys.path.insert(0, {str(CLI_TESTS.parent)!r})\n"
        "from test_conformance_cli import NumpyQueryToQuery as Mine\n"
    )
    for name in ("./adapter.py:Mine", "adapter:Mine"):
        code, stdout = inner_pytest(
            f"--infonce-adapter={name}", "--infonce-profile=quick", "-k", "reference/query_to_doc"
        )
        assert code == 0 and "1 passed" in stdout, stdout[-3000:]


def test_an_adapter_that_cannot_load_is_one_collection_error(pytester: pytest.Pytester, inner_pytest) -> None:  # type: ignore[no-untyped-def]
    (pytester.path / "adapter.py").write_text("import myloss_is_missing\n")
    code, stdout = inner_pytest("--infonce-adapter=./adapter.py:Mine")
    assert code == 2, stdout[-3000:]  # pytest's "interrupted: errors during collection"
    assert "1 error" in stdout and "passed" not in stdout and "failed" not in stdout
    message = "importing ./adapter.py raised ModuleNotFoundError: No module named 'myloss_is_missing'"
    assert message in stdout and "Traceback" not in stdout
    (pytester.path / "test_mine.py").write_text(
        "from infonce_spec.conformance.pytest_plugin import conformance_tests\n"
        "test_conformance = conformance_tests('adapter:Mine')\n"
    )
    code, one_liner = inner_pytest()
    assert code == 2 and "1 error" in one_liner, one_liner[-3000:]
    assert message.replace("./adapter.py", "adapter") in one_liner


def test_node_ids_read_adapter_then_property(pytester: pytest.Pytester, inner_pytest) -> None:  # type: ignore[no-untyped-def]
    spec = f"{CLI_TESTS}:NumpyQueryToQuery"
    code, stdout = inner_pytest("--collect-only", f"--infonce-adapter={spec}", "--infonce-world-sizes=1")
    assert code == 0, stdout[-3000:]
    ids = [line for line in stdout.splitlines() if "reference/" in line]
    assert f"{spec}::reference/query_to_doc" in ids, ids
    assert not [i for i in ids if i.startswith("::")], ids


def test_an_interrupted_session_says_interrupted_first(pytester: pytest.Pytester, inner_pytest) -> None:  # type: ignore[no-untyped-def]
    """Ctrl-C after the first conformance test: the plugin's summary is INTERRUPTED, no verdict,
    with what finished and what did not."""
    (pytester.path / "conftest.py").write_text(
        "def pytest_runtest_logfinish(nodeid, location):\n    raise KeyboardInterrupt\n"
    )
    spec = f"{CLI_TESTS}:NumpyQueryToQuery"
    code, stdout = inner_pytest(
        f"--infonce-adapter={spec}",
        "--infonce-profile=quick",
        "--infonce-world-sizes=1",
        "-k",
        "reference",
        no_reraise_ctrlc=True,
    )
    assert code == pytest.ExitCode.INTERRUPTED, stdout[-3000:]
    section = stdout[stdout.index("infonce-conformance: INTERRUPTED") :]
    (line,) = [x for x in section.splitlines() if x.startswith("INTERRUPTED ")]
    total = len([t for t in pytest_plugin._cases((1,)) if t[0].startswith("reference/")])
    assert line.startswith(f"INTERRUPTED {spec}: no verdict; 1 of ")
    assert "1 passed, 0 failed, 0 skipped" in line
    assert line.endswith(" not run"), line
    assert total > 1
