"""``--fail-fast`` to its verdict on every single-bug mutant, and the ci profile against an older commit.

Part 1 (target: a median <= 10 s on the 2-core machine): per mutant of the catalogue,
``run_adapter(spec, profile="ci", fail_fast=True)`` -- what ``infonce-conformance run --fail-fast``
does -- timed to its verdict, with the root cause it stopped on; then the median, and as the baseline
measured in the same run a clean full ci run of the bundled uncached adapter (the ratio says how much
of a full run the edit-run loop costs).

Part 2 (``--compare-with PKG``; target: no more than 25 % slower): ``infonce-conformance run
--profile ci`` of the bundled adapters, as subprocesses, once with this checkout and once with an
older commit's package on ``PYTHONPATH``. Build that package without touching the checkout::

    mkdir -p /tmp/base /tmp/basepkg/infonce_spec
    git archive 70bdc23 | tar -x -C /tmp/base
    cd /tmp/basepkg/infonce_spec && ln -s /tmp/base/src/infonce_spec/* . \\
        && ln -s /tmp/base/reference /tmp/base/adapters /tmp/base/conformance .
    python benchmarks/bench_fail_fast.py --compare-with /tmp/basepkg

(``PYTHONPATH`` comes before the editable install's finder, and the data-parallel workers inherit it;
the script checks which package each side imported.) Wall-clock seconds; the machine is printed
first. Record the figures in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{os.cpu_count()} CPUs (nproc), {model}, {platform.python_version()}, load average {load:.1f} at start"


def fail_fast(ids: list[str], world_sizes: tuple[int, ...]) -> None:
    from infonce_spec.conformance.mutants.catalogue import CATALOGUE
    from infonce_spec.conformance.mutants.killmatrix import first_verdict
    from infonce_spec.conformance.runner import run_adapter

    times = []
    print(f"{'mutant':34s} {'tag':10s} {'s':>6s}  stopped on")
    for mid in ids or list(CATALOGUE):
        m = CATALOGUE[mid]
        seconds, roots, _ = first_verdict(m, profile="ci", world_sizes=world_sizes)
        times.append(seconds)
        expected = ", ".join(sorted(m.expected_roots))
        mark = "" if roots == expected else f"  (expected {expected})"
        print(f"{mid:34s} {m.clause:10s} {seconds:6.2f}  {roots or 'passed'}{mark}", flush=True)
    median = statistics.median(times)
    print(
        f"median {median:.2f} s, max {max(times):.2f} s over {len(times)} mutants (world sizes {world_sizes})"
    )
    start = time.perf_counter()
    report = run_adapter(
        "infonce_spec.adapters.bundled:uncached", profile="ci", world_sizes=world_sizes, reproducer_dir=None
    )
    baseline = time.perf_counter() - start
    print(
        f"baseline: full ci run of adapters.bundled:uncached {baseline:.2f} s ({'pass' if report.ok else 'FAIL'}); "
        f"fail-fast median / baseline = {median / baseline:.2f}"
    )


def ci_run(pythonpath: str | None, folder: str) -> tuple[float, int, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    which = subprocess.run(
        [sys.executable, "-c", "import infonce_spec; print(infonce_spec.__file__)"],
        env=env,
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    cmd = [sys.executable, "-m", "infonce_spec.conformance", "run", "--profile", "ci", "--no-progress"]
    cmd += ["--reproducers", str(Path(folder) / "failures")]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=folder, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    last = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
    print(f"  {which}: exit {proc.returncode}, {seconds:.1f} s; {last[:160]}", flush=True)
    return seconds, proc.returncode, which


def compare(old: str, repeat: int) -> None:
    """``repeat`` pairs, alternating (this checkout, old commit), so that a change of the machine's
    load falls on both; the medians and the minima."""
    new_s, old_s = [], []
    with tempfile.TemporaryDirectory() as folder:
        print("ci profile of the bundled adapters (infonce-conformance run --profile ci):")
        for _ in range(repeat):
            new_s.append(ci_run(None, folder)[0])
            old_s.append(ci_run(old, folder)[0])
    for name, f in (("median", statistics.median), ("min", min)):
        a, b = f(new_s), f(old_s)
        print(f"{name}: this checkout {a:.1f} s, old commit {b:.1f} s: {100 * (a / b - 1):+.0f} %")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", action="append", default=[], metavar="ID", help="only these mutants")
    parser.add_argument("--world-sizes", default="1,2,3,4", help="as the CLI's default (%(default)s)")
    parser.add_argument("--compare-with", metavar="PKG", help="PYTHONPATH of an older commit's package")
    parser.add_argument("--repeat", type=int, default=3, help="pairs of ci runs in part 2 (%(default)s)")
    parser.add_argument("--no-fail-fast", action="store_true", help="skip part 1")
    args = parser.parse_args()
    from infonce_spec.conformance.cli import keep_hypothesis_out_of_the_working_folder

    keep_hypothesis_out_of_the_working_folder()  # as `infonce-conformance run` does
    print(machine(), flush=True)
    if not args.no_fail_fast:
        fail_fast(args.only, tuple(int(w) for w in args.world_sizes.split(",")))
    if args.compare_with:
        compare(args.compare_with, args.repeat)


if __name__ == "__main__":
    main()
