"""Fixtures shared by the whole test session.

A conformance run is the expensive thing here, so a run that several tests read is made once per
session: :func:`bundled_cli_run` is the command line run over the bundled adapters (a process, as a
user starts it) whose exit code, JSON and Markdown reports every test about the bundled adapters'
report reads. Timings belong in ``benchmarks/``, never in a test's asserts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import configuration

from infonce_spec.conformance.distributed import shared_forkserver

ROOT = Path(__file__).resolve().parents[1]

# hypothesis keeps its example database and constants cache in the current folder unless told
# otherwise: a plain `python -m pytest` from the checkout must not write `.hypothesis/` there.
os.environ.setdefault(
    "HYPOTHESIS_STORAGE_DIRECTORY", str(Path(tempfile.gettempdir()) / "infonce-spec-hypothesis")
)
configuration.set_hypothesis_home_dir(os.environ["HYPOTHESIS_STORAGE_DIRECTORY"])


@pytest.fixture(scope="session", autouse=True)
def one_forkserver_per_session() -> Iterator[None]:
    """The data-parallel pools and call workers of every in-process run come from one forkserver per
    test session (per pytest-xdist worker): a start imports torch, ``torch.distributed`` and
    ``torch._dynamo``, seconds each time. Each run still stops its own pools and workers."""
    with shared_forkserver():
        yield


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``pytest-xdist --dist loadgroup`` (``./run test``), the tests that read one shared
    run -- a session- or module-scoped fixture that is not autouse, e.g. ``bundled_cli_run``, the
    sentence-transformers suite run, a gloo pool -- go to one worker, so that it is made once, not
    once per worker that happens to receive one of its readers."""
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        shared = sorted(
            name
            for name, defs in info.name2fixturedefs.items()
            if defs
            and defs[-1].scope in ("session", "module")
            and not getattr(defs[-1], "_autouse", False)
            and not getattr(defs[-1].func, "__module__", "_pytest").startswith("_pytest")  # tmp_path_factory
        )
        if shared:
            item.add_marker(pytest.mark.xdist_group(shared[0]))


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


@pytest.fixture(scope="session")
def bundled_cli_run(tmp_path_factory: pytest.TempPathFactory) -> CliRun:
    """``infonce-conformance run --profile quick --world-sizes 1,2`` over the bundled adapters (no
    ``--adapter``): one run per session."""
    return cli_run(tmp_path_factory.mktemp("bundled-cli-run"), "--profile", "quick", "--world-sizes", "1,2")
