"""CACHE-5 (loss-stage memory): moved into the suite; this module re-exports it for old imports.

The property is :class:`~..properties.cached.LossStageMemory` (registered as
``cached/loss_stage_memory``, run for adapters that claim ``cached`` and ``torch_memory``); the meter
is :mod:`..properties.memory`.
"""

from __future__ import annotations

from ..properties.cached import GROWTH, MAX_EXPONENT, N1, LossStageMemory
from ..properties.memory import PeakMemory, peak_bytes

__all__ = ["GROWTH", "MAX_EXPONENT", "N1", "NAME", "LossStageMemory", "PeakMemory", "peak_bytes"]

NAME = LossStageMemory.name
