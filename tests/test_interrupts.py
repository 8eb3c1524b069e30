"""Interrupted is its own verdict, and an interrupt is never lost.

The reports of an interrupted run (SIGINT, SIGTERM, ``--max-time``) say INTERRUPTED before anything
else and never "conformant" or ``"ok": true``; a signal is a request the runner acts on at its next
safe point (:mod:`infonce_spec.conformance.interrupt`), so it reaches the runner whatever code is
running, with no traceback. The sweep here sends SIGINT at a few moments of a run (a process each);
``python -m tests.interrupt_sweep --interrupts 50`` is the full sweep, run on demand.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from infonce_spec.conformance import cli, interrupt
from infonce_spec.conformance.protocol import Capabilities
from infonce_spec.conformance.report import to_json, to_markdown
from infonce_spec.conformance.runner import PropertyResult, RunReport, run_adapter
from tests.interrupt_sweep import delays, interrupt_once

HERE = Path(__file__).resolve()
CLI_TESTS = HERE.with_name("test_conformance_cli.py")


def _partial(reason: str | None = "SIGINT") -> RunReport:
    """A report with one passing property and one the interrupt left unrun."""
    done = PropertyResult("reference/query_to_doc", ("QD-1",), "", "embeddings", "pass", examples=8)
    left = PropertyResult(
        "numerics/large_logits", ("NUM-1",), "", "embeddings", "not run", reason=reason or ""
    )
    return RunReport("m:A", Capabilities(name="a"), "quick", (), [done], 1.5, stopped=reason, not_run=[left])


def test_an_interrupted_report_says_interrupted_first_and_never_ok() -> None:
    rep = _partial()
    assert rep.interrupted == "SIGINT" and rep.status == "interrupted" and not rep.ok
    text = to_markdown([rep])
    first, *_ = text.splitlines()
    assert first == "# infonce-spec conformance report: INTERRUPTED (SIGINT)"
    assert "## `m:A` (a): INTERRUPTED" in text and "PASS" not in text
    data = to_json([rep])
    assert data["status"] == "interrupted" and data["ok"] is False
    assert data["reports"][0]["status"] == "interrupted" and data["reports"][0]["ok"] is False
    assert data["reports"][0]["not_run"] == [
        {"property": "numerics/large_logits", "world_size": None, "clauses": ["NUM-1"], "reason": "SIGINT"}
    ]
    verdicts = {c: v for c, _, v, _ in rep.clause_verdicts()}
    assert verdicts["QD-1"] == "pass" and verdicts["NUM-1"] == "not run (SIGINT)"


def test_the_summary_line_of_an_interrupted_run_has_no_verdict() -> None:
    outcome = cli.RunOutcome(reports=[_partial()], interrupted="SIGINT", not_started=["m:B"], seconds=2.0)
    line = cli.summary_line(outcome)
    assert line.startswith("INTERRUPTED: no verdict (SIGINT); finished: 0 of 2 adapters")
    assert "m:A (1 properties not run)" in line and "not started: m:B" in line
    assert "conformant" not in line and outcome.exit_code == cli.ExitCode.INTERRUPTED


def test_a_signal_is_a_request_acted_on_at_the_next_safe_point() -> None:
    """Inside the guard a signal raises nothing where it lands; :func:`interrupt.check` raises."""
    with interrupt.guarded_run():
        signal.raise_signal(signal.SIGINT)  # the handler runs here: it only records the request
        assert interrupt.pending() == "SIGINT"
        with pytest.raises(interrupt.Interrupted) as info:
            interrupt.check()
        assert info.value.reason == "SIGINT"
        signal.raise_signal(signal.SIGINT)  # stopping: ignored
    assert interrupt.pending() is None  # the guard's end forgets it


def test_a_sigint_while_children_start_reaches_the_handler() -> None:
    """Starting children blocks SIGINT in the starting thread only and leaves the process's handler
    in place: a SIGINT the kernel gives to another thread meanwhile runs the handler (a form that
    set SIG_IGN for the start discarded it: an interrupt lost)."""
    seen: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    ready, stop = threading.Event(), threading.Event()
    other = threading.Thread(target=lambda: (ready.set(), stop.wait(30)), daemon=True)
    other.start()
    ready.wait(30)
    try:
        with interrupt.children_ignore_sigint():
            assert other.ident is not None
            signal.pthread_kill(other.ident, signal.SIGINT)
            time.sleep(0.05)
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
        assert seen == [signal.SIGINT]
    finally:
        stop.set()
        other.join(30)
        signal.signal(signal.SIGINT, previous)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc/PID/status")
def test_a_child_started_in_the_block_never_sees_sigint() -> None:
    """A child started inside the block has SIGINT blocked from its first instruction (the mask
    survives fork and exec): a Ctrl-C that reaches it while it starts up stays pending, harmless."""
    with interrupt.children_ignore_sigint():
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.2)
        blocked = next(
            int(line.split()[1], 16)
            for line in Path(f"/proc/{child.pid}/status").read_text().splitlines()
            if line.startswith("SigBlk:")
        )
        assert blocked & (1 << (signal.SIGINT - 1)), f"SigBlk {blocked:#x}"
        os.kill(child.pid, signal.SIGINT)
        time.sleep(0.3)
        assert child.poll() is None, "the child died of SIGINT"
    finally:
        child.kill()
        child.wait(30)
    assert not signal.pthread_sigmask(signal.SIG_BLOCK, set()) & {signal.SIGINT}, "the mask is restored"


_FORKSERVER_UNDER_SIGINT = """
import multiprocessing, os, signal, sys, time
from multiprocessing import forkserver
from infonce_spec.conformance.interrupt import children_ignore_sigint
if __name__ == "__main__":
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch"])
    with children_ignore_sigint():
        forkserver.ensure_running()
    server = forkserver._forkserver._forkserver_pid
    time.sleep(0.5)
    os.kill(server, signal.SIGINT)  # while it imports torch
    worker = context.Process(target=time.sleep, args=(0,))
    worker.start()
    worker.join(120)
    if forkserver._forkserver._forkserver_pid != server:
        sys.exit("the forkserver died of the SIGINT and was started again")
    sys.exit(worker.exitcode)
"""


def test_a_forkserver_started_in_the_block_survives_sigint_while_importing_torch(tmp_path: Path) -> None:
    """The forkserver's start also starts multiprocessing's resource tracker, which unblocks SIGINT
    in the starting thread: the block starts the tracker first, so the forkserver still starts
    with SIGINT blocked and a Ctrl-C in the middle of its torch import leaves it serving."""
    script = tmp_path / "forkserver_under_sigint.py"
    script.write_text(_FORKSERVER_UNDER_SIGINT)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "KeyboardInterrupt" not in done.stderr, done.stderr[-2000:]


_TRACKER_HELD_OPEN = """
import os, sys, time
from multiprocessing import resource_tracker
from infonce_spec.conformance.interrupt import stop_resource_tracker
if __name__ == "__main__":
    resource_tracker.ensure_running()
    tracker = resource_tracker._resource_tracker._pid
    holder = os.fork()
    if holder == 0:  # keeps its copy of the tracker's pipe open
        time.sleep(60)
        os._exit(0)
    start = time.monotonic()
    stop_resource_tracker(wait=1.0)
    took = time.monotonic() - start
    os.kill(holder, 9)
    os.waitpid(holder, 0)
    alive = os.path.exists(f"/proc/{tracker}")
    sys.exit(0 if took < 10 and not alive else f"took {took:.1f} s, tracker alive {alive}")
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks a holder of the pipe")
def test_the_resource_tracker_stop_never_hangs(tmp_path: Path) -> None:
    """The tracker exits only once every writer of its pipe has closed it; a process that kept a
    copy would make multiprocessing's own stop wait forever. The run's stop waits a bounded time,
    then kills it."""
    script = tmp_path / "tracker_held_open.py"
    script.write_text(_TRACKER_HELD_OPEN)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]


def test_fail_fast_leaves_clauses_not_run() -> None:
    """Clauses that only the properties after the early stop cover read "not run (--fail-fast)"."""
    rep = run_adapter(
        f"{CLI_TESTS}:BrokenSelfMask", profile="quick", world_sizes=(), reproducer_dir=None, fail_fast=True
    )
    assert rep.stopped == "--fail-fast" and rep.interrupted is None and not rep.ok
    assert rep.not_run and all(r.reason == "--fail-fast" for r in rep.not_run)
    verdicts = {c: v for c, _, v, _ in rep.clause_verdicts()}
    assert "not run (--fail-fast)" in verdicts.values(), verdicts
    assert "not checked" not in {verdicts[c] for r in rep.not_run for c in r.clauses}


def test_max_time_stops_the_run_with_a_partial_report(tmp_path: Path) -> None:
    """``--max-time`` is the same stop request, made by the clock: exit 3 and the partial reports."""
    code = cli.main(
        [
            "run",
            "--adapter",
            f"{CLI_TESTS}:NumpyQueryToQuery",
            "--profile",
            "ci",
            "--max-time",
            "0.5",
            "--json",
            str(tmp_path / "r.json"),
            "--report",
            str(tmp_path / "r.md"),
            "--no-progress",
        ]
    )
    assert code == cli.ExitCode.INTERRUPTED
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["status"] == "interrupted" and data["ok"] is False
    assert data["interrupted_by"] == "--max-time 0.5 s"
    (rep,) = data["reports"]
    assert rep["not_run"] and all(p["reason"] == "--max-time 0.5 s" for p in rep["not_run"])
    assert (
        (tmp_path / "r.md")
        .read_text()
        .startswith("# infonce-spec conformance report: INTERRUPTED (--max-time 0.5 s)")
    )


@pytest.mark.distributed
def test_sigint_at_several_moments_of_a_run(tmp_path: Path) -> None:
    """A few moments of the sweep (interpreter start-up and imports, single-process properties,
    the forkserver's and the pool's start, the data-parallel examples, a hung rank): every time
    exit 3, an interrupted report and JSON, no traceback, nothing left running."""
    outcomes = [
        interrupt_once(delay, group=i % 2 == 0, folder=tmp_path / f"run{i}")
        for i, delay in enumerate(delays(4, 1.0, 10.0))
    ]
    assert [(o.delay, o.problems) for o in outcomes if o.problems] == []
