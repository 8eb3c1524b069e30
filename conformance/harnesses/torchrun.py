"""Level 3 under a real multi-process launch: ``torchrun`` (or any launcher that sets ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK``).

:class:`TorchrunHarness` -- the runner is itself one rank: it initialises the default group (NCCL
when CUDA is available, else gloo), computes its own rank's case in-process, and all-gathers every
rank's result as an object, so all ranks see the same results and take the same (derandomized)
hypothesis path. A rank of torchrun ends with torchrun's agent (:mod:`..lifetime`).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Any

from ..compare import AdapterFault
from ..lifetime import Parent, end_with
from .processes import call_on_rank, rank_error_fault

__all__ = ["TorchrunHarness", "in_torchrun"]


def in_torchrun() -> bool:
    """True when launched by ``torchrun`` (or any launcher that sets RANK, WORLD_SIZE and LOCAL_RANK)."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


class TorchrunHarness:
    """In-process harness for a real multi-process launch (``torchrun``); see the module docstring."""

    def __init__(self, spec: str, *, timeout: float = 300.0) -> None:
        import torch
        import torch.distributed as dist

        from ..protocol import load_adapter

        if "TORCHELASTIC_RUN_ID" in os.environ:  # a rank of torchrun: it ends with torchrun's agent
            end_with(Parent(os.getppid(), kernel=True, forkserver=False))
        self.rank = int(os.environ["RANK"])
        self.world_size = int(os.environ["WORLD_SIZE"])
        self.local_rank = int(os.environ["LOCAL_RANK"])
        self.device = "cpu"
        backend = "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(self.local_rank)
            self.device = f"cuda:{self.local_rank}"
            backend = "nccl"
        if not dist.is_initialized():
            dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout))
        self.loaded = load_adapter(spec)
        self.adapter = self.loaded.adapter

    def run(self, method: str, cases: list[Any], *, allow_errors: bool = False) -> list[Any]:
        import torch.distributed as dist

        case = cases[self.rank]
        if hasattr(case, "device"):
            case = dataclasses.replace(case, device=self.device)
        status, payload = call_on_rank(self.adapter, self.loaded.capabilities.dtype, method, case, self.rank)
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, (status, payload))
        what = f"in {method}(case)"
        for r, (s, p) in enumerate(gathered):
            if s == "fault":
                kind, message, clause = p
                raise AdapterFault(kind, message, clause=clause, call=method, rank=r)
        errors = [p for s, p in gathered if s == "error"]
        if errors and not allow_errors:
            raise rank_error_fault(errors[0], method, what)
        return [p for _, p in gathered]

    def close(self, *, graceful: bool = True) -> None:
        """The ranks leave together (a barrier); not after an interrupt (``graceful=False``), where
        the other ranks may be gone and the barrier would wait for the group's timeout."""
        import torch.distributed as dist

        if graceful and dist.is_initialized():
            dist.barrier()
