"""The project's own test run: wall time of ``./run test`` (two pytest-xdist workers), and where it goes.

Target (issue "architecture step"): the test run in <= 150 s on the 2-core development machine, with
nothing less checked. The run is timed as ``./run test`` runs it (``pytest -n 2 --dist loadfile``); the
baseline measured in the same run is the same suite in one process (``-n 0``), so the ratio says
what the second worker buys on this machine. ``--durations=0`` gives each test's setup, call and
teardown; they are summed per file (the files that dominate are where sharing pays).

    python benchmarks/bench_test_run.py            # both runs, about 6 minutes on 2 cores
    python benchmarks/bench_test_run.py --parallel-only

The machine and its load average are printed first (a loaded machine stretches every figure); the
checkout must be clean afterwards (the tests write nothing into it), which is checked at the end.
Record the figures in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 150.0
_DURATION = re.compile(r"^\s*([\d.]+)s (setup|call|teardown)\s+(tests/[^:]+)::")
_SUMMARY = re.compile(r"(\d+) passed.* in ([\d.]+)s")


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return f"{platform.system()} {platform.machine()}, {model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def timed_run(workers: int) -> tuple[float, str]:
    """``python -m pytest -n WORKERS --dist loadfile -q --durations=0`` (as ``./run test``) from the
    repository root: wall seconds, output."""
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", str(workers), "--dist", "loadfile", "-q", "--durations=0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(
            f"pytest -n {workers} failed (exit {out.returncode}):\n{out.stdout[-3000:]}{out.stderr[-2000:]}"
        )
    return seconds, out.stdout


def per_file(output: str) -> collections.Counter[str]:
    """Seconds per test file (setup + call + teardown of its tests)."""
    totals: collections.Counter[str] = collections.Counter()
    for line in output.splitlines():
        m = _DURATION.match(line)
        if m:
            totals[m.group(3)] += float(m.group(1))
    return totals


def show(label: str, seconds: float, output: str, top: int) -> None:
    summary = _SUMMARY.search(output)
    tests, pytest_s = (summary.group(1), summary.group(2)) if summary else ("?", "?")
    print(f"\n{label}: {seconds:.1f} s wall ({tests} passed; pytest says {pytest_s} s)")
    totals = per_file(output)
    for name, s in totals.most_common(top):
        print(f"  {s:7.1f} s  {name}")
    print(f"  {sum(totals.values()):7.1f} s  all files (setup + call + teardown)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parallel-only", action="store_true", help="skip the one-process baseline")
    parser.add_argument("--top", type=int, default=10, help="files to list per run (default 10)")
    args = parser.parse_args(argv)
    print(machine())
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    parallel_s, parallel_out = timed_run(2)
    show("./run test (pytest -n 2)", parallel_s, parallel_out, args.top)
    print(
        f"target <= {TARGET_S:.0f} s: {'met' if parallel_s <= TARGET_S else 'NOT met'} ({parallel_s / TARGET_S:.2f}x)"
    )
    if not args.parallel_only:
        serial_s, serial_out = timed_run(0)
        show("one process (pytest -n 0)", serial_s, serial_out, args.top)
        print(f"one process / two workers: {serial_s / parallel_s:.2f}x")
    dirty = subprocess.run(
        [
            "git",
            "status",
            "--porcelain",
            "--ignored",
            "--untracked-files=all",
            "tests",
            ".hypothesis",
            "build",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    leftovers = [line for line in dirty.splitlines() if "__pycache__" not in line]
    print("checkout clean afterwards" if not leftovers else f"LEFT IN THE CHECKOUT: {leftovers}")
    return 0 if not leftovers else 1


if __name__ == "__main__":
    raise SystemExit(main())
