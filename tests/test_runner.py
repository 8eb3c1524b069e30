"""The runner's bounded shrinking: at most ``SHRINK_LIMIT`` examples after the first failure, an
earlier stop after ``SHRINK_PATIENCE`` without a smaller failing case, and the failing case with
the fewest array elements reported -- not hypothesis' own simplest case, which can be larger."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from infonce_spec.conformance.compare import fail
from infonce_spec.conformance.properties.base import Context, Property
from infonce_spec.conformance.protocol import load_adapter
from infonce_spec.conformance.runner import PROFILES, SHRINK_LIMIT, SHRINK_PATIENCE, run_property


class AlwaysFails(Property):
    """Fails on every case; the queries have ``12 - x`` rows for a drawn ``x``, so hypothesis, which
    shrinks ``x`` towards 0, ends on the largest case. Records every case it checked. (No ``name``:
    it is not registered, so no run of the suite ever sees it.)"""

    clauses = ("LOSS-1",)
    summary = "a test double"

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def draw(self, data: Any, ctx: Context) -> dict[str, Any]:
        x = data.draw(st.integers(0, 10), label="x")
        return {"queries": np.zeros((12 - x, 1))}

    def check(self, case: dict[str, Any], ctx: Context) -> None:
        self.sizes.append(int(case["queries"].size))
        raise fail("LOSS-1", "always")


def test_the_smallest_failing_case_is_reported_within_the_shrink_bounds() -> None:
    prop = AlwaysFails()
    ctx = Context(load_adapter("infonce_spec.adapters.bundled:uncached"))
    result = run_property(prop, ctx, PROFILES["ci"])
    assert result.status == "FAIL" and result.failure is not None
    assert min(prop.sizes) < prop.sizes[-1], f"hypothesis' last case is the smallest here: {prop.sizes}"
    assert result.failure.case_size == min(prop.sizes), prop.sizes
    assert len(prop.sizes) <= 1 + SHRINK_LIMIT + 1  # the first failure, the bound, a final replay
    assert SHRINK_PATIENCE < SHRINK_LIMIT
