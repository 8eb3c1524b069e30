"""SIGINT at many moments of a run: every time exit 3, an interrupted report, no traceback, nothing left.

One interrupt (:func:`interrupt_once`): ``infonce-conformance run`` of an adapter whose data-parallel
``rank_encoder`` never answers (``tests/fault_adapters.py:HangingRankEncoder``, ``--timeout 600``),
so the run never ends by itself and every delay lands inside it: the interpreter's imports, the
single-process properties (hypothesis generating, shrinking, a call worker answering), the
forkserver's start (it imports torch and ``torch._dynamo``), the pool's start, the data-parallel
examples, and the wait for the hung rank. The signal goes either to the runner alone (``kill -INT
PID``) or to its whole process group (a terminal's Ctrl-C; ``timeout -s INT`` does both). Checked:
exit status 3; the JSON's ``status`` is ``interrupted`` and no ``ok`` is true; the Markdown report's
first line says INTERRUPTED; nothing on stderr looks like a traceback (``Traceback``, ``Exception
ignored``, ``KeyboardInterrupt``); no process of the run's session is left; no ``pymp-*`` or
``infonce-conformance-*`` folder is left in its temporary folder.

``tests/test_interrupts.py`` runs a few delays; the full sweep is run on demand::

    .venv/bin/python -m tests.interrupt_sweep --interrupts 50

(its figures are in docs/conformance.md, "Interrupts").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.processes import live_processes

ROOT = Path(__file__).resolve().parents[1]
ADAPTER = f"{ROOT / 'tests' / 'fault_adapters.py'}:HangingRankEncoder"
#: What a raw traceback on stderr looks like (a child's as much as the runner's).
TRACEBACK_MARKS = ("Traceback", "Exception ignored", "KeyboardInterrupt")
#: The runner, as ``python -m infonce_spec.conformance`` would run it, with its threads' stacks
#: written to the file named first on SIGUSR1: a run still going after the signal says where it is.
RUNNER = (
    "import faulthandler, runpy, signal, sys; "
    "faulthandler.register(signal.SIGUSR1, file=open(sys.argv.pop(1), 'w'), all_threads=True); "
    "runpy.run_module('infonce_spec.conformance', run_name='__main__', alter_sys=True)"
)


@dataclass
class Outcome:
    """One interrupt: when, to whom, and what was wrong (``problems`` empty: all as required)."""

    delay: float
    group: bool
    returncode: int | None = None
    seconds_to_exit: float = 0.0
    problems: list[str] = field(default_factory=list)


def interrupt_once(delay: float, *, group: bool, folder: Path) -> Outcome:
    """Start the run in a new session, send SIGINT after ``delay`` seconds, check what it left."""
    out = Outcome(delay, group)
    folder.mkdir(parents=True, exist_ok=True)
    report, data = folder / "report.md", folder / "report.json"
    # the run's TMPDIR is short: the forkserver's and gloo's sockets live there, and a socket path
    # has at most 107 bytes (AF_UNIX), which a deep pytest tmp_path can exceed
    tmpdir = Path(tempfile.mkdtemp(prefix="isw-"))
    stacks = folder / "stacks.txt"
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(stacks), "run", "--no-progress",
         "--adapter", ADAPTER, "--profile", "quick", "--world-sizes", "1,2", "--timeout", "600",
         "--report", str(report), "--json", str(data), "--reproducers", str(folder / "repro")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(tmpdir), "PYTHONWARNINGS": "ignore"},
        cwd=folder,
        start_new_session=True,
    )  # fmt: skip
    try:
        time.sleep(delay)
        if proc.poll() is not None:
            out.problems.append(f"the run ended by itself before the signal (exit {proc.returncode})")
        elif group:
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGINT)
        sent = time.monotonic()
        stdout, stderr = proc.communicate(timeout=120)
        out.seconds_to_exit = time.monotonic() - sent
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGUSR1)
        time.sleep(1.0)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        where = stacks.read_text() if stacks.exists() else "(no stacks written)"
        out.problems.append(f"still running 120 s after the signal; its threads:\n{where}")
        shutil.rmtree(tmpdir, ignore_errors=True)
        return out
    out.returncode = proc.returncode
    if proc.returncode != 3:
        out.problems.append(f"exit status {proc.returncode}, not 3")
    marks = [m for m in TRACEBACK_MARKS if m in stderr]
    if marks:
        out.problems.append(f"stderr has {marks}: {stderr[-1500:]!r}")
    try:
        found = json.loads(data.read_text())
        if found.get("status") != "interrupted" or found.get("ok"):
            out.problems.append(f"JSON status {found.get('status')!r}, ok {found.get('ok')!r}")
        if any(rep.get("ok") for rep in found.get("reports", [])):
            out.problems.append("a report of the JSON says ok")
    except (OSError, ValueError) as exc:
        out.problems.append(f"no JSON report ({exc})")
    try:
        first = report.read_text().splitlines()[0]
        if "INTERRUPTED" not in first:
            out.problems.append(f"the Markdown report's first line is {first!r}")
    except (OSError, IndexError) as exc:
        out.problems.append(f"no Markdown report ({exc})")
    deadline = time.monotonic() + 10
    while live_processes(session=proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = live_processes(session=proc.pid)
    if left:
        out.problems.append(f"processes of the run left: {left}")
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    leftovers = [p.name for p in tmpdir.iterdir() if p.name.startswith(("pymp-", "infonce-conformance-"))]
    shutil.rmtree(tmpdir, ignore_errors=True)
    if leftovers:
        out.problems.append(f"left in TMPDIR: {leftovers}")
    if stdout.count("INTERRUPTED") < 1:
        out.problems.append("the terminal report does not say INTERRUPTED")
    return out


def delays(count: int, first: float = 1.0, last: float = 16.0) -> list[float]:
    """``count`` delays spread evenly over ``first`` .. ``last`` seconds."""
    if count == 1:
        return [first]
    return [round(first + i * (last - first) / (count - 1), 2) for i in range(count)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--interrupts", type=int, default=50)
    parser.add_argument("--first", type=float, default=1.0)
    parser.add_argument("--last", type=float, default=16.0)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    bad = 0
    with tempfile.TemporaryDirectory(prefix="interrupt-sweep-") as tmp:
        for i, delay in enumerate(delays(args.interrupts, args.first, args.last)):
            out = interrupt_once(delay, group=i % 2 == 0, folder=Path(tmp) / f"run{i}")
            bad += bool(out.problems)
            to = "group" if out.group else "runner"
            status = "ok" if not out.problems else "; ".join(out.problems)
            print(f"{i + 1:3d} SIGINT at {delay:5.2f} s to the {to:6s}: exit {out.returncode}, "
                  f"{out.seconds_to_exit:4.1f} s to exit: {status}", flush=True)  # fmt: skip
    print(f"{args.interrupts - bad} of {args.interrupts} interrupts as required")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
