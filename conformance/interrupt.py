"""Clean interrupts: SIGINT and SIGTERM stop the run and everything it started (exit status 3).

:func:`guarded_run` wraps one command of ``infonce-conformance``. Inside it both signals raise
:class:`Interrupted` (a ``KeyboardInterrupt``) in the main thread, so the run unwinds through its
``finally`` blocks: the data-parallel pools and the single-process workers are stopped (terminate,
kill, join), the forkserver is stopped, and the command line writes the partial report of what
finished. A second signal during that cleanup is ignored, so the cleanup cannot be cut short. On
the way out (interrupted or not) the guard stops every worker that is still alive, collects the
closed queues (their semaphores are unlinked from shared memory) and stops multiprocessing's
resource tracker; multiprocessing removes its ``pymp-*`` folder when the interpreter exits. Nothing
of the run is left running. :func:`guarded_run` also sets the time limit of every adapter call
(``--timeout``, :func:`~.isolation.set_call_timeout`).
"""

from __future__ import annotations

import contextlib
import gc
import signal
import threading
from collections.abc import Iterator
from typing import Any

from .isolation import call_timeout, set_call_timeout

__all__ = ["Interrupted", "guarded_run", "shutdown"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal (``signal_name``: ``SIGINT`` or ``SIGTERM``)."""

    def __init__(self, signal_name: str) -> None:
        self.signal_name = signal_name
        super().__init__(f"interrupted by {signal_name}")


def shutdown(*, resource_tracker: bool = True) -> None:
    """Stop every worker, pool and forkserver of this process; then (``resource_tracker``) unlink
    the closed queues' semaphores and stop multiprocessing's resource tracker. Inside a
    :func:`~.distributed.shared_forkserver` block (a program that calls the command line in
    process) the forkserver and the resource tracker are the block's, and stop at its end."""
    from .distributed import end_of_run

    stopped = end_of_run()
    gc.collect()  # closed queues: their semaphores are unlinked by their finalizers
    if resource_tracker and stopped:
        from multiprocessing import resource_tracker as tracker

        stop = getattr(tracker._resource_tracker, "_stop", None)
        if stop is not None:
            with contextlib.suppress(Exception):
                stop()


@contextlib.contextmanager
def guarded_run(timeout: float | None = None) -> Iterator[None]:
    """Run a command with SIGINT/SIGTERM as :class:`Interrupted` and a clean stop (see the module
    docstring); ``timeout`` is the time limit of every adapter call (``None``: unchanged)."""
    previous_timeout = call_timeout()
    if timeout is not None:
        set_call_timeout(timeout)
    main = threading.current_thread() is threading.main_thread()
    saved: dict[int, Any] = {}
    seen: list[str] = []

    def interrupt(signum: int, frame: Any) -> None:
        if seen:
            return  # already stopping: let the cleanup finish
        seen.append(signal.Signals(signum).name)
        raise Interrupted(seen[0])

    if main:
        for sig in SIGNALS:
            saved[sig] = signal.signal(sig, interrupt)
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
            for sig, handler in saved.items():
                signal.signal(sig, handler)
