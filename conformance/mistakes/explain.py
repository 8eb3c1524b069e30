"""Explanations: which known mistakes reproduce what an adapter returned (:func:`explain`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np

from infonce_spec.reference import loss_and_grad

from ..tolerances import OUTPUT_ROUNDING, UNIT_ROUNDOFF, Bounds, embedding_bounds
from .catalogue import MISTAKES, Mistake, Observation
from .emulation import Outputs

__all__ = ["Match", "explain", "outputs_agree"]


# =========================================================================== explanations
def _close(predicted: Any, got: Any, bound: Any, u: float) -> bool:
    """``got`` within ``bound`` (plus the output rounding) of ``predicted``; non-finite values must
    sit at the same places (nan with nan, inf with the same inf)."""
    p = np.asarray(predicted, dtype=np.float64)
    g = np.asarray(got, dtype=np.float64)
    if p.shape != g.shape:
        return False
    with np.errstate(all="ignore"):
        allowed = np.broadcast_to(
            np.asarray(bound, dtype=np.float64), p.shape
        ) + OUTPUT_ROUNDING * u * np.abs(p)
        finite = np.isfinite(p) & np.isfinite(g)
        same = (np.isnan(p) & np.isnan(g)) | (np.isinf(p) & (p == g))
        ok = np.where(finite, np.abs(p - g) <= allowed, same)
    return bool(np.all(ok))


def outputs_agree(predicted: Any, got: Any, bounds: Bounds, dtype: str = "float64") -> bool:
    """Whether ``got`` agrees with ``predicted`` on every output ``got`` has (None: not compared)."""
    u = UNIT_ROUNDOFF[dtype]
    for name, bound in (
        ("loss", bounds.loss),
        ("grad_queries", bounds.grad_queries),
        ("grad_docs", bounds.grad_docs),
        ("grad_scale", bounds.grad_scale),
    ):
        value = getattr(got, name, None)
        if value is not None and not _close(getattr(predicted, name), value, bound, u):
            return False
    return True


@dataclass(frozen=True)
class Match:
    """A known mistake that explains a root cause, with its fitted parameters."""

    mistake: Mistake
    params: dict[str, float] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.mistake.id

    @property
    def description(self) -> str:
        return self.mistake.text(**self.params)

    @property
    def text(self) -> str:
        """``matches: <description> (known mistake `<id>`)``, for the root's line of a report."""
        return f"matches: {self.description} (known mistake `{self.id}`)"


def _observation(item: Observation | Sequence[Any]) -> Observation:
    if isinstance(item, Observation):
        ob = item
    else:
        ob = Observation(*item)
    q = np.asarray(ob.queries, dtype=np.float64)
    return Observation(q, np.asarray(ob.docs, dtype=np.float64).reshape(-1, *q.shape), ob.config, ob.outputs)


def explain(
    observations: Iterable[Observation | Sequence[Any]],
    controls: Iterable[Observation | Sequence[Any]] = (),
    *,
    dtype: str = "float64",
    compute_dtype: str | None = None,
    mistakes: Iterable[Mistake] | None = None,
) -> list[Match]:
    """The known mistakes that explain what the adapter returned.

    ``observations``: the failing cases of one root cause, ``controls``: cases the adapter got right
    (each an :class:`Observation` or a tuple ``(queries, docs, config, outputs)``). A mistake matches
    when it applies to every observation's config, reproduces the adapter's outputs on every
    observation within the tolerance of an implementation of it in ``compute_dtype`` (default
    ``dtype``; outputs rounded to ``dtype``) and differs from the reference on at least one of them
    (a mistake that computes the spec's function on these cases explains nothing), and no control
    contradicts it: wherever its prediction differs from the reference beyond the reference's
    tolerance, the adapter must agree with it.
    A mistake with fitted parameters matches with the first candidate that does.
    """
    obs = [_observation(o) for o in observations]
    ctl = [_observation(c) for c in controls]
    if not obs:
        return []
    compute = compute_dtype or dtype
    references: dict[int, tuple[Outputs, Bounds]] = {}

    def shows(ob: Observation, predicted: Outputs) -> bool:
        """Whether ``predicted`` differs from the reference on ``ob`` beyond the reference's tolerance,
        in the outputs the adapter returned."""
        if id(ob) not in references:
            r = loss_and_grad(ob.queries, ob.docs, ob.config)
            out = Outputs(r.loss, r.grad_queries, r.grad_docs, r.grad_scale)
            references[id(ob)] = (out, embedding_bounds(ob.queries, ob.docs, ob.config, compute))
        expected, bounds = references[id(ob)]
        returned = {name: getattr(ob.outputs, name, None) is not None for name in Outputs._fields}
        compared = SimpleNamespace(**{k: v if returned[k] else None for k, v in predicted._asdict().items()})
        return not outputs_agree(expected, compared, bounds)

    def agrees(m: Mistake, ob: Observation, params: dict[str, float]) -> tuple[bool, Outputs]:
        predicted = m.outputs(ob.queries, ob.docs, ob.config, **params)
        bounds = m.bounds(ob.queries, ob.docs, ob.config, compute, **params)
        return outputs_agree(predicted, ob.outputs, bounds, dtype), predicted

    def explains(m: Mistake, params: dict[str, float]) -> bool:
        seen = [agrees(m, o, params) for o in obs]
        if not all(same for same, _ in seen) or not any(
            shows(o, p) for o, (_, p) in zip(obs, seen, strict=True)
        ):
            return False
        for c in ctl:
            if m.applies(c.config):
                same, predicted = agrees(m, c, params)
                if not same and shows(c, predicted):
                    return False  # the mistake would show here, and the adapter got it right
        return True

    matches: list[Match] = []
    for m in MISTAKES.values() if mistakes is None else mistakes:
        if not all(m.applies(o.config) for o in obs):
            continue
        for params in m.candidates(obs):
            if explains(m, params):
                matches.append(Match(m, params))
                break
    return matches
