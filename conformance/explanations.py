"""What the implementation computes instead: each root cause's failing cases against the known mistakes.

After a run, for every root cause that breaks a clause (an adapter fault has nothing to explain), the
adapter's outputs on the level-1 cases that established it are tried against the known mistakes of
:mod:`.mistakes` -- every mistake that applies to the claimed configuration, with its parameters
fitted from the cases where it has any. A mistake explains the root when it breaks the root's clause,
reproduces the adapter's outputs to the tolerance on every one of those cases, and no case the adapter
got right contradicts it (:func:`~.mistakes.explain`). The report's root line then says
``matches: <what the implementation computes> (known mistake `<id>`)``; when nothing matches it says
nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .mistakes import explain

__all__ = ["CONTROLS", "OBSERVATIONS", "explain_roots", "level_one"]

#: At most this many failing cases per root and passing cases in all are run through the adapter again.
OBSERVATIONS = 4
CONTROLS = 8


def level_one(case: Any) -> bool:
    """Whether ``case`` is a level-1 case (queries, docs, config; no ranks, no encoder)."""
    return (
        isinstance(case, dict)
        and all(k in case for k in ("queries", "docs", "config"))
        and "world_size" not in case
        and not any(k.startswith("x_") for k in case)
    )


def _observation(ctx: Any, case: dict[str, Any]) -> tuple[Any, ...]:
    q, d, config = case["queries"], case["docs"], case["config"]
    return q, d, config, ctx.embeddings(q, d, config)


def explain_roots(roots: Sequence[Any], results: Sequence[Any], ctx: Any) -> dict[str, list[str]]:
    """Per root clause, the texts of the known mistakes that explain it (module docstring). ``roots``
    are the diagnosis' :class:`~.diagnosis.RootCause` items, ``results`` the run's property results,
    ``ctx`` a :class:`~.properties.base.Context` of the adapter (its calls run the adapter again)."""
    wanted = [c for c in roots if c.clause is not None and c.kind != "adapter fault"]
    if not wanted:
        return {}
    passing = [case for r in results for case in getattr(r, "passed_cases", ()) if level_one(case)]
    controls = [_observation(ctx, case) for case in passing[:CONTROLS]]
    out: dict[str, list[str]] = {}
    for cause in wanted:
        cases = [r.failure.case for r in cause.established_by if level_one(getattr(r.failure, "case", None))]
        if not cases:
            continue
        cases.sort(key=lambda c: c["queries"].size + c["docs"].size)
        observations = [_observation(ctx, case) for case in cases[:OBSERVATIONS]]
        matches = explain(observations, controls, dtype=ctx.dtype, compute_dtype=ctx.compute_dtype)
        texts = [m.text for m in matches if m.mistake.clause == cause.clause]
        if texts:
            out[cause.clause] = texts
    return out
