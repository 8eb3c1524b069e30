"""The names this module had before the harnesses got their package (:mod:`.harnesses`).

The torch harnesses are :mod:`.harnesses.gloo` and :mod:`.harnesses.torchrun`, the forkserver and the
one-process-per-rank pool :mod:`.harnesses.processes`; :class:`RankError` lives in :mod:`.harnesses`.
Importing from here keeps working.
"""

from __future__ import annotations

from .compare import AdapterFault
from .harnesses import RankError
from .harnesses.gloo import GlooHarness
from .harnesses.processes import (
    close_pools,
    end_of_run,
    mp_context,
    no_main_reimport,
    shared_forkserver,
    stop_forkserver,
)
from .harnesses.torchrun import TorchrunHarness, in_torchrun

__all__ = [
    "GlooHarness",
    "HarnessError",
    "RankError",
    "TorchrunHarness",
    "close_pools",
    "end_of_run",
    "in_torchrun",
    "mp_context",
    "no_main_reimport",
    "shared_forkserver",
    "stop_forkserver",
]

#: The name older callers import: every fault of a harness is an :class:`AdapterFault`.
HarnessError = AdapterFault
