"""Processes as /proc shows them, for the tests that check a run leaves nothing behind (Linux)."""

from __future__ import annotations

import time
from pathlib import Path

__all__ = [
    "command_line",
    "descendants",
    "forkserver_pid",
    "helper_pids",
    "live_processes",
    "session_left",
]


def _live() -> dict[int, tuple[int, int]]:
    """Every live (not zombie) process: ``{pid: (parent, session)}``."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, ppid, _pgrp, sid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:4]
        except (OSError, ValueError):
            continue
        if state != "Z":
            table[int(entry.name)] = (int(ppid), int(sid))
    return table


def live_processes(*, parent: int | None = None, session: int | None = None) -> list[int]:
    """Live (not zombie) processes whose parent is ``parent`` or whose session is ``session``."""
    return [pid for pid, (ppid, sid) in _live().items() if ppid == parent or sid == session]


def descendants(pid: int) -> list[int]:
    """Live processes that descend from ``pid``: its children, their children, and so on (also
    those that started a session of their own)."""
    table = _live()
    found: list[int] = []
    parents = {pid}
    while parents:
        children = [p for p, (ppid, _) in table.items() if ppid in parents and p not in found]
        found += children
        parents = set(children)
    return found


def session_left(session: int, seconds: float) -> list[int]:
    """The live processes of ``session`` once none is left or ``seconds`` have passed, whichever
    comes first (a run in a session of its own: ``start_new_session=True``)."""
    deadline = time.monotonic() + seconds
    while (left := live_processes(session=session)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def command_line(pid: int) -> str:
    """A process's command line, for a message ("" once it is gone)."""
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def forkserver_pid() -> int | None:
    """This process's forkserver, if one runs (the test session keeps one on purpose,
    tests/conftest.py; it exits with this process)."""
    from multiprocessing import forkserver

    return getattr(forkserver._forkserver, "_forkserver_pid", None)


def helper_pids() -> set[int]:
    """The children this process keeps on purpose: the forkserver and multiprocessing's resource
    tracker (a per-interpreter singleton that exits with its parent)."""
    from multiprocessing import resource_tracker

    return {
        pid for pid in (forkserver_pid(), getattr(resource_tracker._resource_tracker, "_pid", None)) if pid
    }
