"""Explanations: which known mistakes reproduce what an adapter returned (:func:`explain`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np

from infonce_spec.reference import loss_and_grad

from ..tolerances import Bounds, embedding_bounds
from .agreement import outputs_agree
from .catalogue import MISTAKES, Observation
from .emulation import Outputs

__all__ = ["Match", "explain", "outputs_agree"]


@dataclass(frozen=True)
class Match:
    """A known mistake that explains a root cause, with its fitted parameters."""

    mistake: Any  # a Mistake, RankMistake or CacheMistake
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


def _observation(item: Any) -> Any:
    """An :class:`Observation` with float64 arrays; a rank or encoder observation as it is."""
    if getattr(item, "kind", "embeddings") != "embeddings":
        return item
    ob = item if isinstance(item, Observation) else Observation(*item)
    q = np.asarray(ob.queries, dtype=np.float64)
    return Observation(q, np.asarray(ob.docs, dtype=np.float64).reshape(-1, *q.shape), ob.config, ob.outputs)


def _kind(x: Any) -> str:
    return str(getattr(x, "kind", "embeddings"))


def explain(
    observations: Iterable[Any],
    controls: Iterable[Any] = (),
    *,
    dtype: str = "float64",
    compute_dtype: str | None = None,
    mistakes: Iterable[Any] | None = None,
) -> list[Match]:
    """The known mistakes that explain what the adapter returned.

    ``observations``: the failing cases of one root cause, ``controls``: cases the adapter got right
    (each an :class:`Observation` or a tuple ``(queries, docs, config, outputs)``; or, all of one kind,
    the data-parallel :class:`~.ranks.RankObservation` or the cached :class:`~.cached.EncoderObservation`,
    tried against the mistakes of their kind). A mistake matches
    when it applies to every observation's config, reproduces the adapter's outputs on every
    observation within the tolerance of an implementation of it in ``compute_dtype`` (default
    ``dtype``; outputs rounded to ``dtype``) and differs from the reference on at least one of them
    (a mistake that computes the spec's function on these cases explains nothing), and no control
    contradicts it: wherever its prediction differs from the reference beyond the reference's
    tolerance, the adapter must agree with it.
    A mistake with fitted parameters matches with the first candidate that does.
    """
    obs = [_observation(o) for o in observations]
    if not obs:
        return []
    kind = _kind(obs[0])
    if any(_kind(o) != kind for o in obs):
        raise ValueError("explain: the observations of one call must be of one kind")
    ctl = [c for c in (_observation(c) for c in controls) if _kind(c) == kind]
    compute = compute_dtype or dtype
    references: dict[int, tuple[Outputs, Bounds]] = {}

    def shows(ob: Any, predicted: Any) -> bool:
        """Whether ``predicted`` differs from the reference on ``ob`` beyond the reference's tolerance,
        in the outputs the adapter returned."""
        if kind != "embeddings":
            return bool(ob.shows(predicted, compute))
        if id(ob) not in references:
            r = loss_and_grad(ob.queries, ob.docs, ob.config)
            out = Outputs(r.loss, r.grad_queries, r.grad_docs, r.grad_scale)
            references[id(ob)] = (out, embedding_bounds(ob.queries, ob.docs, ob.config, compute))
        expected, bounds = references[id(ob)]
        returned = {name: getattr(ob.outputs, name, None) is not None for name in Outputs._fields}
        compared = SimpleNamespace(**{k: v if returned[k] else None for k, v in predicted._asdict().items()})
        return not outputs_agree(expected, compared, bounds)

    def applies(m: Any, ob: Any) -> bool:
        return bool(m.applies(ob.config if kind == "embeddings" else ob))

    def agrees(m: Any, ob: Any, params: dict[str, float]) -> tuple[bool, Any]:
        if kind != "embeddings":
            predicted, bounds = m.predict(ob, compute, **params)
            return bool(ob.agrees(predicted, bounds, dtype)), predicted
        predicted = m.outputs(ob.queries, ob.docs, ob.config, **params)
        bounds = m.bounds(ob.queries, ob.docs, ob.config, compute, **params)
        return outputs_agree(predicted, ob.outputs, bounds, dtype), predicted

    def explains(m: Any, params: dict[str, float]) -> bool:
        seen = [agrees(m, o, params) for o in obs]
        if not all(same for same, _ in seen) or not any(
            shows(o, p) for o, (_, p) in zip(obs, seen, strict=True)
        ):
            return False
        for c in ctl:
            if applies(m, c):
                same, predicted = agrees(m, c, params)
                if not same and shows(c, predicted):
                    return False  # the mistake would show here, and the adapter got it right
        return True

    matches: list[Match] = []
    for m in MISTAKES.values() if mistakes is None else mistakes:
        if _kind(m) != kind or not all(applies(m, o) for o in obs):
            continue
        for params in m.candidates(obs):
            if explains(m, params):
                matches.append(Match(m, params))
                break
    return matches
