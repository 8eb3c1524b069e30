"""RNG snapshots for replaying a mini-batch's forward pass (clause CACHE-3).

The cached loss embeds every mini-batch twice: once without a graph, once with. Dropout (and any
other random op) must draw the same numbers both times, so the RNG state before the first pass is
captured and restored around the second. CPU and CUDA generators are covered (the CUDA devices
of the batch's tensors and the current device, when CUDA is initialised); other device types'
generators are not replayed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from .batching import iter_tensors

__all__ = ["RngSnapshot"]


def _cuda_devices(batch: Any) -> list[int]:
    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
        return []
    devices = {t.device.index for t in iter_tensors(batch) if t.is_cuda and t.device.index is not None}
    devices.add(torch.cuda.current_device())
    return sorted(devices)


@dataclass(frozen=True)
class RngSnapshot:
    """The CPU RNG state and the states of the CUDA devices in use, at capture time."""

    cpu_state: torch.Tensor
    cuda_devices: tuple[int, ...]
    cuda_states: tuple[torch.Tensor, ...]

    @classmethod
    def capture(cls, batch: Any) -> RngSnapshot:
        devices = tuple(_cuda_devices(batch))
        states = tuple(torch.cuda.get_rng_state(d) for d in devices)
        return cls(cpu_state=torch.get_rng_state(), cuda_devices=devices, cuda_states=states)

    @contextmanager
    def replay(self) -> Iterator[None]:
        """Run the block with the captured states; the global RNG state is restored afterwards."""
        with torch.random.fork_rng(devices=list(self.cuda_devices), device_type="cuda"):
            torch.set_rng_state(self.cpu_state)
            for device, state in zip(self.cuda_devices, self.cuda_states, strict=True):
                torch.cuda.set_rng_state(state, device)
            yield
