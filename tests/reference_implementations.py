"""The reference's implementations that the oracle families check: the normative one and the engine.

``infonce_spec.reference.loss_and_grad`` picks one of them by size; the oracle families
(tests/test_reference_mpmath.py, tests/test_reference_finite_differences.py,
tests/test_reference_torch_direct.py) run every entry here, so both meet the same bounds.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from infonce_spec.reference import Config, Result, engine, normative

__all__ = ["IMPLEMENTATIONS"]

#: name -> ``loss_and_grad(queries, docs, config)``: the normative reference, and the engine with its
#: square products held whole (in the calling thread) and streamed by chunk (chunks of 2 rows on
#: 3 workers, so that chunking and the thread pool are exercised).
IMPLEMENTATIONS: dict[str, Callable[[Any, Any, Config], Result]] = {
    "normative": normative.loss_and_grad,
    "engine-held": partial(engine.loss_and_grad, products="held", threads=1),
    "engine-streamed": partial(engine.loss_and_grad, chunk_size=2, products="streamed", threads=3),
}
