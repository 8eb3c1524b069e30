"""The pytest plugin: inert without --infonce-adapter; one test per property with it; the one-liner API."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

from infonce_spec.conformance import pytest_plugin

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


def test_without_the_option_the_plugin_adds_nothing(tmp_path: Path) -> None:
    items = ["a", "b"]
    config = SimpleNamespace(
        getoption=lambda name, default=None: [] if name == "infonce_adapter" else default
    )
    assert pytest_plugin.pytest_collection_modifyitems(None, config, items) is None
    assert items == ["a", "b"]
    (tmp_path / "test_one.py").write_text("def test_one():\n    assert True\n")
    out = _pytest(tmp_path, "--collect-only")
    assert "1 test collected" in out.stdout, out.stdout + out.stderr


def test_the_option_generates_one_test_per_property_with_junit(tmp_path: Path) -> None:
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


def test_conformance_tests_one_liner(tmp_path: Path) -> None:
    (tmp_path / "test_mine.py").write_text(
        "from infonce_spec.conformance.pytest_plugin import conformance_tests\n"
        f"test_conformance = conformance_tests({str(CLI_TESTS) + ':NumpyQueryToQuery'!r}, profile='quick',"
        " world_sizes=())\n"
    )
    out = _pytest(tmp_path, "-rs", "-k", "reference or masks or invariance")
    assert out.returncode == 0, out.stdout[-3000:]
    assert "passed" in out.stdout and "not claimed: needs directions ['doc_to_doc']" in out.stdout


def test_the_generated_tests_are_counted_as_collected(tmp_path: Path) -> None:
    """pytest says how many tests it collected before running them (not "collected 0 items")."""
    (tmp_path / "test_one.py").write_text("def test_one():\n    assert True\n")
    out = _pytest(
        tmp_path,
        "--collect-only",
        f"--infonce-adapter={CLI_TESTS}:NumpyQueryToQuery",
        "--infonce-world-sizes=1,2",
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    from infonce_spec.conformance.pytest_plugin import _cases

    generated = len(_cases((1, 2)))
    assert f"{generated + 1} tests collected" in out.stdout, out.stdout[-2000:]


def test_a_user_adapter_that_imports_a_sibling_module_loads(tmp_path: Path) -> None:
    (tmp_path / "myloss.py").write_text("SCALE = 1.0\n")
    (tmp_path / "adapter.py").write_text(
        "from myloss import SCALE\n"
        f"import sys; sys.path.insert(0, {str(CLI_TESTS.parent)!r})\n"
        "from test_conformance_cli import NumpyQueryToQuery as Mine\n"
    )
    for name in ("./adapter.py:Mine", "adapter:Mine"):
        out = _pytest(
            tmp_path, f"--infonce-adapter={name}", "--infonce-profile=quick", "-k", "reference/query_to_doc"
        )
        assert out.returncode == 0 and "1 passed" in out.stdout, out.stdout[-3000:]


def test_an_adapter_that_cannot_load_is_one_collection_error(tmp_path: Path) -> None:
    (tmp_path / "adapter.py").write_text("import myloss_is_missing\n")
    out = _pytest(tmp_path, "--infonce-adapter=./adapter.py:Mine")
    assert out.returncode == 2, out.stdout[-3000:]  # pytest's "interrupted: errors during collection"
    assert "1 error" in out.stdout and "passed" not in out.stdout and "failed" not in out.stdout
    message = "importing ./adapter.py raised ModuleNotFoundError: No module named 'myloss_is_missing'"
    assert message in out.stdout and "Traceback" not in out.stdout
    (tmp_path / "test_mine.py").write_text(
        "from infonce_spec.conformance.pytest_plugin import conformance_tests\n"
        "test_conformance = conformance_tests('adapter:Mine')\n"
    )
    one_liner = _pytest(tmp_path)
    assert one_liner.returncode == 2 and "1 error" in one_liner.stdout, one_liner.stdout[-3000:]
    assert message.replace("./adapter.py", "adapter") in one_liner.stdout
