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
