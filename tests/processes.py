"""Processes as /proc shows them, for the tests that check a run leaves nothing behind (Linux)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["forkserver_pid", "helper_pids", "live_processes"]


def live_processes(*, parent: int | None = None, session: int | None = None) -> list[int]:
    """Live (not zombie) processes whose parent is ``parent`` or whose session is ``session``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, ppid, _pgrp, sid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:4]
        except (OSError, ValueError):
            continue
        if state != "Z" and (int(ppid) == parent or int(sid) == session):
            pids.append(int(entry.name))
    return pids


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
