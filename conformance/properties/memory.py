"""The peak-memory meter of CACHE-5 (:class:`~.cached.LossStageMemory`): torch allocations only.

:class:`PeakMemory` measures torch allocations on the calling thread (a ``TorchDispatchMode`` that
counts every new storage an op returns and uncounts it when the storage is freed), so it works on
CPU without allocator statistics. Allocations outside torch (NumPy, JAX, a C++ extension that
allocates behind torch's back) are not seen: the property runs only for adapters that claim
``Capabilities.torch_memory``, and says so in the run's notes if it saw nothing.

torch wraps a mode's ``__torch_dispatch__`` in ``torch._dynamo``'s ``disable`` (so that a compiling
adapter does not trace into it), which imports ``torch._dynamo`` on the first op (about 1.5 s of CPU
in each call worker) and adds a wrapper to every op. Where ``torch._dynamo`` is not imported nothing
can be compiling, so the meter's mode goes without the wrapper; what it counts is the same.
"""

from __future__ import annotations

import gc
import sys
import weakref
from typing import Any

from ..protocol import EncoderCase

__all__ = ["PeakMemory", "peak_bytes"]


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

        compiling_possible = "torch._dynamo" in sys.modules

        class _Mode(TorchDispatchMode):
            @classmethod
            def _should_skip_dynamo(cls) -> bool:
                return compiling_possible  # torch's default (True) where torch._dynamo is loaded

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
    """``(peak bytes, ops)`` of ``adapter.encoder(case)`` (measured in the adapter's worker process
    when it runs in one: :class:`~infonce_spec.conformance.isolation.IsolatedAdapter`)."""
    if callable(getattr(type(adapter), "peak_bytes", None)):
        return adapter.peak_bytes(case)
    with PeakMemory() as meter:
        adapter.encoder(case)
    return meter.peak, meter.ops
