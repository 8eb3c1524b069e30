"""Rank faults under a real ``jax.distributed`` runtime, for tests/test_frameworks.py (run in .venv-jax).

Rank 1 of the JAX example's rendezvous form raises, exits or hangs before the collective while rank 0
waits for it inside XLA (or loses its coordinator); the harness must name rank 1 each time, quickly
(the hang: within its time limit and the stack dump). Prints one JSON line per fault:
``{"fault", "kind", "rank", "seconds", "detail", "frame"}``.

    .venv-jax/bin/python tests/jax_rank_faults.py
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from jax_adapter import JaxAdapter

from infonce_spec.conformance.compare import AdapterFault
from infonce_spec.conformance.harnesses.processes import close_pools
from infonce_spec.conformance.harnesses.rendezvous import RendezvousHarness
from infonce_spec.conformance.protocol import RankCase
from infonce_spec.reference import Config

#: The harness's time limit per call here (a healthy call answers well within it once compiled).
TIMEOUT = 8


class FaultAtRank1(JaxAdapter):
    """The JAX example's rendezvous form, with ``fault`` on rank 1 before anything is gathered."""

    def __init__(self) -> None:
        super().__init__("jax-fault", data_parallel=True, collectives="rendezvous")

    def fault(self) -> None:
        raise NotImplementedError

    def rank_embeddings(self, case: RankCase) -> Any:
        if case.rank == 1:
            self.fault()
        return super().rank_embeddings(case)


class Raises(FaultAtRank1):
    def fault(self) -> None:
        raise RuntimeError("rank 1 cannot gather")


class Exits(FaultAtRank1):
    def fault(self) -> None:
        os._exit(3)


class Hangs(FaultAtRank1):
    def fault(self) -> None:
        time.sleep(3600)


raises, exits, hangs = Raises(), Exits(), Hangs()


def main() -> None:
    rng = np.random.default_rng(0)
    q, d = rng.normal(size=(4, 3)), rng.normal(size=(1, 4, 3))
    cases = [RankCase(r, 2, q[2 * r : 2 * r + 2], d[:, 2 * r : 2 * r + 2], Config()) for r in range(2)]
    try:
        for name in ("raises", "exits", "hangs"):
            harness = RendezvousHarness(f"{Path(__file__).resolve()}:{name}", 2, timeout=TIMEOUT)
            harness.start()
            start = time.monotonic()
            try:
                harness.run("rank_embeddings", cases)
                found: dict[str, Any] = {"kind": None}
            except AdapterFault as fault:
                found = {"kind": fault.kind, "rank": fault.rank, "detail": fault.detail, "frame": fault.frame}
            found.update(fault=name, seconds=time.monotonic() - start)
            print(json.dumps(found), flush=True)
            harness.close()
    finally:
        close_pools()


if __name__ == "__main__":
    main()
