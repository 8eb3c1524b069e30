"""Workers end with the runner, however the runner ends (SIGKILL, the OOM killer, a CI time limit).

Every process the suite starts calls :func:`end_with` first, with the :class:`Parent` that the
runner described before starting it. From then on the process ends when its parent is gone:

* On Linux the kernel sends it ``SIGKILL`` when its parent exits (``PR_SET_PDEATHSIG``, set through
  ``prctl``). This costs nothing while the parent lives, and it works while the worker's main thread
  is stuck in adapter code, even in C code that holds the GIL.
* Elsewhere, and where the parent started the worker from a thread other than its main thread, a
  watchdog thread compares the parent's PID with the expected one every :data:`WATCH_INTERVAL`
  seconds; once it changes, the watchdog ends its own process with ``os._exit``. Exiting ends every
  thread of the process, torch's and gloo's included. The kernel's signal is not used there because
  it follows the thread that started the worker, not the whole parent process.
* The parent may die before the worker has set either of them. So :func:`end_with` then checks that
  the parent is still the expected one, and exits at once if it is not.

The ranks and the forkserver's call workers are children of multiprocessing's forkserver, not of
the runner. The forkserver therefore ends with the runner too: it imports this module first among
its preloads (:func:`.harnesses.processes.mp_context`), and that import asks the kernel to kill the forkserver when the
runner dies; if the runner is already gone by then, the forkserver exits at once. The forkserver's
children then die with it. Where the kernel's signal is missing, the forkserver follows the standard
library's rule: it exits when every copy of its "alive" pipe is closed. The runner holds one copy,
and each forkserver child closes the copy it was handed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["ORPHANED_EXIT", "WATCH_INTERVAL", "Parent", "end_with"]

#: Seconds between two looks of the watchdog thread at its parent's PID.
WATCH_INTERVAL = 0.5

#: The exit status of a worker that ends because its parent is gone. It is the status a shell
#: reports for a process killed by ``SIGKILL``, the signal the kernel sends on Linux.
ORPHANED_EXIT = 128 + 9

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


@dataclass(frozen=True)
class Parent:
    """The process a worker must not outlive, as the runner describes it before starting the worker.

    ``pid`` is the worker's direct parent: the runner, or the forkserver for a worker taken from
    it. ``kernel`` says whether Linux's parent-death signal can be used. The kernel sends that
    signal when the thread that started the worker exits, so it is used only for workers that the
    runner's main thread or the single-threaded forkserver starts. ``forkserver`` says whether the
    worker comes from the forkserver.
    """

    pid: int
    kernel: bool
    forkserver: bool

    @classmethod
    def of(cls, ctx: Any) -> Parent:
        """The parent of a worker that this process is about to start from the multiprocessing
        context ``ctx``. For a forkserver context, the forkserver is started first if it is not
        running, so that its PID is known."""
        if ctx.get_start_method() == "forkserver":
            from multiprocessing import forkserver

            forkserver.ensure_running()
            return cls(forkserver._forkserver._forkserver_pid, kernel=True, forkserver=True)
        on_main_thread = threading.current_thread() is threading.main_thread()
        return cls(os.getpid(), kernel=on_main_thread, forkserver=False)


def end_with(parent: Parent) -> None:
    """In a worker, first thing: end this process when ``parent`` is gone (see the module docstring).

    Exits at once with :data:`ORPHANED_EXIT` when the parent is already gone.
    """
    if parent.forkserver:
        _close_alive_pipe()
    if not (parent.kernel and _kill_with_parent()):
        _watch(parent.pid)
    if os.getppid() != parent.pid:
        os._exit(ORPHANED_EXIT)


def _kill_with_parent() -> bool:
    """Ask Linux to send this process ``SIGKILL`` when its parent exits. True when that is set."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


_watched: set[int] = set()


def _watch(parent_pid: int) -> None:
    """Start the watchdog thread: it ends this process once its parent's PID is no longer
    ``parent_pid``. One thread per parent is enough, so a second call does nothing."""
    if parent_pid in _watched:
        return
    _watched.add(parent_pid)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(WATCH_INTERVAL)
        os._exit(ORPHANED_EXIT)

    threading.Thread(target=watch, name="infonce-conformance-watchdog", daemon=True).start()


def _close_alive_pipe() -> None:
    """In a forkserver child: close the copy of the forkserver's "alive" pipe that the child was
    handed. The forkserver exits when every copy is closed, so after this only the runner keeps it
    running."""
    from multiprocessing import forkserver

    fd = forkserver._forkserver._forkserver_alive_fd
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)
        forkserver._forkserver._forkserver_alive_fd = None


def _forkserver_arguments() -> dict[str, Any] | None:
    """The arguments of multiprocessing's forkserver ``main`` while it imports this module among its
    preloads, else ``None``. A forkserver child that imports the module has the forkserver's frames
    on its stack too, but under ``_serve_one``."""
    server = sys.modules.get("multiprocessing.forkserver")
    main_code = getattr(getattr(server, "main", None), "__code__", None)
    serve_one_code = getattr(getattr(server, "_serve_one", None), "__code__", None)
    if main_code is None:
        return None
    frames = []
    frame = sys._getframe()
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    if any(f.f_code is serve_one_code for f in frames):
        return None
    main = next((f for f in frames if f.f_code is main_code), None)
    return None if main is None else dict(main.f_locals)


def _listening_process(fd: int) -> int | None:
    """The PID of the process that made the Unix socket ``fd`` listen, as Linux reports it for a
    listening socket (``SO_PEERCRED``); ``None`` where that is not available."""
    import socket
    import struct

    try:
        with socket.socket(fileno=os.dup(fd)) as listener:
            cred = listener.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (OSError, AttributeError):
        return None
    return struct.unpack("3i", cred)[0] or None


def _end_forkserver_with_runner() -> None:
    """When this import is one of a forkserver's preloads: ask the kernel to kill the forkserver
    when the runner dies, and exit now if the runner is already gone. The runner made the
    forkserver's socket listen before starting it, so the socket names the runner."""
    arguments = _forkserver_arguments()
    if arguments is None or not _kill_with_parent():
        return
    listener = arguments.get("listener_fd")
    runner = None if listener is None else _listening_process(listener)
    if runner is not None and os.getppid() != runner:
        os._exit(ORPHANED_EXIT)


_end_forkserver_with_runner()
