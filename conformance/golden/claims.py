"""Golden vectors: a claim -- what an implementation implements -- and the cases it covers.

A claims file is a small JSON or TOML object with the fields of
:class:`~infonce_spec.conformance.protocol.Capabilities` that the vectors can check (and the same
defaults: ``query_to_doc``, ``joint``, ``cos``, no hardness), plus ``per_query_loss``::

    {"name": "my CLIP loss", "configurations": ["clip_like"], "similarities": ["dot"]}

* ``configurations`` -- a list of ``[directions, partition_mode]`` pairs or the names of the helpers
  ``infonce``, ``clip_like``, ``nt_xent`` (spec §14.1); or ``directions`` and ``partition_modes``
  (every valid pair of the two, as in ``Capabilities``);
* ``similarities``, ``hardness_modes``, ``max_k``;
* ``grad_scale`` (dL/dscale, SCALE-2), ``per_query_loss`` (LOSS-2), ``data_parallel`` (per-rank
  results, DP-1 .. DP-3, DP-5), ``validates_inputs`` (the error cases, VAL-1).

A case *applies* to a claim when the claim covers its configuration (:func:`case_applies`). The
clauses a claim *can exercise* (:func:`exercisable_clauses`) are derived from the claim alone, the
same way the generator derives a case's clauses, so a clause the vectors fail to cover for some claim
shows up as a gap in the verdict instead of disappearing from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from infonce_spec.errors import SpecViolation
from infonce_spec.reference import Config

from ..protocol import Capabilities, clip_like, infonce, nt_xent
from .format import ALL_CLAUSES, value_clauses

__all__ = ["CLAIM_FIELDS", "Claim", "case_applies", "exercisable_clauses", "load_claim"]

_HELPERS = {"infonce": infonce, "clip_like": clip_like, "nt_xent": nt_xent}
#: The fields of a claims file: Capabilities' fields that the vectors check, and per_query_loss.
CLAIM_FIELDS = (
    "name",
    "configurations",
    "directions",
    "partition_modes",
    "similarities",
    "hardness_modes",
    "max_k",
    "grad_scale",
    "per_query_loss",
    "data_parallel",
    "validates_inputs",
)
#: Error cases whose invalid part is an option's *name*: they apply only to an implementation that
#: takes that option as an argument, i.e. whose claim offers a choice of it (PART-4 and PART-6: of
#: configurations, one of them with that partition mode).
_NAME_ERRORS = {
    "DIR-1": "shapes",
    "PART-1": "shapes",
    "PART-4": "per_direction",
    "PART-6": "per_anchor",
    "SIM-3": "similarities",
    "HARD-1": "hardness_modes",
}


@dataclass(frozen=True)
class Claim:
    """What an implementation implements: its :class:`Capabilities` and whether it exposes
    per-query losses (LOSS-2; not a capability of the suite's adapters, which return the mean)."""

    capabilities: Capabilities
    per_query_loss: bool = False
    #: Clauses the route to the implementation cannot exercise (``golden run``: LAYOUT-5), left out.
    skips: frozenset[str] = frozenset()

    def to_json(self) -> dict[str, Any]:
        caps = self.capabilities
        return {
            "name": caps.name,
            "configurations": [[list(dirs), mode] for dirs, mode in caps.shapes()],
            "similarities": sorted(caps.similarities),
            "hardness_modes": sorted(caps.hardness_modes),
            "max_k": caps.max_k,
            "grad_scale": caps.grad_scale,
            "per_query_loss": self.per_query_loss,
            "data_parallel": caps.data_parallel,
            "validates_inputs": caps.validates_inputs,
            **({"skips": sorted(self.skips)} if self.skips else {}),
        }

    def text(self) -> str:
        """One line: the configurations, similarities, hardness modes, K and the optional parts."""
        caps = self.capabilities
        shapes = ", ".join(f"{'+'.join(d)}/{m}" for d, m in caps.shapes())
        if not caps.unclaimed_shapes():
            shapes = f"every configuration shape ({len(caps.shapes())})"
        parts = [n for n in ("grad_scale", "data_parallel", "validates_inputs") if getattr(caps, n)]
        parts += ["per_query_loss"] if self.per_query_loss else []
        parts += [f"not {', '.join(sorted(self.skips))}"] if self.skips else []
        hardness = ", ".join(sorted(caps.hardness_modes)) or "none"
        return (
            f"{shapes}; similarities {', '.join(sorted(caps.similarities))}; hardness {hardness}; "
            f"max K {caps.max_k or 'any'}; optional parts: {', '.join(parts) or 'none'}"
        )


def _configurations(value: Any) -> frozenset[Any]:
    if not isinstance(value, list):
        raise ValueError("'configurations' is a list of [directions, partition_mode] pairs or names")
    shapes: set[Any] = set()
    for item in value:
        if isinstance(item, str):
            if item not in _HELPERS:
                raise ValueError(f"unknown configuration name {item!r}; names: {sorted(_HELPERS)}")
            shapes |= _HELPERS[item]()
        elif (
            isinstance(item, list)
            and len(item) == 2
            and isinstance(item[0], list)
            and isinstance(item[1], str)
        ):
            shapes.add((tuple(item[0]), item[1]))
        else:
            raise ValueError(f"a configuration is [directions, partition_mode] or a name, got {item!r}")
    return frozenset(shapes)


def load_claim(path: Path | str) -> Claim:
    """Read a claims file (``.toml``: TOML; anything else: JSON). Unknown fields and invalid names
    raise ``ValueError`` naming the field (and, for configurations, the clause: DIR-1, PART-4, PART-6)."""
    path = Path(path)
    text = path.read_text()
    if path.suffix == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            raise ValueError(f"{path}: TOML claims need Python >= 3.11; write them as JSON") from None
        data = tomllib.loads(text)
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a claims file is an object with the fields {list(CLAIM_FIELDS)}")
    unknown = sorted(set(data) - set(CLAIM_FIELDS))
    if unknown:
        raise ValueError(f"{path}: unknown claims fields {unknown}; fields: {list(CLAIM_FIELDS)}")
    kwargs: dict[str, Any] = {"name": str(data.get("name", path.stem))}
    for name in ("directions", "partition_modes", "similarities", "hardness_modes"):
        if name in data:
            if isinstance(data[name], str) or not isinstance(data[name], list):
                raise ValueError(f"{path}: claims field {name!r} is a list of names")
            kwargs[name] = frozenset(data[name])
    if "configurations" in data:
        try:
            kwargs["configurations"] = _configurations(data["configurations"])
        except ValueError as exc:
            raise ValueError(f"{path}: claims field 'configurations': {exc}") from None
    for name in ("grad_scale", "data_parallel", "validates_inputs", "per_query_loss"):
        if name in data and not isinstance(data[name], bool):
            raise ValueError(f"{path}: claims field {name!r} is true or false")
    if "max_k" in data:
        if data["max_k"] is not None and (
            isinstance(data["max_k"], bool) or not isinstance(data["max_k"], int)
        ):
            raise ValueError(f"{path}: claims field 'max_k' is an integer >= 1 or null")
        kwargs["max_k"] = data["max_k"]
    kwargs |= {n: data[n] for n in ("grad_scale", "data_parallel", "validates_inputs") if n in data}
    try:
        caps = Capabilities(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    return Claim(caps, per_query_loss=bool(data.get("per_query_loss", False)))


def _choice(claim: Claim, option: str) -> bool:
    caps = claim.capabilities
    if option in ("shapes", "per_direction", "per_anchor"):
        shapes = caps.shapes()
        return len(shapes) > 1 and (option == "shapes" or any(m == option for _, m in shapes))
    return len(getattr(caps, option)) > (0 if option == "hardness_modes" else 1)


def _claimed(claim: Claim, config: dict[str, Any], k: int | None) -> bool:
    try:
        parsed = Config(**config)
    except (SpecViolation, TypeError, ValueError):
        return False
    caps = claim.capabilities
    if k is not None and caps.max_k is not None and k > caps.max_k:
        return False
    return caps.claims_config(parsed) is None


def case_applies(claim: Claim, case: dict[str, Any]) -> bool:
    """Whether ``case`` is one the claimed implementation can run.

    A value case: its config is claimed (configuration, similarity, hardness mode) and K <= max K.
    An error case: only with ``validates_inputs``, and a data-parallel one only with
    ``data_parallel``; an error in an option's name (DIR-1, PART-1, PART-4, PART-6, SIM-3, HARD-1)
    applies when the claim offers a choice of that option; any other error (inputs, scale, world
    size) applies when the config, with a valid scale, is claimed.
    """
    docs = case["inputs"]["docs"]
    three_d = (
        isinstance(docs, list)
        and bool(docs)
        and all(isinstance(c, list) and c and isinstance(c[0], list) for c in docs)
    )
    k = len(docs) if three_d else None
    want = case.get("expected_error")
    if want is None:
        return _claimed(claim, case["config"], k)
    caps = claim.capabilities
    if not caps.validates_inputs or ("data_parallel" in case and not caps.data_parallel):
        return False
    if want["clause"] in claim.skips:
        return False
    if want["clause"] in _NAME_ERRORS:
        return _choice(claim, _NAME_ERRORS[want["clause"]])
    config = dict(case["config"])
    if want["clause"] == "SCALE-1":
        config["scale"] = 20.0
    return _claimed(claim, config, k)


def _synthetic(n: int, k: int, zero: bool) -> tuple[np.ndarray, np.ndarray]:
    queries, docs = np.ones((n, 2)), np.ones((k, n, 2))
    if zero:
        queries[0] = 0.0
    return queries, docs


def exercisable_clauses(claim: Claim) -> list[str]:
    """The clauses a claimed implementation can exercise through the golden vectors (spec order).

    Every claimed configuration, similarity and hardness mode (and none) with K = 1 and K = 2 (as
    far as max K allows), a zero row under cos (GRAD-3), the order of directions (DIR-2), large
    logits (NUM-1), a mode with strength 0 (HARD-6); the optional parts claimed; and, with
    ``validates_inputs``, the errors the implementation can meet (the clauses of
    :func:`case_applies`). DP-4 and CACHE-* need a model: never through the vectors.
    """
    from .format import ASPECT_CLAUSES, NOT_COVERED

    caps = claim.capabilities
    found = {"DIR-2", "NUM-1", "HARD-6"}
    ks = [k for k in (1, 2) if caps.max_k is None or k <= caps.max_k]
    for dirs, mode in caps.shapes():
        for similarity in caps.similarities:
            for hardness in (None, *caps.hardness_modes):
                for k in ks if hardness != "hard_negatives" else [k for k in ks if k >= 2]:
                    config = Config(
                        directions=dirs,
                        partition_mode=mode,
                        similarity=similarity,
                        hardness_mode=hardness,
                        hardness_strength=1.0 if hardness else 0.0,
                    )
                    found.update(value_clauses(config, *_synthetic(3, k, similarity == "cos")))
    if not caps.grad_scale:
        found -= ASPECT_CLAUSES["grad_scale"]
    if caps.data_parallel:
        found |= ASPECT_CLAUSES["ranks"]
    if caps.validates_inputs:
        found |= {"VAL-1", "LAYOUT-1", "LAYOUT-2", "LAYOUT-5", "SCALE-1"}
        found |= {"DP-5"} if caps.data_parallel else set()
        found |= {c for c, option in _NAME_ERRORS.items() if _choice(claim, option)}
    return [c for c in ALL_CLAUSES if c in found and c not in NOT_COVERED and c not in claim.skips]
