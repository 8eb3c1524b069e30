"""The diagnosis of a run: root causes first, every other failure labelled as their consequence.

Input: the property results of one adapter's run. Each failure blames one clause (plus, with
``also``, further independent clauses found on the same case) and is *strong* (the property's own
check failed while its premise held) or a *premise* failure (a simpler variant of the same case
was already wrong: evidence about that simpler rule, see :mod:`.properties.checks`). Adapter faults
(an exception, a hang, a dead worker, a result that is not a result) are a third kind.

Rules (spec §15.1, the ``presupposes`` column of the clause index):

1. Every adapter fault of one *origin* is one root cause, filed under the output-contract clause it
   breaks, if any. The origin is what the fault is, not how it is worded or reached: its kind, that
   clause, the exception's type and the innermost frame of the adapter's own code (hypothesis'
   "interesting origin"), never the message text, which often carries the case's shapes, nor the
   method that reached it (the same line fails in ``embeddings`` and ``rank_embeddings``). Its line says what its
   failing cases have in common that the passing ones lack (:mod:`.triggers`).
2. Among the clauses that strong failures blame, the **roots** are those that presuppose no other
   blamed clause; every other blamed clause *follows from* the roots it presupposes.
3. A premise failure follows from the roots equal to its clause or presupposed by it; one that no
   root explains is a root itself (its simpler variant is the smallest evidence there is), and a
   strong failure of a clause that presupposes such a root follows from it.

The clause table then shows FAIL only for roots and "follows from X" for the rest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from infonce_spec.clauses import clause as clause_row
from infonce_spec.clauses import presupposes, spec_order

from .triggers import trigger

__all__ = ["Diagnosis", "RootCause", "diagnose"]


@dataclass
class RootCause:
    """One root cause: the clause it breaks (``None`` for an adapter fault that breaks no output
    contract), what kind (``violation`` or ``adapter fault``), the one-line explanation, the
    results that establish it, the smallest of their cases, and the results that follow from it."""

    clause: str | None
    kind: str
    explanation: str
    established_by: list[Any] = field(default_factory=list)
    consequences: list[Any] = field(default_factory=list)
    #: What the failing cases have in common that the passing ones lack (:func:`~.triggers.trigger`).
    trigger: str = ""
    #: What the implementation computes instead: the known mistakes that reproduce its outputs.
    matches: list[str] = field(default_factory=list)

    @property
    def smallest(self) -> Any:
        """The establishing result with the smallest case (fewest array elements; a case without
        arrays only when there is no other), the one to replay."""
        return min(
            self.established_by, key=lambda r: (r.failure.case_size == 0, r.failure.case_size, r.label)
        )

    @property
    def title(self) -> str:
        if self.clause is None:
            return "adapter fault"
        return f"{self.clause} ({clause_row(self.clause).title})"

    def line(self) -> str:
        """``clause (title): explanation -- smallest case ... -- replay: ...`` on one line."""
        r = self.smallest
        f = r.failure
        where = f"found by {r.label}"
        if f.config is not None:
            where += f" on {_short_config(f.config)}"
        if f.shapes:
            where += f", {f.shapes}"
        text = f"{self.title}: {self.explanation}; {where}"
        if self.trigger:
            text += f"; trigger: {self.trigger}"
        if self.matches:
            text += "; " + "; ".join(self.matches)
        if f.replay:
            text += f"; replay: {f.replay}"
        return text


@dataclass
class Diagnosis:
    """Root causes (in the order of the spec's clauses; faults first) and, per failing result label,
    the clauses of the roots it follows from (empty for a result that is itself a root)."""

    roots: list[RootCause]
    follows: dict[str, tuple[str, ...]]

    @property
    def root_clauses(self) -> set[str]:
        return {r.clause for r in self.roots if r.clause is not None}

    def explained(self, clause: str) -> tuple[str, ...]:
        """The root clauses a failure blamed on ``clause`` follows from (``()`` if it is a root)."""
        if clause in self.root_clauses:
            return ()
        return _explain(clause, self.root_clauses)


def _short_config(config: dict[str, Any]) -> str:
    keys = ("directions", "partition_mode", "similarity", "scale", "hardness_mode", "hardness_strength")
    parts = [f"{k}={config[k]!r}" for k in keys if k in config and config[k] not in (None, 0.0)]
    return "{" + ", ".join(parts) + "}"


def _explain(clause: str, roots: Iterable[str]) -> tuple[str, ...]:
    pre = presupposes(clause)
    return tuple(sorted(r for r in roots if r == clause or r in pre))


def _fault_origin(failure: Any) -> tuple[Any, ...]:
    """What identifies a fault across cases and the paths that reach it (in process, on a rank, through
    the encoder): its kind and clause, the exception's type when it raised one (never its text) and
    the innermost frame of the adapter's code; without a frame (a hang, a dead worker), the message's
    first line with its numbers left out (it names the method)."""
    first = failure.message.splitlines()[0] if failure.message else ""
    m = re.search(r"raised ([A-Za-z_][\w.]*)", first)
    what = m.group(1) if m else re.sub(r"\d+(\.\d+)?", "#", first)
    return (failure.fault_kind, failure.clause, what, failure.frame)


def _blamed(result: Any) -> list[str]:
    f = result.failure
    return [f.clause, *(c for c, _ in f.also)]


def diagnose(results: Sequence[Any], explanations: dict[str, list[str]] | None = None) -> Diagnosis:
    """The diagnosis of ``results`` (:class:`~.runner.PropertyResult` items; see the module docstring);
    ``explanations`` (per root clause, the known mistakes that explain it, :mod:`.explanations`) go on
    the roots' lines."""
    failed = [r for r in results if r.failure is not None]
    faults = [r for r in failed if r.status == "fault"]
    strong = [r for r in failed if r.status == "FAIL"]
    weak = [r for r in failed if r.status == "premise"]

    roots: list[RootCause] = []
    follows: dict[str, tuple[str, ...]] = {}

    groups: dict[tuple[Any, ...], RootCause] = {}
    for r in faults:
        f = r.failure
        key = _fault_origin(f)
        if key not in groups:
            groups[key] = RootCause(f.clause, "adapter fault", f.message.splitlines()[0])
        groups[key].established_by.append(r)
        follows[r.label] = ()
    passed = [p for r in results for p in getattr(r, "passed", ())]
    for cause in groups.values():
        cause.explanation = cause.smallest.failure.message.splitlines()[0]
        cause.trigger = trigger(
            [getattr(r.failure, "features", frozenset()) for r in cause.established_by], passed
        )
    roots.extend(groups.values())

    blamed = {c for r in strong for c in _blamed(r)}
    fault_clauses = {r.failure.clause for r in faults if r.failure.clause is not None}
    known = blamed | fault_clauses
    strong_roots = {c for c in blamed if c not in fault_clauses and not (presupposes(c) & known)}
    weak_roots: set[str] = set()
    for r in weak:
        if not _explain(r.failure.clause, strong_roots | fault_clauses):
            weak_roots.add(r.failure.clause)
    weak_roots = {c for c in weak_roots if not (presupposes(c) & (weak_roots | known))}
    strong_roots = {c for c in strong_roots if not (presupposes(c) & weak_roots)}
    root_clauses = strong_roots | weak_roots

    by_clause: dict[str, RootCause] = {}
    for c in sorted(root_clauses, key=spec_order):
        row = clause_row(c)
        kind = "violation" if c in strong_roots else "violation (shown by a premise check)"
        by_clause[c] = RootCause(c, kind, row.summary)
    for r in strong + weak:
        mine = [c for c in _blamed(r) if c in by_clause]
        for c in mine:
            by_clause[c].established_by.append(r)
        if mine:
            follows[r.label] = ()
        else:
            explained = tuple(
                sorted(
                    {x for c in _blamed(r) for x in _explain(c, root_clauses | fault_clauses)}, key=spec_order
                )
            )
            follows[r.label] = explained
            for c in explained:
                if c in by_clause:
                    by_clause[c].consequences.append(r)
    roots.extend(c for c in by_clause.values() if c.established_by)
    for cause in roots:
        if cause.clause is not None and cause.kind != "adapter fault":
            cause.matches = list((explanations or {}).get(cause.clause, ()))
    for cause in roots:
        if cause.kind == "adapter fault":
            for r in strong + weak:
                if cause.clause is not None and cause.clause in _explain(r.failure.clause, {cause.clause}):
                    cause.consequences.append(r)
    return Diagnosis(roots, follows)
