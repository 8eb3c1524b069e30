"""What a claim lets the suite exercise: a clause's verdict is never stronger than its evidence.

A property can only check a clause on the configurations an adapter claims. Some clauses are about
a feature that a claim may leave out -- a direction, a partition mode, a similarity, hardness,
input validation, dL/dscale, caching, data parallelism --, and no claimed configuration can then
exercise them, whatever property runs. :func:`missing_claim` names what such a clause needs;
the runner drops those clauses from what a property checked (a property left with none is not
claimed) and the clause table reads "not claimed", naming what is missing.

:func:`configuration_clauses` is the other side: the clauses the claimed configurations exercise
when the loss is compared with the reference on each of them (``reference/all_options``), the same
rule the golden vectors use for a case's clauses (``conformance/golden/generate.py``), so that
``run`` and ``verify`` agree on a claim.
"""

from __future__ import annotations

from infonce_spec.vocabulary import DIRECTION_SPECS

from .protocol import Capabilities

__all__ = ["configuration_clauses", "missing_claim", "partly_missing"]

#: Clauses about rejecting invalid input: exercised only where invalid input is claimed to raise.
VALIDATION = frozenset({"VAL-1", "LAYOUT-4", "SIM-3", "DIR-1", "HARD-1", "PART-1", "PART-4", "PART-6"})
#: Clauses about hardness (HARD-1, its validation, is in :data:`VALIDATION`; HARD-6 is partly
#: exercised without one: ``hardness_mode=None`` with any strength, :func:`partly_missing`).
HARDNESS = frozenset({"HARD-2", "HARD-3", "HARD-4", "HARD-5"})
#: The partition mode each partition clause is about.
PARTITION = {"PART-2": "joint", "PART-3": "per_direction", "PART-5": "per_anchor"}


def _direction_needs() -> dict[str, str]:
    """The direction a row or mask clause is about (QQ-1, MASK-QQ-1 -> query_to_query, ...)."""
    out: dict[str, str] = {}
    for name, spec in DIRECTION_SPECS.items():
        if name != "query_to_doc":
            for clause in (spec.clause, *spec.masks):
                out[clause] = name
    return out


_DIRECTION = _direction_needs()


def _k_at_least_2(caps: Capabilities) -> bool:
    return caps.max_k is None or caps.max_k >= 2


def missing_claim(clause: str, caps: Capabilities) -> str | None:
    """What ``caps`` lacks for any claimed configuration to exercise ``clause`` (``None``: nothing)."""
    if clause in VALIDATION and not caps.validates_inputs:
        return "validates_inputs (rejecting invalid input)"
    if clause in HARDNESS and not caps.hardness_modes:
        return "a hardness mode"
    if clause in PARTITION and not caps.find_shapes(partition_mode=PARTITION[clause]):
        return f"a {PARTITION[clause]} configuration"
    if clause in _DIRECTION and _DIRECTION[clause] not in caps.directions:
        return f"direction {_DIRECTION[clause]}"
    if clause == "MASK-DD-2" and not _k_at_least_2(caps):
        return f"K >= 2 (max_k = {caps.max_k})"
    if clause == "ROW-1" and not _k_at_least_2(caps):
        return f"K >= 2 (hard negatives; max_k = {caps.max_k})"
    if clause == "GRAD-2" and not {"query_to_query", "doc_to_doc"} & caps.directions:
        return "query_to_query or doc_to_doc (a direction with excluded entries)"
    if clause in ("SIM-1", "GRAD-3") and "cos" not in caps.similarities:
        return "similarity 'cos'"
    if clause == "SIM-2" and "dot" not in caps.similarities:
        return "similarity 'dot'"
    if clause == "SCALE-2" and not caps.grad_scale:
        return "grad_scale (dL/dscale)"
    if clause.startswith("CACHE-"):
        if not caps.cached:
            return "cached"
        if clause == "CACHE-3" and not caps.dropout:
            return "dropout"
        if clause == "CACHE-5" and not caps.torch_memory:
            return "torch_memory"
    if clause.startswith("DP-") and not caps.data_parallel:
        return "data_parallel"
    return None


def partly_missing(clause: str, caps: Capabilities) -> str | None:
    """What part of ``clause`` ``caps`` leaves out although a claimed configuration exercises the
    rest (a pass of it then reads "pass (partly not claimed)"), or ``None``."""
    if clause == "HARD-6" and not caps.hardness_modes:
        return "a hardness mode (strength 0 under a mode; only hardness_mode=None with a strength is checked)"
    return None


def configuration_clauses(caps: Capabilities) -> tuple[str, ...]:
    """The clauses that comparing the loss and its gradients with the reference on every claimed
    configuration exercises (those a claim can exercise at all: :func:`missing_claim`)."""
    found = {"LAYOUT-1", "LAYOUT-2", "LAYOUT-3", "QD-1", "QD-2", "SCALE-1", "LOSS-1", "GRAD-1", "SIM-1"}
    found |= {"SIM-2", "ROW-1"}
    for directions, mode in caps.shapes():
        found.add({v: k for k, v in PARTITION.items()}[mode])
        for direction in directions:
            spec = DIRECTION_SPECS[direction]
            found.update((spec.clause, *spec.masks, *(("GRAD-2",) if spec.masks else ())))
    if caps.hardness_modes:
        found |= {"HARD-2", "HARD-3", "HARD-4", "HARD-5"}
    from infonce_spec.clauses import CLAUSE_IDS

    return tuple(c for c in CLAUSE_IDS if c in found and missing_claim(c, caps) is None)
