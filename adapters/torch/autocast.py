"""Autocast handling: the loss stage opts out; the cached re-embedding replays the first pass's state.

Under ``torch.autocast`` a matrix product would silently run in float16/bfloat16. The loss stage
(similarities, logits, logsumexp) therefore runs with autocast disabled, in the precision of
:func:`~.layout.compute_dtype` (at least float32), whatever the caller's context. The encoder is
the caller's business: the cached loss records the autocast state of its first (no-graph) pass
and re-enters it for the second pass in backward, which usually runs outside the autocast block,
so both passes compute the same function (CACHE-1, CACHE-3).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

__all__ = ["AutocastState", "loss_stage_precision"]

_DEVICE_TYPES = ("cpu", "cuda")


@contextlib.contextmanager
def loss_stage_precision(device: torch.device) -> Iterator[None]:
    """Disable autocast for the loss stage on ``device`` (a no-op where autocast does not apply)."""
    try:
        context = torch.autocast(device_type=device.type, enabled=False)
    except RuntimeError:  # a device type without autocast support
        context = contextlib.nullcontext()
    with context:
        yield


@dataclass(frozen=True)
class AutocastState:
    """Whether autocast was on, and with which dtype, for the CPU and CUDA device types."""

    states: tuple[tuple[str, bool, torch.dtype | None], ...]
    cache_enabled: bool

    @classmethod
    def capture(cls) -> AutocastState:
        states = []
        for device_type in _DEVICE_TYPES:
            try:
                enabled = torch.is_autocast_enabled(device_type)
                dtype = torch.get_autocast_dtype(device_type) if enabled else None
            except (TypeError, AttributeError, RuntimeError):  # torch < 2.4 or no such backend
                enabled, dtype = False, None
            states.append((device_type, enabled, dtype))
        return cls(states=tuple(states), cache_enabled=torch.is_autocast_cache_enabled())

    @contextlib.contextmanager
    def replay(self) -> Iterator[None]:
        """Run the block under the captured autocast state (enabled or disabled, per device type)."""
        with contextlib.ExitStack() as stack:
            for device_type, enabled, dtype in self.states:
                if enabled:
                    stack.enter_context(
                        torch.autocast(device_type=device_type, dtype=dtype, cache_enabled=self.cache_enabled)
                    )
                elif device_type == "cpu" or torch.cuda.is_available():
                    stack.enter_context(torch.autocast(device_type=device_type, enabled=False))
            yield
