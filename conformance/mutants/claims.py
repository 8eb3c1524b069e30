"""The catalogue under exact claims: every mutant as an adapter that claims one slice of the family.

Real implementations claim a narrow slice (``clip_like()``, ``nt_xent()``, ``infonce()``), and there
the diagnosis cannot step down to simpler configurations the adapter does not claim. This module
re-declares each mutant of :mod:`.catalogue` (and each correct implementation) under each claim of
:data:`CLAIMS`: the same code, ``Capabilities.configurations`` restricted to the claim, everything
else (similarities, hardness modes, ``grad_scale``, data parallel) as the mutant claims it.

Adapters are reachable by name (data-parallel workers import them):
``infonce_spec.conformance.mutants.claims:adapters.<claim>.<id>`` and
``...claims:correct.<claim>.<name>``.

A mutant **applies** to a claim when its bug can show there (:func:`applies`): a data-parallel bug
wherever data parallelism is claimed; any other embedding-level bug when its outputs differ from the
correct trunk's on some claimed configuration (each claimed shape, both similarities, every claimed
hardness mode, K = 1 and K = 3, rows of unit norm and one tiny row). The kill matrix under claims
(:func:`~.killmatrix.diagnose`) runs the applicable pairs.
"""

from __future__ import annotations

import copy
from functools import cache
from types import SimpleNamespace
from typing import Any

import numpy as np

from infonce_spec.reference import Config
from infonce_spec.vocabulary import DIRECTIONS

from ..protocol import Capabilities, EmbeddingCase, Shape, clip_like, infonce, nt_xent
from .adapter import TorchAdapter
from .catalogue import CATALOGUE, MODULE, VARIANTS, Mutant
from .catalogue import variants as catalogue_variants

__all__ = [
    "CLAIMS",
    "EMBEDDING_LEVEL",
    "adapters",
    "applies",
    "claimed_spec",
    "correct",
    "correct_specs",
    "restrict",
]

#: The claims of the kill matrix under claims: ``None`` is the mutant's own (full) claim.
CLAIMS: dict[str, frozenset[Shape] | None] = {
    "infonce": infonce(),
    "clip_like": clip_like(),
    "nt_xent": nt_xent(),
    "gte": frozenset({(tuple(DIRECTIONS), "joint")}),
    "clip_or_infonce": clip_like() | infonce(),
    "full": None,
}

#: The levels whose mutants run under claims (a cached bug does not depend on the configuration).
EMBEDDING_LEVEL = ("embeddings", "data_parallel")

CORRECT_BASE = TorchAdapter()


def restrict(adapter: Any, claim: str) -> Any:
    """A shallow copy of ``adapter`` whose capabilities claim exactly :data:`CLAIMS` ``[claim]``."""
    shapes = CLAIMS[claim]
    out = copy.copy(adapter)
    caps: Capabilities = adapter.capabilities
    if shapes is not None:
        caps = caps.with_(
            name=f"{caps.name}[{claim}]",
            directions=frozenset({"query_to_doc"}),
            partition_modes=frozenset({"joint"}),
            configurations=shapes,
        )
    out.capabilities = caps
    return out


def claimed_spec(id: str, claim: str) -> str:
    """The adapter spec of mutant ``id`` under ``claim``."""
    return f"{MODULE.rsplit('.', 1)[0]}.claims:adapters.{claim}.{id}"


adapters = SimpleNamespace(
    **{
        claim: SimpleNamespace(
            **{m.id: restrict(m.adapter, claim) for m in CATALOGUE.values() if m.level in EMBEDDING_LEVEL}
        )
        for claim in CLAIMS
    }
)
correct = SimpleNamespace(
    **{
        claim: SimpleNamespace(
            trunk=restrict(CORRECT_BASE, claim),
            **{v: restrict(getattr(catalogue_variants, v), claim) for v in VARIANTS},
        )
        for claim in CLAIMS
    }
)


def correct_specs(claim: str) -> list[tuple[str, str]]:
    """``(name, spec)`` of the correct implementations under ``claim``: the trunk and every variant."""
    base = f"{MODULE.rsplit('.', 1)[0]}.claims:correct.{claim}"
    return [("trunk", f"{base}.trunk"), *((v, f"{base}.{v}") for v in VARIANTS)]


def _probe_cases(caps: Capabilities, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, Config]]:
    rng = np.random.default_rng(seed)
    out = []
    hardness = [(None, 0.0), *((m, 2.5) for m in sorted(caps.hardness_modes))]
    for directions, mode in caps.shapes():
        for similarity in sorted(caps.similarities):
            for hardness_mode, strength in hardness:
                for k in (1, 3):
                    if caps.max_k is not None and k > caps.max_k:
                        continue
                    q, d = rng.normal(size=(4, 5)), rng.normal(size=(k, 4, 5))
                    if similarity == "cos":
                        q[1] *= 1e-13  # one row below the cos floor
                    config = Config(
                        directions=directions,
                        partition_mode=mode,
                        similarity=similarity,
                        scale=7.0,
                        hardness_mode=hardness_mode,
                        hardness_strength=strength,
                    )
                    out.append((q, d, config))
    return out


def _differs(a: Any, b: Any) -> bool:
    fields = ("loss", "grad_queries", "grad_docs", "grad_scale")
    for name in fields:
        x, y = getattr(a, name, None), getattr(b, name, None)
        if (x is None) != (y is None):
            return True
        if x is None:
            continue
        if not np.allclose(np.asarray(x, float), np.asarray(y, float), rtol=1e-9, atol=1e-12, equal_nan=True):
            return True
    return False


@cache
def applies(id: str, claim: str) -> bool:
    """Whether mutant ``id``'s bug can show under ``claim`` (module docstring)."""
    m: Mutant = CATALOGUE[id]
    if m.level not in EMBEDDING_LEVEL:
        return False
    adapter = getattr(getattr(adapters, claim), id)
    caps = adapter.capabilities
    if m.level == "data_parallel" or m.clause.startswith("DP-"):
        return caps.data_parallel
    for q, d, config in _probe_cases(caps):
        case = EmbeddingCase(q, d, config)
        try:
            got = adapter.embeddings(case)
        except Exception:
            return True  # a crash on a claimed input shows
        if _differs(got, CORRECT_BASE.embeddings(case)):
            return True
    return False
