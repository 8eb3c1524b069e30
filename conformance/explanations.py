"""What the implementation computes instead: each root cause's failing cases against the known mistakes.

After a run, for every root cause that breaks a clause (an adapter fault has nothing to explain), the
adapter's outputs on the level-1 cases that established it are tried against the known mistakes of
:mod:`.mistakes` -- every mistake that applies to the claimed configuration, with its parameters
fitted from the cases where it has any. A data-parallel or cached failure carries what the adapter
returned on its case (``Failure.observed``: every rank's outputs, or the cached path's losses and
weight gradient), since no harness is open after the run; those observations are tried against the
data-parallel and GradCache mistakes, each kind on its own. A mistake explains the root when it breaks the root's clause,
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


def _size(ob: Any) -> int:
    arrays = [getattr(ob, "queries", None), getattr(ob, "docs", None)]
    arrays += [x for step in getattr(ob, "steps", ()) for x in step[:2]]
    return sum(int(a.size) for a in arrays if a is not None)


def explain_roots(roots: Sequence[Any], results: Sequence[Any], ctx: Any) -> dict[str, list[str]]:
    """Per root clause, the texts of the known mistakes that explain it (module docstring). ``roots``
    are the diagnosis' :class:`~.diagnosis.RootCause` items, ``results`` the run's property results,
    ``ctx`` a :class:`~.properties.base.Context` of the adapter (its calls run the adapter again)."""
    wanted = [c for c in roots if c.clause is not None and c.kind != "adapter fault"]
    if not wanted:
        return {}
    passing = [case for r in results for case in getattr(r, "passed_cases", ()) if level_one(case)]
    controls: list[Any] | None = None
    out: dict[str, list[str]] = {}
    for cause in wanted:
        failures = [r.failure for r in cause.established_by]
        by_kind: dict[str, list[Any]] = {}
        for ob in (getattr(f, "observed", None) for f in failures):
            if ob is not None:
                by_kind.setdefault(ob.kind, []).append(ob)
        cases = [f.case for f in failures if level_one(getattr(f, "case", None))]
        if cases:
            cases.sort(key=lambda c: c["queries"].size + c["docs"].size)
            by_kind["embeddings"] = [_observation(ctx, case) for case in cases[:OBSERVATIONS]]
            if controls is None:
                controls = [_observation(ctx, case) for case in passing[:CONTROLS]]
        texts: list[str] = []
        for kind, observations in by_kind.items():
            if kind != "embeddings":  # no passing cases of these kinds are kept: no controls
                observations = sorted(observations, key=_size)[:OBSERVATIONS]
            found = explain(
                observations,
                (controls or []) if kind == "embeddings" else [],
                dtype=ctx.dtype,
                compute_dtype=ctx.compute_dtype,
            )
            texts += [m.text for m in found if m.mistake.clause == cause.clause and m.text not in texts]
        if texts:
            out[cause.clause] = texts
    return out
