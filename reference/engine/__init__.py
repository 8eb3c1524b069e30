"""The reference's engine: the same loss and gradients as :mod:`infonce_spec.reference.normative`,
computed for speed and bounded memory.

Held or streamed N x N similarity products, row chunks on a pool of worker threads, transposed
gradient accumulators, strided masks, the hardness multiplier and an in-place pullback
(:mod:`.products`, :mod:`.threads`, :mod:`.rows`, :mod:`.partition`, :mod:`.pullback`,
:mod:`.loss`); the matrices it reads transposed have padded rows (:mod:`.padding`), and its
working arrays are kept from one call to the next within a bound (:mod:`.workspace`). It agrees
with the normative reference to rounding; the oracle families of ``tests/`` run on both.
:func:`infonce_spec.reference.loss_and_grad` calls it for large batches.
"""

from .loss import CHUNK_ELEMENTS, MIN_CHUNK_ROWS, chunk_bounds, loss_and_grad
from .products import HELD_ELEMENTS, PRODUCT_MODES, ProductMode

__all__ = [
    "CHUNK_ELEMENTS",
    "HELD_ELEMENTS",
    "MIN_CHUNK_ROWS",
    "PRODUCT_MODES",
    "ProductMode",
    "chunk_bounds",
    "loss_and_grad",
]
