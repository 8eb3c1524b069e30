"""Level 3 in one process on W devices: the adapter's own collectives, any framework (DP-1 .. DP-5).

JAX (``shard_map`` / ``pmap`` over host devices), TensorFlow (``MirroredStrategy`` over logical
devices) and others run data parallelism as one process driving W devices. :class:`DevicesHarness`
hands such an adapter the W local batches of one global batch in one call --
``devices_embeddings(cases)`` / ``devices_encoder(cases)``, ``cases`` the W
:class:`~..protocol.RankCase` / :class:`~..protocol.RankEncoderCase` in rank order -- and takes back
the W per-rank results. The properties and their verdicts are those of the gloo harness.

The call goes to the adapter's single-process worker (:func:`~..isolation.isolated`): the same time
limit, crash and output handling as level 1, one verdict per call. One process cannot show which
rank hung or died, so such a fault is about the call (``rank=None``); a result of the wrong type,
count or dtype names its rank. A ``ValueError``/``TypeError`` the call raises is, with
``allow_errors`` (DP-5), every rank's refusal: with one process, one refusal stops every rank.
"""

from __future__ import annotations

from typing import Any

from ..compare import AdapterFault
from ..isolation import adapter_frame, check_result_dtypes, isolated, portable
from . import RankError

__all__ = ["METHODS", "DevicesHarness"]

#: The harness method the properties call -> the adapter method that runs every rank at once.
METHODS: dict[str, str] = {"rank_embeddings": "devices_embeddings", "rank_encoder": "devices_encoder"}


def _traceback(exc: BaseException) -> str:
    """The adapter's traceback text (from its worker when it ran there)."""
    cause = exc.__cause__
    text = getattr(cause, "text", None)
    return text if isinstance(text, str) else ""


class DevicesHarness:
    """W ranks as one call of the adapter's ``devices_*`` method (see the module docstring)."""

    def __init__(self, loaded: Any, world_size: int) -> None:
        self.loaded = loaded
        self.world_size = world_size
        self.restarts = 0
        self.device = f"{world_size} device{'s' if world_size > 1 else ''} (the adapter's collectives)"

    def run(self, method: str, cases: list[Any], *, allow_errors: bool = False) -> list[Any]:
        call = METHODS[method]
        w = len(cases)
        try:
            outs = getattr(isolated(self.loaded), call)(tuple(cases))
        except AdapterFault:
            self.restarts += 1
            raise
        except Exception as exc:
            name = type(exc).__name__
            if allow_errors and isinstance(exc, (ValueError, TypeError)):
                tb = _traceback(exc)
                return [RankError(r, name, True, str(exc), tb) for r in range(w)]
            raise AdapterFault(
                "memory" if isinstance(exc, MemoryError) else "exception",
                f"{call}() raised {name}: {exc} (all {w} ranks in one call)",
                call=call,
                frame=adapter_frame(exc),
            ) from None
        if not isinstance(outs, (list, tuple)) or len(outs) != w:
            got = f"{len(outs)} results" if isinstance(outs, (list, tuple)) else type(outs).__name__
            raise AdapterFault(
                "output",
                f"{call}() returned {got} for W = {w} ranks (expected one result per rank)",
                call=call,
            )
        claimed = self.loaded.capabilities.dtype
        results = []
        for r, out in enumerate(outs):
            out = portable(out)
            check_result_dtypes(out, claimed, call, rank=r)
            results.append(out)
        return results

    def close(self, *, graceful: bool = True) -> None:
        """Nothing of its own to stop: the call worker is the adapter's, stopped at the end of the run."""
