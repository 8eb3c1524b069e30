"""Level 3 for torch: one worker process per rank in a ``gloo`` process group the suite sets up.

:class:`GlooHarness` -- a :class:`~.processes.RankPool` whose ranks are forked from the forkserver
(which has pre-imported torch and the adapter's module: a spawn per worker would re-import torch each
time) and import the adapter by its ``package.module:attribute`` name. The parent binds a
``TCPStore`` to port 0 (the OS picks a free port; no probe-then-bind race); each rank joins the
default ``gloo`` group over it with a timeout, then computes its own rank's case. A peer's error from
the group (its innermost frame in ``torch.distributed``) or a rank waiting there is never the verdict.
"""

from __future__ import annotations

import contextlib
import datetime
from typing import Any

from ..isolation import last_frame
from ..lifetime import Parent
from . import RankError
from .processes import RankPool, load_on_rank, mp_context, not_started, serve_rank

__all__ = ["GlooHarness"]


def _worker_main(
    spec: str,
    rank: int,
    world: int,
    port: int,
    timeout: float,
    tasks: Any,
    results: Any,
    dump: str,
    origin: Parent,
) -> None:
    """One rank: load the adapter (:func:`~.processes.load_on_rank`), join the group, then run
    ``(seq, method, case)`` tasks until ``None``."""
    loaded = load_on_rank(spec, rank, results, dump, origin)  # first: end_with(origin)
    if loaded is None:
        return
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    try:
        store = dist.TCPStore("127.0.0.1", port, world, False, timeout=datetime.timedelta(seconds=timeout))
        dist.init_process_group(
            "gloo", store=store, rank=rank, world_size=world, timeout=datetime.timedelta(seconds=timeout)
        )
    except BaseException as exc:
        not_started(results, rank, "start", exc)
        return
    results.put((rank, -1, "ready", None))
    serve_rank(loaded, rank, tasks, results)
    with contextlib.suppress(Exception):
        dist.destroy_process_group()


def _in_torch_distributed(frame: str) -> bool:
    return "torch/distributed/" in frame.replace("\\", "/")


class GlooHarness(RankPool):
    """``W`` gloo workers running one adapter (see the module docstring and :class:`RankPool`)."""

    target = _worker_main
    joining = "join the process group"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._store: Any = None

    def context(self) -> Any:
        return mp_context(self.spec)

    def meeting(self, group_timeout: float) -> list[Any]:
        """The ``TCPStore``'s port, bound here (port 0: the OS picks a free one) for every rank."""
        import torch.distributed as dist

        self._store = dist.TCPStore(
            "127.0.0.1",
            0,
            self.world_size + 1,
            True,
            timeout=datetime.timedelta(seconds=group_timeout),
            wait_for_workers=False,
        )
        return [self._store.port] * self.world_size

    def closed(self) -> None:
        self._store = None

    def collateral(self, error: RankError) -> bool:
        """A closed connection, a collective timeout: raised in ``torch.distributed``."""
        frame = last_frame(error.traceback) or ""
        return error.type_name.startswith("Dist") or _in_torch_distributed(frame)

    def waits_for_peer(self, stack: str | None) -> bool:
        """The hung rank's innermost frame waits in ``torch.distributed``."""
        for line in (stack or "").splitlines():
            if line.lstrip().startswith("File "):
                return _in_torch_distributed(line)
        return False
