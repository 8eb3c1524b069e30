"""How level 3 (data parallel, DP-1 .. DP-5) runs: one small interface, one harness per form.

The data-parallel properties (:mod:`..properties.data_parallel`) speak only :class:`Harness`: hand it
one case per rank, get one result per rank back (or one :class:`~..distributed.RankError` per rank
that refused, with ``allow_errors``); anything else is one :class:`~..compare.AdapterFault`.
:func:`open_harness` picks the harness from the adapter's ``Capabilities.collectives``:

* ``"torch"`` -- :class:`~..distributed.GlooHarness` (one worker process per rank in a gloo group
  the suite sets up) or, under ``torchrun``, :class:`~..distributed.TorchrunHarness`;
* ``"devices"`` -- :class:`.devices.DevicesHarness`: one process, the adapter runs the W ranks on W
  devices with its own framework's collectives. Nothing on this path imports torch.

:func:`check_level3` runs at load time: a claim whose harness needs a framework that is not
installed is a load error naming what to install (exit status 2), never an adapter fault.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Protocol

from ..protocol import AdapterLoadError, Capabilities

__all__ = ["Harness", "check_level3", "open_harness"]


class Harness(Protocol):
    """What the data-parallel properties and the runner need of a harness."""

    #: Where the ranks compute, as the report prints it (``cpu``, ``cuda:0``, ``4 devices``).
    device: str
    #: How often a fault made the harness start afresh.
    restarts: int

    def run(self, method: str, cases: list[Any], *, allow_errors: bool = False) -> list[Any]:
        """``method`` (``rank_embeddings`` or ``rank_encoder``) on every rank's case; results in rank
        order. With ``allow_errors`` a rank's ``ValueError``/``TypeError`` comes back as a
        :class:`~..distributed.RankError` (DP-5); every other failure raises an ``AdapterFault``."""
        ...

    def close(self, *, graceful: bool = True) -> None:
        """Stop what the harness started (no process left behind)."""
        ...


def check_level3(caps: Capabilities, *, torchrun: bool = False) -> str | None:
    """Why the claimed level 3 cannot run here (what to install or change), or ``None``."""
    if not caps.data_parallel:
        return None
    if caps.collectives == "devices":
        if torchrun:
            return (
                "it claims data_parallel with collectives='devices' (every rank in one process): "
                "run it without torchrun"
            )
        return None
    if importlib.util.find_spec("torch") is None:
        return (
            "it claims data_parallel with collectives='torch' (one process per rank in a "
            "torch.distributed group), which needs torch: pip install torch; or implement "
            "devices_embeddings/devices_encoder and claim collectives='devices' to run the ranks "
            "with your framework's own collectives"
        )
    return None


def open_harness(loaded: Any, world_size: int, *, timeout: float, torchrun: bool = False) -> Harness:
    """The harness for ``loaded`` (a :class:`~..protocol.LoadedAdapter`) at ``world_size`` ranks;
    :class:`~..protocol.AdapterLoadError` when :func:`check_level3` says it cannot run here."""
    missing = check_level3(loaded.capabilities, torchrun=torchrun)
    if missing is not None:
        raise AdapterLoadError(f"cannot run adapter {loaded.spec!r} at level 3: {missing}")
    if loaded.capabilities.collectives == "devices":
        from .devices import DevicesHarness

        return DevicesHarness(loaded, world_size)
    from ..distributed import GlooHarness, TorchrunHarness

    if torchrun:
        return TorchrunHarness(loaded.spec, timeout=max(timeout, 300.0))
    return GlooHarness(loaded.spec, world_size, timeout=timeout)
