"""Adapters of the ``rendezvous`` form (one process per rank, their own runtime) for
tests/test_rendezvous.py. No torch, no framework: the ranks meet through the standard library
(``multiprocessing.connection``) at the addresses the suite hands to ``join``, and the results are
not a loss -- they carry what each rank saw, for the harness's own contract. Load them by file path:
``tests/rendezvous_adapters.py:Meets``.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from multiprocessing.connection import Client, Listener
from pathlib import Path
from typing import Any

import numpy as np

from infonce_spec.conformance.protocol import Capabilities, LossGrads, Rendezvous

AUTHKEY = b"infonce-spec-tests"


class Meets:
    """Every rank joins a star around rank 0 in ``join``; each call is a barrier through rank 0,
    then every rank answers ``loss = rank``, ``grad_scale = world_size`` and, in ``grad_queries``,
    the coordinator's port and whether torch was imported in the rank."""

    capabilities = Capabilities(name="rendezvous-meets", data_parallel=True, collectives="rendezvous")

    def __init__(self) -> None:
        self.rendezvous: Rendezvous | None = None
        self.listener: Listener | None = None
        self.peers: list[Any] = []

    def embeddings(self, case: Any) -> Any:
        raise NotImplementedError

    def join(self, rendezvous: Rendezvous) -> None:
        self.rendezvous = rendezvous
        host, port = rendezvous.coordinator.rsplit(":", 1)
        if rendezvous.rank == 0:
            self.listener = Listener((host, int(port)), authkey=AUTHKEY)
            self.peers = [self.listener.accept() for _ in range(rendezvous.world_size - 1)]
        else:
            deadline = time.monotonic() + rendezvous.timeout
            while True:
                try:
                    self.peers = [Client((host, int(port)), authkey=AUTHKEY)]
                    break
                except ConnectionRefusedError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)

    def before_barrier(self, case: Any) -> None:
        """Where a fault goes (rank 1's own code, before the collective)."""

    def barrier(self) -> None:
        for peer in self.peers:  # rank 0 hears from everyone, then answers everyone
            (peer.recv() if self.rendezvous.rank == 0 else peer.send("here"))
        for peer in self.peers:
            (peer.send("go") if self.rendezvous.rank == 0 else peer.recv())

    def rank_embeddings(self, case: Any) -> Any:
        if case.rank == 1:
            self.before_barrier(case)
        self.barrier()
        assert self.rendezvous is not None
        port = int(self.rendezvous.coordinator.rsplit(":", 1)[1])
        seen = np.array([[port, float("torch" in sys.modules)]] * len(case.queries))
        return LossGrads(float(case.rank), seen, np.zeros_like(case.docs), float(case.world_size))


def hang() -> None:
    """Never return (an hour's sleep); first, when ``INFONCE_TEST_HANG_FOLDER`` names a folder, leave a
    file named after this process there (a test can wait for the hang to begin)."""
    folder = os.environ.get("INFONCE_TEST_HANG_FOLDER")
    if folder:
        Path(folder, str(os.getpid())).touch()
    time.sleep(3600)


class HangAtRank1(Meets):
    """Rank 1 never reaches the barrier; rank 0 waits for it there (in the standard library)."""

    def before_barrier(self, case: Any) -> None:
        hang()


class ExitAtRank1(Meets):
    def before_barrier(self, case: Any) -> None:
        os._exit(3)


class KilledAtRank1(Meets):
    def before_barrier(self, case: Any) -> None:
        os.kill(os.getpid(), signal.SIGKILL)


class RaiseAtRank1(Meets):
    """Rank 1 raises and closes its connection; rank 0 gets an EOFError from the barrier."""

    def before_barrier(self, case: Any) -> None:
        for peer in self.peers:
            peer.close()
        raise RuntimeError("rank 1 cannot gather")


class AllRefuse(Meets):
    """Every rank refuses the case (DP-5 as it should be)."""

    def rank_embeddings(self, case: Any) -> Any:
        raise ValueError("[DP-5] local batch sizes differ")


class JoinFailsAtRank1(Meets):
    def join(self, rendezvous: Rendezvous) -> None:
        if rendezvous.rank == 1:
            raise RuntimeError("no coordinator reachable")
        self.rendezvous = rendezvous
