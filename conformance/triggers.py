"""What the failing cases of a root cause have in common that the passing ones lack.

An adapter fault is one root per origin (the exception type and the innermost frame of the adapter's
own code, :mod:`.diagnosis`), whatever its messages say; its report line then names the inputs that
trigger it, read from the cases the run already drew -- e.g. "every case with K >= 2 and
doc_to_query failed (3); none of the 41 cases that passed had them".

A case is described by plain *features* (:func:`case_features`): the size of K and N, each direction
present or absent, the partition mode, the similarity, the hardness mode, the world size. The
trigger (:func:`trigger`) is the smallest set of features common to every failing case that no
passing case has all of (chosen greedily, the feature that rules out most passing cases first).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from infonce_spec.vocabulary import DIRECTIONS

__all__ = ["case_features", "trigger"]


def _config_features(config: Any) -> list[str]:
    out = []
    directions = set(getattr(config, "directions", ()) or ())
    for name in DIRECTIONS:
        if name != "query_to_doc":
            out.append(name if name in directions else f"no {name}")
    mode = getattr(config, "partition_mode", None)
    if mode is not None:
        out.append(f"partition_mode {mode}")
    similarity = getattr(config, "similarity", None)
    if similarity is not None:
        out.append(f"similarity {similarity}")
    if getattr(config, "hardness_active", False):
        out.append(f"hardness {config.hardness_mode}")
    elif hasattr(config, "hardness_mode"):
        out.append("no hardness")
    return out


def case_features(case: dict[str, Any]) -> frozenset[str]:
    """The features of a drawn case (module docstring); empty for a case without a config."""
    config = case.get("config")
    if config is None:
        return frozenset()
    out = _config_features(config)
    docs = case.get("docs", case.get("x_docs"))
    shape = getattr(docs, "shape", None)
    if shape is not None and len(shape) == 3:
        k, n = int(shape[0]), int(shape[1])
        out += ["K = 1" if k == 1 else "K >= 2", "N = 1" if n == 1 else "N >= 2"]
    if "world_size" in case:
        out.append(f"W = {int(case['world_size'])}")
    return frozenset(out)


def _order(feature: str) -> tuple[int, str]:
    """Shapes first, then directions, then the rest (the order a reader scans a case in)."""
    for i, prefix in enumerate(
        ("K ", "N ", "W ", "query_", "doc_", "no ", "partition", "similarity", "hardness")
    ):
        if feature.startswith(prefix):
            return i, feature
    return 99, feature


def _family(feature: str) -> str:
    """What a feature is about: ``K``, ``N``, ``W``, a direction, the partition mode, ..."""
    word = feature.removeprefix("no ").split(" ", 1)[0]
    return word


def _common(cases: Sequence[frozenset[str]]) -> frozenset[str]:
    """The features every failing case has, each family judged only on the cases that describe it (a
    case drawn without arrays says nothing about K or N)."""
    out = set()
    for feature in frozenset().union(*cases):
        family = _family(feature)
        described = [c for c in cases if any(_family(f) == family for f in c)]
        if all(feature in c for c in described):
            out.add(feature)
    return frozenset(out)


def trigger(failing: Sequence[frozenset[str]], passing: Iterable[frozenset[str]]) -> str:
    """What every failing case has and the passing cases lack, in words (``""`` when nothing is
    common to the failing cases)."""
    failing = [f for f in failing if f]
    if not failing:
        return ""
    common = _common(failing)
    passed = [p for p in passing if p]
    if not common:
        return ""
    chosen: list[str] = []
    left = list(passed)
    while left:
        best = max(sorted(common - set(chosen)), key=lambda f: sum(f not in p for p in left), default=None)
        if best is None or all(best in p for p in left):
            break
        chosen.append(best)
        left = [p for p in left if best in p]
    if not passed:
        shown = sorted(common, key=_order)
        return f"every failing case ({len(failing)}) has {', '.join(shown)}; no case passed"
    if not chosen:
        return ""  # every passing case has every feature the failing ones share: nothing to say
    if left:
        shown = sorted(common, key=_order)
        return (
            f"the failing cases ({len(failing)}) share {', '.join(shown)}; {len(left)} of the "
            f"{len(passed)} cases that passed had these too"
        )
    shown = sorted(chosen, key=_order)
    both = "them" if len(shown) > 1 else "it"
    return (
        f"every case with {' and '.join(shown)} failed ({len(failing)}); none of the {len(passed)} "
        f"cases that passed had {both}"
    )
