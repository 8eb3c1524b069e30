"""CACHE-5 (loss-stage memory): a property the suite does not have yet, and the meter it needs.

CACHE-5 says the loss stage of a cached implementation SHOULD hold O(mini_batch_size x C), not
O(N x C) (C: the candidates of one query, linear in N). The check is a scaling law, so that no
constant has to be guessed: at a fixed ``mini_batch_size`` m, the peak memory of one cached training
step (every tensor the adapter allocates, inputs and encoder included, all O(N)) must grow about
linearly when N grows by a factor G; a quadratic term (a full (N x N) mask, or every chunk's graph
kept until one backward) makes it grow like G^2. Failure when the growth exceeds G^1.25 (G = 8: x13.5
against x8 for linear and x64 for quadratic; correct implementations measure N^1.00, the two
catalogue mutants N^1.68 and N^1.96); m = 1 and K = 1 keep the linear part small (query_to_doc, plus
doc_to_doc and a hardness mode where claimed: the code paths that build masks), so that a quadratic
term dominates already at N = 256.

:class:`PeakMemory` measures torch allocations on the calling thread (a ``TorchDispatchMode`` that
counts every new storage an op returns and uncounts it when the storage is freed), so it works on
CPU without allocator statistics; allocations outside torch are not seen (the property then says so
in the run's notes rather than pass silently: its verdict only covers torch adapters).

:class:`LossStageMemory` follows the suite's :class:`~..properties.base.Property` protocol but is
**not registered** (its class ``name`` is empty; instances carry :data:`NAME`): importing this module
changes no run. Run it with ``runner.run_property(LossStageMemory(), Context(loaded), profile)``, or
register it by giving the class its name.
"""

from __future__ import annotations

import gc
import math
import weakref
from typing import Any

import numpy as np
from hypothesis import strategies as st

from infonce_spec.reference import Config

from ..compare import fail
from ..properties.base import Context, Property
from ..protocol import Capabilities, EncoderCase, EncoderStep
from ..tolerances import round_to_dtype

__all__ = ["GROWTH", "MAX_EXPONENT", "NAME", "LossStageMemory", "PeakMemory", "peak_bytes"]

NAME = "cached/loss_stage_memory"
#: N grows from N1 to N1 * GROWTH; the peak may grow at most GROWTH ** MAX_EXPONENT.
N1, GROWTH, MAX_EXPONENT = 32, 8, 1.25


class PeakMemory:
    """``with PeakMemory() as meter: ...``; then ``meter.peak`` (bytes) and ``meter.ops``."""

    def __init__(self) -> None:
        self.current = 0
        self.peak = 0
        self.ops = 0
        self._tracked: set[int] = set()
        self._mode: Any = None
        self._tensor: Any = None

    def _free(self, key: int, nbytes: int) -> None:
        self._tracked.discard(key)
        self.current -= nbytes

    def _track(self, t: Any) -> None:
        storage = t.untyped_storage()  # one Python object per live storage (preserved by torch)
        key = id(storage)
        if key not in self._tracked:
            nbytes = storage.nbytes()
            self._tracked.add(key)
            self.current += nbytes
            weakref.finalize(storage, self._free, key, nbytes)

    def _seen(self, out: Any) -> None:
        self.ops += 1
        if isinstance(out, self._tensor):
            self._track(out)
        elif isinstance(out, (tuple, list)):
            for t in out:
                if isinstance(t, self._tensor):
                    self._track(t)
        if self.current > self.peak:
            self.peak = self.current

    def __enter__(self) -> PeakMemory:
        import torch
        from torch.utils._python_dispatch import TorchDispatchMode

        self._tensor = torch.Tensor

        meter = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
                out = func(*args, **(kwargs or {}))
                meter._seen(out)
                return out

        gc.collect()
        self._mode = _Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._mode.__exit__(*exc)


def peak_bytes(adapter: Any, case: EncoderCase) -> tuple[int, int]:
    """``(peak bytes, ops)`` of ``adapter.encoder(case)``."""
    with PeakMemory() as meter:
        adapter.encoder(case)
    return meter.peak, meter.ops


class LossStageMemory(Property):
    """CACHE-5 as a scaling law (see the module docstring)."""

    name = ""  # unregistered on purpose; instances are named NAME
    clauses = ("CACHE-5",)
    summary = (
        f"cached peak memory grows ~linearly in N at fixed mini_batch_size (N x{GROWTH}: at most "
        f"x{GROWTH**MAX_EXPONENT:.1f}), i.e. O(m x C) not O(N x C)"
    )
    level = "encoder"
    weight = 0.05  # the minimum of 2 examples

    def __init__(self) -> None:
        self.name = NAME  # type: ignore[misc]

    def requires(self, caps: Capabilities) -> str | None:
        return None if caps.cached else "cached"

    def draw(self, data: Any, ctx: Context) -> dict[str, Any]:
        """A fixed, mask-heavy config within the claims (only the similarity is drawn: nothing to shrink)."""
        caps = ctx.caps
        directions = ("query_to_doc", "doc_to_doc") if "doc_to_doc" in caps.directions else ("query_to_doc",)
        modes = sorted(caps.hardness_modes)
        mode = "all_negatives" if "all_negatives" in modes else (modes[0] if modes else None)
        similarity = data.draw(st.sampled_from(sorted(caps.similarities)), label="similarity")
        config = Config(
            directions=directions,
            similarity=similarity,
            hardness_mode=mode,
            hardness_strength=1.0 if mode else 0.0,
        )
        return {"config": config, "mini_batch_size": 1, "seed": 0}

    def _case(self, case: dict[str, Any], n: int, dtype: str) -> EncoderCase:
        rng = np.random.default_rng([int(case["seed"]), n])
        f = d = 2
        x = round_to_dtype(rng.standard_normal((2 * n, f)), dtype)
        w = round_to_dtype(np.eye(d, f) + 0.1 * rng.standard_normal((d, f)), dtype)
        step = EncoderStep(x[:n], x[n:].reshape(1, n, f), 1.0)
        return EncoderCase(w, (step,), case["config"], int(case["mini_batch_size"]))

    def check(self, case: dict[str, Any], ctx: Context) -> None:
        n1, n2 = N1, N1 * GROWTH
        p1, _ = peak_bytes(ctx.adapter, self._case(case, n1, ctx.dtype))
        p2, ops = peak_bytes(ctx.adapter, self._case(case, n2, ctx.dtype))
        if p1 == 0 or ops == 0:
            ctx.notes.append(f"{NAME}: no torch allocations seen; CACHE-5 not measured for this adapter")
            return
        growth = p2 / p1
        allowed = GROWTH**MAX_EXPONENT
        if growth > allowed:
            exponent = math.log(growth) / math.log(GROWTH)
            raise fail(
                "CACHE-5",
                f"peak memory of a cached step grew from {p1} to {p2} bytes (x{growth:.1f}) when N grew "
                f"{n1} -> {n2} (x{GROWTH}) at mini_batch_size {case['mini_batch_size']}: N^{exponent:.2f}; "
                f"linear (O(mini_batch_size x C)) is x{GROWTH}, allowed x{allowed:.1f}, quadratic "
                f"(O(N x C)) x{GROWTH**2}",
            )
