"""Level 3 for any framework, one process per rank: the adapter's own runtime joins the ranks.

JAX (``jax.distributed.initialize``) and TensorFlow (multi-worker, ``TF_CONFIG``) run data parallelism
across processes with their own rendezvous and collectives. :class:`RendezvousHarness` -- a
:class:`~.processes.RankPool` whose W ranks are *spawned* (a fresh interpreter: nothing of the runner
is inherited, no torch is imported, and a runtime the adapter's module starts at import starts in the
rank itself) -- hands each rank a :class:`~..protocol.Rendezvous` through the adapter's
``join(rendezvous)``, once per rank process, then sends ``rank_embeddings`` / ``rank_encoder`` cases
as the gloo harness does: the same properties, verdicts (DP-1 .. DP-5), reproducers and replay.

The ports are picked by the parent (bound to port 0, so the OS chooses free ones, then released for
the ranks' runtimes to bind); a start that fails because one was taken in between is retried once
with fresh ports. Faults stay one verdict about the root rank: a rank's error raised inside the
framework's runtime that speaks of the connection to its peers (:data:`PEER_WORDS`) is collateral,
as is a hung rank whose innermost frame is in an installed library (it waits in a collective); an
adapter's own hang or error is the root.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import socket
from typing import Any

from ..compare import AdapterFault
from ..isolation import library_frame
from ..lifetime import Parent
from ..protocol import Rendezvous
from . import RankError
from .processes import RankPool, load_on_rank, not_started, serve_rank

__all__ = ["PEER_WORDS", "RendezvousHarness", "free_ports"]

#: Words in an error (its type name and message) raised inside the runtime that mean "a peer went
#: away or did not come" (gloo's and gRPC's words, and Python's EOFError / BrokenPipeError /
#: Connection*Error of a closed socket).
PEER_WORDS: tuple[str, ...] = (
    "gloo",
    "eof",
    "broken",
    "reset",
    "refused",
    "connection",
    "connect",
    "peer",
    "socket",
    "timed out",
    "timeout",
    "deadline_exceeded",
    "unavailable",
    "heartbeat",
    "barrier",
    "closed",
)


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct TCP ports that were free a moment ago (all bound at once to port 0)."""
    with contextlib.ExitStack() as stack:
        sockets = [
            stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)
        ]
        for s in sockets:
            s.bind((host, 0))
        return [int(s.getsockname()[1]) for s in sockets]


def _worker_main(
    spec: str,
    rank: int,
    world: int,
    rendezvous: Rendezvous,
    timeout: float,
    tasks: Any,
    results: Any,
    dump: str,
    origin: Parent,
) -> None:
    """One rank: load the adapter (:func:`~.processes.load_on_rank`), ``join(rendezvous)``, then run
    tasks until ``None``; ``leave()`` (when the adapter has one) on the way out."""
    loaded = load_on_rank(spec, rank, results, dump, origin)
    if loaded is None:
        return
    try:
        loaded.adapter.join(rendezvous)
    except BaseException as exc:
        not_started(results, rank, "start", exc)
        return
    results.put((rank, -1, "ready", None))
    serve_rank(loaded, rank, tasks, results)
    leave = getattr(loaded.adapter, "leave", None)
    if callable(leave):
        with contextlib.suppress(Exception):
            leave()


def _innermost_is_library(entries: list[str]) -> bool:
    return bool(entries) and library_frame(entries[0])


def _file_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.lstrip().startswith('File "')]


class RendezvousHarness(RankPool):
    """``W`` spawned ranks whose adapter joins them with its own runtime (see the module docstring)."""

    target = _worker_main
    joining = "join the others (its join(rendezvous) raised)"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.device = "one process per rank (the adapter's runtime)"

    def context(self) -> Any:
        return multiprocessing.get_context("spawn")

    def meeting(self, group_timeout: float) -> list[Any]:
        """One :class:`~..protocol.Rendezvous` per rank: a coordinator port and one port per rank."""
        coordinator, *own = free_ports(self.world_size + 1)
        addresses = tuple(f"127.0.0.1:{port}" for port in own)
        return [
            Rendezvous(r, self.world_size, f"127.0.0.1:{coordinator}", addresses, group_timeout)
            for r in range(self.world_size)
        ]

    def start(self, method: str = "rank_embeddings") -> None:
        """Start the ranks; once more with fresh ports when a port was taken in between."""
        try:
            super().start(method)
        except AdapterFault as fault:
            if "in use" not in fault.detail.lower():
                raise
            super().start(method)

    def collateral(self, error: RankError) -> bool:
        """Raised inside the runtime (an installed library's frame innermost), about the peers."""
        innermost = _file_lines(error.traceback)[-1:]
        text = f"{error.type_name} {error.message}".lower()
        return _innermost_is_library(innermost) and any(word in text for word in PEER_WORDS)

    def waits_for_peer(self, stack: str | None) -> bool:
        """The hung rank's innermost frame is in an installed library (a collective), not the adapter's."""
        return _innermost_is_library(_file_lines(stack or "")[:1])
