"""Clean interrupts: SIGINT, SIGTERM and ``--max-time`` stop the run and everything it started (exit 3).

:func:`guarded_run` wraps one command of ``infonce-conformance``. Inside it a signal only **records a
request** (:func:`request`); it never raises from the frame it lands in. Wherever the signal
arrives -- hypothesis' internals, a ``gc`` callback, torch's lazy imports, the start of a worker
pool -- nothing is unwound half-way and nothing swallows it. The runner asks at **safe points**
(:func:`check`: before each property, before each example, in every wait for an adapter call or a
rank, before an adapter fault is recorded), and there :class:`Interrupted` (a
``KeyboardInterrupt``) is raised: the run unwinds through its ``finally`` blocks, the data-parallel
pools and the call workers are stopped (terminate, kill, join), the forkserver is stopped, and the
command line writes the partial report of what finished. The per-run deadline ``--max-time`` is
the same request, made by the clock (:func:`set_deadline`).

A second signal at least :data:`FORCE_AFTER` seconds after the first, while the run has not yet
reached a safe point (an adapter computing in process, with ``INFONCE_CONFORMANCE_ISOLATION=0``),
raises at once. Once the run is stopping (or its verdict is settled, :func:`settle`), further
signals are ignored, so the cleanup cannot be cut short. On the way out (interrupted or not) the
guard stops every worker that is still alive, collects the closed queues (their semaphores are
unlinked from shared memory) and stops multiprocessing's resource tracker; multiprocessing removes
its ``pymp-*`` folder when the interpreter exits. Nothing of the run is left running.
:func:`guarded_run` also sets the time limit of every adapter call (``--timeout``,
:func:`~.isolation.set_call_timeout`).

The worker processes never see the terminal's Ctrl-C: the forkserver, call workers and ranks
start with SIGINT blocked (:func:`children_ignore_sigint`), so that the forkserver cannot die
half-way through importing torch and no worker's start-up prints a traceback, and then ignore it
(:func:`~.isolation.prepare_worker`).
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

__all__ = [
    "FORCE_AFTER",
    "Interrupted",
    "check",
    "children_ignore_sigint",
    "guarded_run",
    "pending",
    "request",
    "set_deadline",
    "settle",
    "shutdown",
    "stop_resource_tracker",
]

SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: Seconds the end of a run waits for multiprocessing's resource tracker to exit before killing it.
TRACKER_WAIT = 5.0
#: A second signal this many seconds after the first forces the stop where no safe point comes
#: (``timeout -s INT`` delivers one signal to the process and one to its group, at once).
FORCE_AFTER = 1.0


class Interrupted(KeyboardInterrupt):
    """The run was stopped: ``reason`` is ``SIGINT``, ``SIGTERM`` or ``--max-time N s``."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.signal_name = reason
        super().__init__(f"interrupted by {reason}")


class _State:
    """The request (first reason and when), the deadline, and whether the run is stopping."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.since = 0.0
        self.deadline: float | None = None
        self.max_time = 0.0
        self.stopping = False


_state = _State()


def request(reason: str) -> None:
    """Ask the run to stop at its next safe point (the first reason is kept)."""
    if _state.reason is None:
        _state.reason, _state.since = reason, time.monotonic()


def set_deadline(seconds: float | None) -> None:
    """Stop the run ``seconds`` from now (``--max-time``); ``None``: no deadline."""
    if seconds is not None and not seconds > 0:
        raise ValueError(f"--max-time must be > 0 seconds, got {seconds!r}")
    _state.deadline = None if seconds is None else time.monotonic() + seconds
    _state.max_time = seconds or 0.0


def pending() -> str | None:
    """The reason the run should stop (a signal, or the deadline passed), or ``None``."""
    if _state.reason is None and _state.deadline is not None and time.monotonic() >= _state.deadline:
        request(f"--max-time {_state.max_time:g} s")
    return _state.reason


def check() -> None:
    """A safe point: raise :class:`Interrupted` if the run was asked to stop."""
    reason = pending()
    if reason is not None:
        _state.stopping = True
        raise Interrupted(reason)


def settle() -> str | None:
    """The results are in: return the pending reason, if any, and ignore every later signal (the
    reports about to be written say what the run did; the command exits right after)."""
    reason = pending()
    _state.stopping = True
    return reason


@contextlib.contextmanager
def children_ignore_sigint() -> Iterator[None]:
    """Processes started inside the block never see SIGINT: they start with it blocked, a signal
    mask that ``fork`` and ``exec`` both keep, so a Ctrl-C that reaches them while they start up
    stays pending until they ignore it (the forkserver once it has imported torch, call workers and
    ranks in :func:`~.isolation.prepare_worker`; setting ``SIG_IGN`` discards it) -- it can neither
    kill the forkserver half-way through importing torch nor print a ``KeyboardInterrupt``
    traceback from a worker's start-up.

    Only this thread blocks SIGINT meanwhile; the process's handler stays in place, so a SIGINT
    that arrives in the block is never lost: delivered to another thread, it runs the handler as
    usual (Python handlers run in the main thread); with no such thread, it stays pending and
    reaches the handler when the block ends. (An earlier form also set ``SIG_IGN`` in this process
    for the block, which discarded a SIGINT that the kernel gave to another thread meanwhile.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # multiprocessing starts its resource tracker with the first spawned or forkserver child, and
    # unblocks SIGINT in this thread once that is done: started here first, it is already running.
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def shutdown(*, resource_tracker: bool = True) -> None:
    """Stop every worker, pool and forkserver of this process; then (``resource_tracker``) unlink
    the closed queues' semaphores and stop multiprocessing's resource tracker. Inside a
    :func:`~.harnesses.processes.shared_forkserver` block (a program that calls the command line in
    process) the forkserver and the resource tracker are the block's, and stop at its end."""
    from .harnesses.processes import end_of_run

    stopped = end_of_run()
    gc.collect()  # closed queues: their semaphores are unlinked by their finalizers
    if resource_tracker and stopped:
        stop_resource_tracker()


def stop_resource_tracker(wait: float = TRACKER_WAIT) -> None:
    """Stop multiprocessing's resource tracker of this process: close its pipe -- it exits once
    every writer has closed its copy, after unlinking what is still registered -- and reap it. A
    tracker still running after ``wait`` seconds (some process still holds a copy of the pipe) is
    killed rather than waited for: the run's end never hangs on it. (multiprocessing's own stop
    waits for it without a limit.)"""
    from multiprocessing import resource_tracker

    tracker = resource_tracker._resource_tracker
    lock = getattr(tracker, "_lock", None)
    with lock if lock is not None else contextlib.nullcontext():
        fd, pid = getattr(tracker, "_fd", None), getattr(tracker, "_pid", None)
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.close(fd)
        tracker._fd = tracker._pid = None
    if pid is None:
        return
    deadline = time.monotonic() + wait
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(pid, os.WNOHANG)[0] == 0:
            if time.monotonic() >= deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return
            time.sleep(0.02)


def _handler(signum: int, frame: Any) -> None:
    """Record the request; force the stop only on a later signal while no safe point came."""
    name = signal.Signals(signum).name
    if _state.stopping:
        return
    if _state.reason is not None and time.monotonic() - _state.since >= FORCE_AFTER:
        _state.stopping = True
        raise Interrupted(_state.reason)
    request(name)


@contextlib.contextmanager
def guarded_run(timeout: float | None = None, max_time: float | None = None) -> Iterator[None]:
    """Run a command with SIGINT/SIGTERM (and ``max_time`` seconds) as a stop request and a clean
    stop (see the module docstring); ``timeout`` is the time limit of every adapter call
    (``None``: unchanged)."""
    from .isolation import call_timeout, set_call_timeout

    previous_timeout = call_timeout()
    if timeout is not None:
        set_call_timeout(timeout)
    global _state
    _state = _State()
    set_deadline(max_time)
    main = threading.current_thread() is threading.main_thread()
    saved: dict[int, Any] = {}
    if main:
        for sig in SIGNALS:
            saved[sig] = signal.signal(sig, _handler)
    try:
        yield
    finally:
        if main:
            for sig in SIGNALS:
                signal.signal(sig, signal.SIG_IGN)
        try:
            shutdown()
        finally:
            set_call_timeout(previous_timeout)
            _state = _State()
            for sig, handler in saved.items():
                signal.signal(sig, handler)
