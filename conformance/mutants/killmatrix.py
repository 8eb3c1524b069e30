"""The kill matrix with diagnosis: the real runner against every mutant, read through the clause table.

Per mutant, :func:`diagnose` runs :func:`~..runner.run_adapter` exactly as a user's ``infonce-conformance
run --profile ci`` would (every property, hypothesis' bounded shrinking, the diagnosis), without
writing reproducers. The mutant is

* **caught** when the run fails (some property did not pass), and
* **diagnosed right** ("root clause right?") when the root causes of the diagnosis are exactly the
  mutant's :attr:`~.catalogue.Mutant.expected_roots` and the clause table's ``FAIL`` set (the clauses
  whose verdict is exactly ``FAIL``) is the tagged clause alone -- every other failing clause must read
  "follows from <tag>". A crashing mutant (``fault=True``) is right with one adapter-fault root and no
  ``FAIL``.

World sizes: :data:`WORLD_SIZES` (W = 2) for every mutant, the embeddings-level ones included. The
data-parallel properties are not skipped for a level-1 mutant, because a level-1 bug is exactly what
they could file as a false DP-1/DP-2/DP-3; W = 2 is the smallest world that shows
both a data-parallel bug and such a false filing (W = 1 is the single process through the harness).

:func:`first_verdict` is the edit-run loop: ``run_adapter(..., fail_fast=True)``, the seconds to the
first established root cause and that cause (``benchmarks/bench_fail_fast.py`` times it).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..mistakes import MISTAKES
from ..properties.base import Property
from ..runner import RunReport, run_adapter
from .catalogue import CATALOGUE, FAULT, Mutant

__all__ = [
    "WORLD_SIZES",
    "Diagnosed",
    "Row",
    "diagnose",
    "diagnose_all",
    "diagnose_claimed",
    "first_verdict",
    "row_of",
]

#: The world sizes of the kill matrix (see the module docstring).
WORLD_SIZES: tuple[int, ...] = (2,)


@dataclass
class Row:
    """One run, as the kill matrix records it (plain data: saved as JSON, rendered as Markdown).

    ``expected``: the root causes a right diagnosis finds (empty for a correct implementation);
    ``roots``: the root causes found (clause IDs; :data:`~.catalogue.FAULT` for an adapter fault that
    breaks no output contract); ``fail_set``: the clauses whose verdict is exactly ``FAIL``;
    ``follows``: clause -> its "follows from ..." verdict; ``root_lines``: the report's opening lines.
    """

    id: str
    spec: str
    tag: str
    level: str
    expected: list[str]
    ok: bool
    roots: list[str]
    fail_set: list[str]
    follows: dict[str, str]
    root_lines: list[str]
    failed_properties: list[str]
    seconds: float
    profile: str
    world_sizes: list[int]
    #: The claim the run was made under (:data:`~.claims.CLAIMS`; ``""``: the adapter's own).
    claim: str = ""
    #: The known mistakes the report names on the roots' lines (``matches: ...`` texts).
    explanations: list[str] = field(default_factory=list)

    @property
    def explained_by(self) -> list[str]:
        """The ids of the known mistakes named on the roots' lines."""
        return sorted({m for text in self.explanations for m in re.findall(r"known mistake `([^`]+)`", text)})

    @property
    def explanation_right(self) -> bool | None:
        """``True`` when every named mistake is one this mutant has, ``False`` when one is not,
        ``None`` when nothing is named."""
        if not self.explained_by:
            return None
        return all(self.id in MISTAKES[m].mutants for m in self.explained_by if m in MISTAKES)

    @property
    def caught(self) -> bool:
        return not self.ok

    @property
    def root_right(self) -> bool:
        """The roots are exactly the expected ones and the ``FAIL`` set is the tag alone (no FAIL for a
        fault that breaks no output contract)."""
        clauses = sorted(set(self.expected) - {FAULT})
        return sorted(self.roots) == sorted(self.expected) and sorted(self.fail_set) == clauses

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _root_label(cause: Any) -> str:
    return cause.clause if cause.clause is not None else FAULT


def row_of(
    report: RunReport,
    *,
    id: str,
    tag: str = "",
    level: str = "",
    expected: Iterable[str] = (),
    seconds: float,
) -> Row:
    """The kill-matrix row of a finished run (``expected`` empty: a correct implementation)."""
    verdicts = report.clause_verdicts()
    diag = report.diagnosis
    return Row(
        id=id,
        spec=report.adapter,
        tag=tag,
        level=level,
        expected=sorted(expected),
        ok=report.ok,
        roots=sorted({_root_label(c) for c in diag.roots}),
        fail_set=[c for c, _, v, _ in verdicts if v == "FAIL"],
        follows={c: v for c, _, v, _ in verdicts if v.startswith("follows from")},
        root_lines=[c.line() for c in diag.roots],
        failed_properties=[
            f"{r.label}: {r.status} {r.failure.clause or FAULT} -> {report.verdict(r)}"
            for r in report.results
            if r.failure
        ],
        seconds=round(seconds, 2),
        profile=report.profile,
        world_sizes=list(report.world_sizes),
        explanations=[text for c in diag.roots for text in c.matches],
    )


@dataclass
class Diagnosed:
    """A mutant and its kill-matrix row."""

    mutant: Mutant
    row: Row


def run(
    spec: str,
    *,
    profile: str = "ci",
    world_sizes: Iterable[int] = WORLD_SIZES,
    timeout: float = 60.0,
    select: Callable[[Property], bool] | None = None,
) -> tuple[RunReport, float]:
    """One run of the suite (every property unless ``select``) against ``spec``, no reproducers written,
    and its seconds."""
    start = time.perf_counter()
    report = run_adapter(
        spec,
        profile=profile,
        world_sizes=tuple(world_sizes),
        reproducer_dir=None,
        timeout=timeout,
        select=select,
    )
    return report, time.perf_counter() - start


def diagnose(
    mutant: Mutant | str,
    *,
    profile: str = "ci",
    world_sizes: Iterable[int] = WORLD_SIZES,
    timeout: float = 60.0,
) -> Diagnosed:
    """The full suite against one mutant, read through the clause table."""
    m = CATALOGUE[mutant] if isinstance(mutant, str) else mutant
    report, seconds = run(m.spec, profile=profile, world_sizes=world_sizes, timeout=timeout)
    row = row_of(report, id=m.id, tag=m.clause, level=m.level, expected=m.expected_roots, seconds=seconds)
    return Diagnosed(m, row)


def diagnose_claimed(
    mutant: Mutant | str,
    claim: str,
    *,
    profile: str = "ci",
    world_sizes: Iterable[int] = WORLD_SIZES,
    timeout: float = 60.0,
) -> Diagnosed:
    """:func:`diagnose` of the mutant re-declared under ``claim`` (:mod:`.claims`)."""
    from .claims import claimed_spec

    m = CATALOGUE[mutant] if isinstance(mutant, str) else mutant
    report, seconds = run(
        claimed_spec(m.id, claim), profile=profile, world_sizes=world_sizes, timeout=timeout
    )
    row = row_of(report, id=m.id, tag=m.clause, level=m.level, expected=m.expected_roots, seconds=seconds)
    row.claim = claim
    return Diagnosed(m, row)


def first_verdict(
    mutant: Mutant | str,
    *,
    profile: str = "ci",
    world_sizes: Iterable[int] = WORLD_SIZES,
    timeout: float = 60.0,
) -> tuple[float, str, str]:
    """``--fail-fast`` against one mutant: ``(seconds, roots, line)`` -- the root causes of the stopped
    run (normally one: the first established) and the first one's report line (``""`` when it passed)."""
    m = CATALOGUE[mutant] if isinstance(mutant, str) else mutant
    start = time.perf_counter()
    report = run_adapter(
        m.spec,
        profile=profile,
        world_sizes=tuple(world_sizes),
        reproducer_dir=None,
        timeout=timeout,
        fail_fast=True,
    )
    seconds = time.perf_counter() - start
    roots = report.diagnosis.roots
    if not roots:
        return seconds, "", ""
    return seconds, ", ".join(sorted({_root_label(c) for c in roots})), roots[0].line()


def diagnose_all(
    ids: Iterable[str] | None = None,
    *,
    profile: str = "ci",
    world_sizes: Iterable[int] = WORLD_SIZES,
    on_row: Callable[[Diagnosed], Any] | None = None,
) -> list[Diagnosed]:
    """:func:`diagnose` for every mutant of the catalogue (or ``ids``), in catalogue order."""
    out = []
    for mid in ids if ids is not None else list(CATALOGUE):
        d = diagnose(mid, profile=profile, world_sizes=world_sizes)
        out.append(d)
        if on_row is not None:
            on_row(d)
    return out
