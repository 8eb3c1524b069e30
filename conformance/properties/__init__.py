"""The properties, one module per chapter of the spec.

* :mod:`.reference`     -- loss and gradients equal the exact reference (QD, QQ, DQ, DD, PART, HARD, SCALE-2).
* :mod:`.hardness`      -- where h goes: positive exempt, selection per mode (HARD-3 .. HARD-5).
* :mod:`.invariances`   -- metamorphic relations (LOSS-1/-2, LAYOUT-3, SIM-1/-2, DIR-2, HARD-6).
* :mod:`.masks`         -- masked entries contribute exactly nothing (MASK-*, GRAD-2).
* :mod:`.numerics`      -- large logits and the cos eps (NUM-1, GRAD-3).
* :mod:`.validation`    -- invalid inputs raise (VAL-1).
* :mod:`.cached`        -- linear encoder end to end, GradCache against its own uncached path
  (GRAD-1, CACHE-1 .. CACHE-4), loss-stage memory (CACHE-5; meter in :mod:`.memory`).
* :mod:`.data_parallel` -- W ranks over gloo or torchrun (DP-1 .. DP-5).
"""

from .base import REGISTRY, Context, Outputs, Property, properties

__all__ = ["REGISTRY", "Context", "Outputs", "Property", "properties"]
