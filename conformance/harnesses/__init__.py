"""How level 3 (data parallel, DP-1 .. DP-5) runs: one small interface, one harness per form.

The data-parallel properties (:mod:`..properties.data_parallel`) and the runner speak only
:class:`Harness`: hand it one case per rank, get one result per rank back (or one
:class:`RankError` per rank that refused, with ``allow_errors``); anything else is one
:class:`~..compare.AdapterFault`. :func:`open_harness` picks the harness from the adapter's
``Capabilities.collectives``:

* ``"torch"`` -- :class:`.gloo.GlooHarness` (one worker process per rank in a gloo group the suite
  sets up) or, under ``torchrun``, :class:`.torchrun.TorchrunHarness` (the runner is one rank);
* ``"rendezvous"`` -- :class:`.rendezvous.RendezvousHarness`: one spawned worker process per rank,
  no torch; each rank's adapter joins the others with its own runtime (``jax.distributed``, TF
  multi-worker) at the :class:`~..protocol.Rendezvous` the suite hands it;
* ``"devices"`` -- :class:`.devices.DevicesHarness`: one process, the adapter runs the W ranks on W
  devices with its own framework's collectives.

The one-process-per-rank harnesses share :class:`.processes.RankPool` (start, time limits, the
root rank of a failure, no orphans) and the forkserver (:mod:`.processes`). The single-process call
worker that runs levels 1 and 2 is :mod:`..isolation`.

:func:`check_level3` runs at load time: a claim whose harness needs a framework that is not
installed is a load error naming what to install (exit status 2), never an adapter fault.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Protocol

from ..protocol import AdapterLoadError, Capabilities

__all__ = ["Harness", "RankError", "check_level3", "open_harness"]


@dataclass(frozen=True)
class RankError:
    """An exception raised by the adapter on one rank (sent back instead of a result)."""

    rank: int
    type_name: str
    value_or_type_error: bool
    message: str
    traceback: str


class Harness(Protocol):
    """What the data-parallel properties and the runner need of a harness."""

    #: Where the ranks compute, as the report prints it (``cpu``, ``cuda:0``, ``4 devices``).
    device: str
    #: How often a fault made the harness start afresh.
    restarts: int

    def run(self, method: str, cases: list[Any], *, allow_errors: bool = False) -> list[Any]:
        """``method`` (``rank_embeddings`` or ``rank_encoder``) on every rank's case; results in rank
        order. With ``allow_errors`` a rank's ``ValueError``/``TypeError`` comes back as a
        :class:`RankError` (DP-5); every other failure raises an ``AdapterFault``."""
        ...

    def close(self, *, graceful: bool = True) -> None:
        """Stop what the harness started (no process left behind)."""
        ...


def check_level3(caps: Capabilities, *, torchrun: bool = False) -> str | None:
    """Why the claimed level 3 cannot run here (what to install or change), or ``None``."""
    if not caps.data_parallel:
        return None
    if caps.collectives in ("devices", "rendezvous"):
        if torchrun:
            return (
                f"it claims data_parallel with collectives={caps.collectives!r} (the suite starts "
                "the ranks itself): run it without torchrun"
            )
        return None
    if importlib.util.find_spec("torch") is None:
        return (
            "it claims data_parallel with collectives='torch' (one process per rank in a "
            "torch.distributed group), which needs torch: pip install torch; or run the ranks with "
            "your framework's own collectives: claim collectives='rendezvous' (join(rendezvous), "
            "one process per rank) or collectives='devices' (devices_embeddings/devices_encoder, "
            "W devices in one process)"
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
    if loaded.capabilities.collectives == "rendezvous":
        from .rendezvous import RendezvousHarness

        return RendezvousHarness(loaded.spec, world_size, timeout=timeout)
    if torchrun:
        from .torchrun import TorchrunHarness

        return TorchrunHarness(loaded.spec, timeout=max(timeout, 300.0))
    from .gloo import GlooHarness

    return GlooHarness(loaded.spec, world_size, timeout=timeout)
