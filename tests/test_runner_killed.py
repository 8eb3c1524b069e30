"""The runner killed outright: no process of its run outlives it (conformance/lifetime.py).

A CI time limit, the OOM killer or ``kill -9`` end the runner with SIGKILL, which it cannot handle.
Each scenario below is one command line run in a session of its own, killed with SIGKILL at a set
moment: while an adapter call hangs, or while the data-parallel pool starts. The adapters in
``tests/fault_adapters.py`` leave a file when they begin to hang, so the moment is certain. The
scenarios run at the same time in one module fixture (:func:`killed_runs`); each test then checks
that nothing of its run was left 5 s after the kill.

The watchdog thread, used where the kernel's parent-death signal is not, is checked on its own with
a small script whose worker is started from a thread other than the main thread.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from infonce_spec.conformance.lifetime import ORPHANED_EXIT, WATCH_INTERVAL
from tests.processes import command_line, descendants, live_processes, session_left

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

FAULTS = Path(__file__).resolve().parent / "fault_adapters.py"
#: How long the processes of a killed run may take to go (the acceptance bound of the issue).
GONE_WITHIN = 5.0
RUN = ["-m", "infonce_spec.conformance", "run", "--no-progress", "--profile", "quick", "--timeout", "600"]
TORCHRUN = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1"]


RENDEZVOUS = Path(__file__).resolve().parent / "rendezvous_adapters.py"


def _run(
    adapter: str,
    world_size: int | None,
    select: str,
    launcher: list[str] | None = None,
    module: Path = FAULTS,
) -> list[str]:
    sizes = [] if world_size is None else ["--world-sizes", str(world_size)]
    return [*(launcher or []), *RUN, "--adapter", f"{module}:{adapter}", *sizes, "--select", select]


@dataclass(frozen=True)
class Scenario:
    """A command (the arguments of ``python``) and the moment it is killed: when an adapter starts
    to hang (``"hang"``) or when the forkserver process appears (``"forkserver"``). ``processes`` is
    how many processes the run has at least by then (the killed one included), so that the check is
    not about an empty run."""

    command: list[str]
    kill_when: str
    processes: int


SCENARIOS = {
    # the runner and its forked call worker
    "single-process call hangs": Scenario(_run("HangingEmbeddings", 1, "reference/query_to_doc"), "hang", 2),
    # the runner, the resource tracker, the forkserver and W ranks
    "rank 1 of 2 hangs": Scenario(_run("HangAtRank1", 2, "data_parallel/embeddings"), "hang", 5),
    "rank 1 of 3 hangs": Scenario(_run("HangAtRank1", 3, "data_parallel/embeddings"), "hang", 6),
    "the ranks hang while loading the adapter": Scenario(
        _run("ConstructorHangsInWorker", 2, "data_parallel/embeddings"), "hang", 5
    ),
    # the runner and W spawned ranks of the rendezvous form (no forkserver, no torch)
    "rendezvous: rank 1 of 2 hangs": Scenario(
        _run("HangAtRank1", 2, "data_parallel/embeddings", module=RENDEZVOUS), "hang", 3
    ),
    # the runner and the forkserver, which is importing torch
    "the forkserver is starting": Scenario(
        _run("HangAtRank1", 2, "data_parallel/embeddings"), "forkserver", 2
    ),
    # torchrun's agent and its rank (a runner in a session of its own), which hangs in a call
    "torchrun's agent, its rank hangs": Scenario(
        _run("HangingRankEncoder", None, "data_parallel/encoder", TORCHRUN), "hang", 2
    ),
}


@dataclass
class Killed:
    """A run killed with SIGKILL: its processes just before the kill, those still alive
    :data:`GONE_WITHIN` seconds after it (or when the last one went), and the run's output."""

    before: dict[int, str]
    left: dict[int, str]
    seconds: float
    output: str


def _moment_came(scenario: Scenario, session: int, hangs: Path) -> bool:
    if scenario.kill_when == "hang":
        return any(hangs.iterdir())
    return any("multiprocessing.forkserver" in command_line(pid) for pid in live_processes(session=session))


def _of_run(pid: int) -> dict[int, str]:
    """The processes of the run of ``pid``: its session and its descendants, with their command lines."""
    return {p: command_line(p) for p in {pid, *live_processes(session=pid), *descendants(pid)}}


@pytest.fixture(scope="module")
def killed_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Killed]]:
    """Every scenario's run started at once, each killed at its moment and then watched until
    nothing of it is left or :data:`GONE_WITHIN` seconds have passed."""
    runs = {}
    for name, scenario in SCENARIOS.items():
        tmp = tmp_path_factory.mktemp("killed-run")
        hangs = tmp / "hangs"
        hangs.mkdir()
        log = tmp / "output.txt"
        env = {**os.environ, "TMPDIR": str(tmp), "INFONCE_TEST_HANG_FOLDER": str(hangs)}
        with log.open("w") as out:
            proc = subprocess.Popen(
                [sys.executable, *scenario.command],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=tmp,
                start_new_session=True,
            )
        runs[name] = (proc, hangs, log)
    killed: dict[str, Killed] = {}
    killed_at: dict[str, float] = {}
    try:
        deadline = time.monotonic() + 180  # many interpreters import torch at once on a loaded machine
        watching = set(runs)
        while watching and time.monotonic() < deadline:
            for name in sorted(watching):
                proc, hangs, log = runs[name]
                if name not in killed_at:
                    if _moment_came(SCENARIOS[name], proc.pid, hangs) or proc.poll() is not None:
                        before = _of_run(proc.pid)
                        proc.send_signal(signal.SIGKILL)
                        proc.wait()
                        killed_at[name] = time.monotonic()
                        killed[name] = Killed(before, {}, 0.0, "")
                    continue
                run = killed[name]
                alive = {p: command_line(p) for p in live_processes(session=proc.pid)}
                alive |= {p: run.before[p] for p in run.before if command_line(p) == run.before[p]}
                seconds = time.monotonic() - killed_at[name]
                if not alive or seconds >= GONE_WITHIN:
                    run.left, run.seconds, run.output = alive, seconds, log.read_text()
                    watching.discard(name)
            time.sleep(0.05)
        yield killed
    finally:
        for name, (proc, _, _) in runs.items():  # nothing of these runs outlives the tests
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            before = killed[name].before if name in killed else {}
            for pid in {*live_processes(session=proc.pid), *before}:
                if command_line(pid) == before.get(pid, command_line(pid)):
                    with contextlib.suppress(OSError):  # gone in the meantime
                        os.kill(pid, signal.SIGKILL)


@pytest.mark.distributed
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_nothing_of_a_run_outlives_its_runner_killed_by_sigkill(
    name: str, killed_runs: dict[str, Killed]
) -> None:
    assert name in killed_runs, f"the run never reached its moment ({SCENARIOS[name].kill_when})"
    run = killed_runs[name]
    assert len(run.before) >= SCENARIOS[name].processes, (run.before, run.output)
    assert run.left == {}, f"left {run.seconds:.1f} s after the runner was killed: {run.left}\n{run.output}"


# -- the pieces, in small scripts ---------------------------------------------------------------------
def _python(code: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,  # type: ignore[arg-type]
    )


def test_a_worker_whose_parent_is_already_gone_exits_at_once() -> None:
    """The parent can die before the worker asked to end with it: the worker then exits by itself."""
    proc = _python(
        """
        import os
        from infonce_spec.conformance.lifetime import Parent, end_with
        end_with(Parent(os.getppid() + 1, kernel=True, forkserver=False))
        print("still running")
        """
    )
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, out) == (ORPHANED_EXIT, ""), err


def test_importing_the_module_changes_nothing_outside_a_forkserver() -> None:
    """Only a forkserver that preloads the module asks to die with its parent; a runner does not."""
    proc = _python(
        """
        import ctypes, signal
        import infonce_spec.conformance.lifetime
        libc = ctypes.CDLL(None)
        sig = ctypes.c_int(-1)
        assert libc.prctl(2, ctypes.byref(sig), 0, 0, 0) == 0  # PR_GET_PDEATHSIG
        print(sig.value)
        """
    )
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.strip() == "0"


WATCHED = """
import multiprocessing, os, sys, threading, time
from infonce_spec.conformance.lifetime import Parent, end_with

def worker(origin):
    end_with(origin)
    time.sleep(3600)  # the main thread is stuck, as in a hung adapter call

def start():  # from a thread that then ends: the kernel's signal would follow that thread
    ctx = multiprocessing.get_context("fork")
    origin = Parent.of(ctx)
    assert not origin.kernel
    proc = ctx.Process(target=worker, args=(origin,), daemon=True)
    proc.start()
    print(proc.pid, flush=True)

thread = threading.Thread(target=start)
thread.start()
thread.join()
time.sleep(3600)
"""


def test_the_watchdog_ends_a_worker_started_from_another_thread() -> None:
    """A worker started from a thread other than the main thread is watched by a thread of its own:
    it outlives the thread that started it, and ends soon after the parent is killed."""
    proc = _python(WATCHED, start_new_session=True)
    try:
        assert proc.stdout is not None
        worker = int(proc.stdout.readline())
        time.sleep(2 * WATCH_INTERVAL)  # the starting thread has ended; the worker stays
        assert worker in live_processes(session=proc.pid)
        proc.kill()
        proc.wait()
        assert session_left(proc.pid, 4 * WATCH_INTERVAL + 1) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in live_processes(session=proc.pid):
            os.kill(pid, signal.SIGKILL)
