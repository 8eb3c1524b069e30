"""Replay a reproducer: the stored case through the same property check, against an adapter.

``infonce-conformance replay failure.npz [--adapter mod:attr]`` -- the adapter defaults to the one
that failed. Data-parallel cases start a gloo pool of the stored world size. Exit status 1 if the
failure reproduces, 0 if the case now passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .cases import load_case
from .compare import AdapterFault, ConformanceFailure, PremiseFailure
from .harnesses import open_harness
from .harnesses.processes import end_of_run
from .properties.base import REGISTRY, Context, properties
from .protocol import load_adapter

__all__ = ["ReplayResult", "replay"]


@dataclass(frozen=True)
class ReplayResult:
    """``failed``: the check failed again; ``clause`` and ``message`` say how."""

    property: str
    adapter: str
    failed: bool
    clause: str | None
    message: str


def replay(path: str | Path, adapter: str | None = None, *, timeout: float = 60.0) -> ReplayResult:
    """Run the stored case of ``path`` through its property's check against ``adapter``."""
    case, meta = load_case(path)
    properties()  # register every property
    prop = REGISTRY[meta["property"]]()
    spec = adapter or meta["adapter"]
    loaded = load_adapter(spec)
    harness = None
    world = meta.get("world_size") or 1
    if prop.level == "data_parallel":
        harness = open_harness(loaded, int(world), timeout=timeout)
    ctx = Context(loaded, harness=harness, world_size=int(world))
    try:
        prop.check(case, ctx)
    except PremiseFailure as exc:
        return ReplayResult(
            prop.name, spec, True, exc.clause, f"[premise not met: {exc.clause}] {exc.detail}"
        )
    except ConformanceFailure as exc:
        return ReplayResult(prop.name, spec, True, exc.clause, exc.detail)
    except AdapterFault as exc:
        where = f" (rank {exc.rank})" if exc.rank is not None else ""
        return ReplayResult(
            prop.name, spec, True, exc.clause, f"adapter fault ({exc.kind}){where}: {exc.detail}"
        )
    except Exception as exc:
        return ReplayResult(
            prop.name, spec, True, None, f"adapter fault: the adapter raised {type(exc).__name__}: {exc}"
        )
    finally:
        if harness is not None:
            harness.close()
        end_of_run()
    return ReplayResult(prop.name, spec, False, None, "the case passes")
