"""Run the conformance suite against the catalogue: which clause flags which mutant, and how fast.

:func:`run_suite` runs the suite's properties (plus :func:`extra_properties`, none at present) in
the runner's order -- single-process properties, then the data-parallel ones per world size --
through the runner's own :func:`~..runner.run_property` and :class:`~..distributed.GlooHarness`,
recording when each verdict arrived, and can stop at the first verdict that settles the question
(fail-fast: the runner has no such mode). With ``shrink=False`` a property also stops at its first
failing example instead of letting hypothesis shrink it (the verdict is then the unshrunk example's;
every check is deterministic given its case, so it is the same verdict, only a larger example), which
is what makes a targeted kill take about as long as *finding* the bug. :func:`kill` runs one mutant: ``targeted`` (only the
properties that cover its clause, stopping at the first failure filed under it; the meta-test's
mode) or full (every property, the complete row of the kill matrix). A mutant is **killed** when a
property fails *on its tagged clause* (``Failure.clause``, the suite's own clause verdict).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..compare import ConformanceFailure
from ..distributed import GlooHarness, stop_forkserver
from ..properties.base import Context, Property, properties
from ..protocol import LoadedAdapter, load_adapter
from ..runner import PROFILES, Failure, PropertyResult, run_property
from .catalogue import CATALOGUE, Mutant

__all__ = ["FAILED", "Kill", "SuiteRun", "extra_properties", "kill", "kill_all", "run_suite"]

FAILED = ("FAIL", "ERROR")


def extra_properties() -> list[Property]:
    """Properties the suite does not have yet, run after its single-process ones. None at present:
    CACHE-5 (:class:`~..properties.cached.LossStageMemory`) is registered in the suite."""
    return []


class _Found(BaseException):
    """Raised through hypothesis (a BaseException is not shrunk) at the first failing example."""

    def __init__(self, failure: ConformanceFailure) -> None:
        super().__init__(str(failure))
        self.failure = failure


class _Timed:
    """A property wrapper that notes when its first failing example was found (before shrinking) and,
    with ``shrink=False``, stops the property there."""

    def __init__(self, prop: Property, shrink: bool) -> None:
        self._prop = prop
        self._shrink = shrink
        self.found_at: float | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._prop, name)

    def check(self, case: dict[str, Any], ctx: Context) -> None:
        try:
            self._prop.check(case, ctx)
        except Exception as exc:
            if self.found_at is None:
                self.found_at = time.perf_counter()
            if self._shrink:
                raise
            if not isinstance(exc, ConformanceFailure):
                exc = ConformanceFailure(
                    self._prop.clause, f"the adapter raised {type(exc).__name__}: {exc} on a valid input"
                )
            exc.case = case
            raise _Found(exc) from None


def _run_one(prop: Property, ctx: Context, profile: Any, shrink: bool) -> tuple[PropertyResult, float | None]:
    timed = _Timed(prop, shrink)
    try:
        return run_property(timed, ctx, profile, reproducer_dir=None), timed.found_at  # type: ignore[arg-type]
    except _Found as found:
        exc = found.failure
        world = ctx.world_size if prop.level == "data_parallel" else None
        result = PropertyResult(prop.name, prop.clauses, prop.summary, prop.level, "FAIL", world_size=world)
        result.failure = Failure(
            exc.clause, exc.detail, "(first failing example, not shrunk)", None, exc.mismatch
        )
        return result, timed.found_at


@dataclass
class SuiteRun:
    """Verdicts in arrival order, each with the seconds since the start of the run; ``found`` holds,
    per failed property label, the seconds until its first failing example (before shrinking)."""

    spec: str
    results: list[tuple[float, PropertyResult]] = field(default_factory=list)
    found: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(r.status not in FAILED for _, r in self.results)

    def failures(self) -> list[tuple[float, PropertyResult]]:
        return [(t, r) for t, r in self.results if r.status in FAILED]

    def flagged(self) -> dict[str, list[str]]:
        """clause -> the properties that failed on it (an ERROR without a failure: its first clause)."""
        out: dict[str, list[str]] = {}
        for _, r in self.failures():
            clause = r.failure.clause if r.failure is not None else r.clauses[0]
            out.setdefault(clause, []).append(r.label)
        return out

    def first_failure(self, clause: str | None = None, *, verdict: bool = False) -> float | None:
        """Seconds until the first failing example (``verdict``: until the property's verdict, shrinking
        included) of the first property that failed (on ``clause``, if given)."""
        for t, r in self.failures():
            if clause is None or (r.failure is not None and r.failure.clause == clause):
                return t if verdict else self.found.get(r.label, t)
        return None


def run_suite(
    spec: str | LoadedAdapter,
    *,
    profile: str = "ci",
    world_sizes: Sequence[int] = (1, 2, 3, 4),
    select: Callable[[Property], bool] | None = None,
    stop: Callable[[PropertyResult], bool] | None = None,
    extras: bool = True,
    shrink: bool = True,
    timeout: float = 60.0,
) -> SuiteRun:
    """The suite against ``spec``, in the runner's order; stops after the first result for which
    ``stop`` is true. Never raises for the adapter's failures."""
    loaded = spec if isinstance(spec, LoadedAdapter) else load_adapter(spec)
    prof = PROFILES[profile]
    caps = loaded.capabilities
    props = [*properties(), *(extra_properties() if extras else [])]
    props = [p for p in props if select is None or select(p)]
    run = SuiteRun(loaded.spec)
    start = time.perf_counter()

    def record(outcome: tuple[PropertyResult, float | None]) -> bool:
        result, found_at = outcome
        run.results.append((time.perf_counter() - start, result))
        if found_at is not None and result.status in FAILED:
            run.found[result.label] = found_at - start
        return stop is not None and stop(result)

    try:
        for prop in (p for p in props if p.level != "data_parallel"):
            if record(_run_one(prop, Context(loaded), prof, shrink)):
                return run
        for prop in (p for p in props if p.level == "data_parallel"):
            reason = prop.requires(caps)
            if reason is not None:
                result = PropertyResult(prop.name, prop.clauses, prop.summary, prop.level, "not claimed")
                result.reason = f"needs {reason}"
                record((result, None))
        claimed = [p for p in props if p.level == "data_parallel" and p.requires(caps) is None]
        sizes = [w for w in world_sizes if w <= caps.max_world_size] if caps.data_parallel else []
        for w in sizes if claimed else []:
            todo = [p for p in claimed if getattr(p, "min_world_size", 1) <= w]
            if not todo:
                continue
            harness = GlooHarness(loaded.spec, w, timeout=timeout)
            try:
                for prop in todo:
                    ctx = Context(loaded, harness=harness, world_size=w)
                    if record(_run_one(prop, ctx, prof, shrink)):
                        return run
            finally:
                harness.close()
    finally:
        stop_forkserver()
        run.seconds = time.perf_counter() - start
    return run


@dataclass
class Kill:
    """One mutant's run: killed iff a property failed on the tagged clause."""

    mutant: Mutant
    run: SuiteRun
    targeted: bool

    @property
    def killed(self) -> bool:
        return self.mutant.clause in self.run.flagged()

    @property
    def detected(self) -> bool:
        """Some property failed (on any clause)."""
        return bool(self.run.failures())

    @property
    def seconds_to_kill(self) -> float | None:
        """Seconds until the first failing example of the property that killed it."""
        return self.run.first_failure(self.mutant.clause)

    @property
    def seconds_to_first_failure(self) -> float | None:
        """Seconds until the first failing example of any property (any clause)."""
        return self.run.first_failure()


def kill(
    mutant: Mutant | str,
    *,
    profile: str = "ci",
    targeted: bool = True,
    shrink: bool | None = None,
    timeout: float = 60.0,
) -> Kill:
    """Run the suite against one mutant. ``targeted``: only properties covering its clause, data
    parallel at W = 2, 3, 4 (W = 1 cannot show a gather bug), stopping once it is killed; otherwise the
    whole suite. ``shrink``: let hypothesis shrink each failure (slow; the default is not to)."""
    m = CATALOGUE[mutant] if isinstance(mutant, str) else mutant
    if targeted:

        def select(p: Property) -> bool:
            return m.clause in p.clauses

        def stop(r: PropertyResult) -> bool:
            return r.failure is not None and r.failure.clause == m.clause

        run = run_suite(
            m.spec,
            profile=profile,
            world_sizes=(2, 3, 4),
            select=select,
            stop=stop,
            shrink=bool(shrink),
            timeout=timeout,
        )
    else:
        run = run_suite(m.spec, profile=profile, shrink=bool(shrink), timeout=timeout)
    return Kill(m, run, targeted)


def kill_all(
    ids: Iterable[str] | None = None,
    *,
    profile: str = "ci",
    targeted: bool = True,
    shrink: bool | None = None,
    on_kill: Callable[[Kill], Any] | None = None,
) -> list[Kill]:
    """:func:`kill` for every mutant of the catalogue (or ``ids``), in catalogue order."""
    kills = []
    for mid in ids if ids is not None else list(CATALOGUE):
        k = kill(mid, profile=profile, targeted=targeted, shrink=shrink)
        kills.append(k)
        if on_kill is not None:
            on_kill(k)
    return kills
