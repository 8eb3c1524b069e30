"""Adapters that inject one fault each (for tests/test_faults.py): our torch adapter, broken once.

Load them by file path: ``tests/fault_adapters.py:HangingEmbeddings``. The data-parallel ones fail
on rank 1 only, in ``rank_embeddings`` (``rank_encoder`` is left correct, so that a later property
at the same world size shows whether the pool was replaced).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np

from infonce_spec.adapters.bundled import TorchAdapter
from infonce_spec.conformance.protocol import LossGrads


def hang() -> None:
    """Never return (an hour's sleep). When ``INFONCE_TEST_HANG_FOLDER`` names a folder, a file named
    after this process is left there first: a test can wait for the hang to begin."""
    folder = os.environ.get("INFONCE_TEST_HANG_FOLDER")
    if folder:
        Path(folder, str(os.getpid())).touch()
    time.sleep(3600)


class Uncached(TorchAdapter):
    def __init__(self, name: str = "fault-uncached") -> None:
        super().__init__(name)


class HangingEmbeddings(Uncached):
    """``embeddings`` never answers (a hang in the single-process call)."""

    def embeddings(self, case: Any) -> Any:
        hang()


class AlwaysRaising(Uncached):
    """Every computing call raises."""

    def embeddings(self, case: Any) -> Any:
        raise RuntimeError("the kernel is not implemented for this input")

    def encoder(self, case: Any) -> Any:
        raise RuntimeError("the kernel is not implemented for this input")


class ReturnsNone(Uncached):
    def embeddings(self, case: Any) -> Any:
        return None


class WrongShape(Uncached):
    """``grad_docs`` without its last row (a wrong layout of the result)."""

    def embeddings(self, case: Any) -> Any:
        out = super().embeddings(case)
        return LossGrads(out.loss, out.grad_queries, np.asarray(out.grad_docs)[:, :-1], out.grad_scale)


class Float16Results(Uncached):
    """Claims float64 but hands the gradients back in float16."""

    def embeddings(self, case: Any) -> Any:
        out = super().embeddings(case)
        return LossGrads(
            out.loss,
            np.asarray(out.grad_queries).astype(np.float16),
            np.asarray(out.grad_docs).astype(np.float16),
            out.grad_scale,
        )


class DataParallel(TorchAdapter):
    def __init__(self, name: str = "fault-data-parallel") -> None:
        super().__init__(name, data_parallel=True)

    def fault(self) -> None:
        raise NotImplementedError

    def rank_embeddings(self, case: Any) -> Any:
        if case.rank == 1:
            self.fault()
        return super().rank_embeddings(case)


class HangAtRank1(DataParallel):
    def fault(self) -> None:
        hang()


class ExitAtRank1(DataParallel):
    def fault(self) -> None:
        os._exit(3)


class KilledAtRank1(DataParallel):
    def fault(self) -> None:
        os.kill(os.getpid(), signal.SIGKILL)


class RaiseAtRank1(DataParallel):
    def fault(self) -> None:
        raise RuntimeError("rank 1 cannot gather")


class MemoryErrorAtRank1(DataParallel):
    def fault(self) -> None:
        raise MemoryError("cannot allocate the gathered embeddings")


class HangingRankEncoder(TorchAdapter):
    """Data-parallel, correct except that ``rank_encoder`` never answers on any rank (a run held in a
    data-parallel call, for the interrupt tests)."""

    def __init__(self) -> None:
        super().__init__("fault-hanging-rank-encoder", data_parallel=True)

    def rank_encoder(self, case: Any) -> Any:
        hang()


class ConstructorRaisesInWorker(DataParallel):
    """Loads in the runner, but its constructor raises in a spawned worker."""

    def __init__(self) -> None:
        if multiprocessing.parent_process() is not None:
            raise RuntimeError("no accelerator in this process")
        super().__init__("fault-constructor")


class ConstructorHangsInWorker(DataParallel):
    """Loads in the runner, but its constructor never returns in a rank (a pool that never starts)."""

    def __init__(self) -> None:
        if multiprocessing.parent_process() is not None:
            hang()
        super().__init__("fault-constructor-hangs")


class ExitInEmbeddings(Uncached):
    """The single-process call kills its own process."""

    def embeddings(self, case: Any) -> Any:
        os._exit(7)


class OnlyRank1Refuses(DataParallel):
    """Rank 1 raises ValueError; rank 0 waits for it in a collective (a DP-5 violation, not a fault)."""

    def rank_embeddings(self, case: Any) -> Any:
        import torch.distributed as dist

        if case.rank == 1:
            raise ValueError("[DP-5] local batch sizes differ")
        dist.barrier()
        return super().rank_embeddings(case)
