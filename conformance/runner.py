"""The runner: every property under hypothesis, per adapter, with verdicts per clause.

Each property is run by a ``@given(st.data())`` test built here and called directly. When a check
fails, hypothesis shrinks the example and re-raises the minimal failure, which carries its case
(the reproducer). Profiles fix the example budget and determinism: ``quick`` and ``ci`` are
derandomized with no example database (identical runs, nothing written), ``thorough`` is random.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Verbosity, given, settings
from hypothesis import errors as hypothesis_errors
from hypothesis import strategies as st

import infonce_spec
from infonce_spec.clauses import presupposes

from .cases import config_to_dict, save_case
from .clauses import CLAUSES
from .compare import AdapterFault, ConformanceFailure, Mismatch, PremiseFailure
from .diagnosis import Diagnosis, diagnose
from .evidence import missing_claim, partly_missing
from .explanations import explain_roots, level_one
from .harnesses import open_harness
from .harnesses.processes import end_of_run
from .harnesses.torchrun import in_torchrun
from .interrupt import Interrupted
from .interrupt import check as check_interrupt
from .isolation import CallBudget, NotCalled, adapter_frame, set_call_timeout
from .properties.base import Context, Property, properties
from .protocol import Capabilities, LoadedAdapter, load_adapter
from .triggers import case_features

if sys.version_info >= (3, 11):
    from builtins import BaseExceptionGroup
else:  # pragma: no cover - hypothesis depends on the backport there
    from exceptiongroup import BaseExceptionGroup

__all__ = [
    "BUNDLED_ADAPTERS",
    "PROFILES",
    "Failure",
    "Profile",
    "PropertyResult",
    "RunReport",
    "run_adapter",
    "run_property",
]

#: What ``infonce-conformance run`` checks without ``--adapter``: our own torch implementations.
BUNDLED_ADAPTERS: tuple[str, ...] = (
    "infonce_spec.adapters.bundled:uncached",
    "infonce_spec.adapters.bundled:cached",
    "infonce_spec.adapters.bundled:data_parallel",
)


@dataclass(frozen=True)
class Profile:
    """Examples per property (single process / data parallel per world size) and determinism."""

    name: str
    examples: int
    dp_examples: int
    derandomize: bool


PROFILES: dict[str, Profile] = {
    "quick": Profile("quick", examples=8, dp_examples=3, derandomize=True),
    "ci": Profile("ci", examples=40, dp_examples=10, derandomize=True),
    "thorough": Profile("thorough", examples=400, dp_examples=60, derandomize=False),
}


@dataclass
class Failure:
    """A failed property: the clause it blames, the message, the shrunk case and its reproducer.

    ``premise`` is set when the property's premise failed (a simpler variant of the case is wrong;
    the clause is that variant's); ``also`` lists further clauses found on the same case, as
    ``(clause, message)``; ``fault_*`` describe an adapter fault; ``case_size`` is the number of
    array elements of the case (the diagnosis shows the smallest case of each root cause).
    """

    clause: str | None
    message: str
    example: str
    config: dict[str, Any] | None
    mismatch: Mismatch | None
    reproducer: str | None = None
    replay: str | None = None
    premise: str | None = None
    also: list[tuple[str, str]] = field(default_factory=list)
    fault_kind: str | None = None
    fault_call: str | None = None
    frame: str | None = None
    case_size: int = 0
    shapes: str = ""
    #: The features of the failing case (:func:`~.triggers.case_features`): what a fault's trigger is read from.
    features: frozenset[str] = frozenset()
    #: The failing case itself (arrays and config; not saved): the known mistakes are tried on it.
    case: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    #: What the adapter returned on the case of a data-parallel or cached failure (a
    #: :class:`~.mistakes.RankObservation` or :class:`~.mistakes.EncoderObservation`): the known
    #: mistakes are tried on it after the run, when no harness is open any more.
    observed: Any = field(default=None, repr=False, compare=False)


@dataclass
class PropertyResult:
    """The outcome of one property (per world size for data-parallel ones)."""

    property: str
    clauses: tuple[str, ...]
    summary: str
    level: str
    #: "pass"; "FAIL" (its own check failed, premise held); "premise" (a simpler variant of the case
    #: failed: not a verdict on its own clauses); "fault" (the adapter misbehaved); "ERROR" (the
    #: suite could not generate examples); "not claimed"; "not established" (a call it needs was not
    #: made: the adapter hung in that method earlier in the run); "not run" (the run stopped first:
    #: ``--fail-fast``, an interrupt, ``--max-time``; such results are :attr:`RunReport.not_run`).
    status: str
    reason: str = ""
    examples: int = 0
    seconds: float = 0.0
    worst_ratio: float = 0.0
    world_size: int | None = None
    failure: Failure | None = None
    notes: list[str] = field(default_factory=list)
    #: The features of every case that passed (:func:`~.triggers.case_features`), for the triggers.
    passed: list[frozenset[str]] = field(default_factory=list, repr=False)
    #: The first few level-1 cases that passed: the controls of the known mistakes (:mod:`.explanations`).
    passed_cases: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def label(self) -> str:
        return self.property if self.world_size is None else f"{self.property} [W={self.world_size}]"


#: The report's mode line: single process, and the data-parallel harness when it is claimed.
SINGLE_PROCESS = "single process"
WITH_DATA_PARALLEL = "single process; data parallel over gloo worker processes on this machine"
#: The mode line per form of level 3 (``Capabilities.collectives``).
DATA_PARALLEL_MODES: dict[str, str] = {
    "torch": WITH_DATA_PARALLEL,
    "devices": "single process; data parallel on W devices of one process (the adapter's collectives)",
    "rendezvous": (
        "single process; data parallel over one spawned process per rank on this machine "
        "(the adapter's runtime, joined at the suite's rendezvous)"
    ),
}


@dataclass
class RunReport:
    """Everything one adapter's run produced.

    ``stopped`` says why the run ended before every property ran: ``--fail-fast``, or an
    interrupt (``SIGINT``, ``SIGTERM``, ``--max-time N s``; then the run is :attr:`interrupted`);
    ``not_run`` lists the properties it did not reach (status "not run", the reason in ``reason``).
    """

    adapter: str
    capabilities: Capabilities
    profile: str
    world_sizes: tuple[int, ...]
    results: list[PropertyResult]
    seconds: float
    spec_version: str = infonce_spec.SPEC_VERSION
    mode: str = WITH_DATA_PARALLEL
    stopped: str | None = None
    not_run: list[PropertyResult] = field(default_factory=list)
    #: Per root clause, the known mistakes that explain it (:mod:`.explanations`).
    explanations: dict[str, list[str]] = field(default_factory=dict)

    @property
    def interrupted(self) -> str | None:
        """Why the run was interrupted (``SIGINT``, ``SIGTERM``, ``--max-time N s``), or ``None``."""
        return self.stopped if self.stopped not in (None, "--fail-fast") else None

    @property
    def ok(self) -> bool:
        """True iff the run was not interrupted and every claimed property passed (the exit status
        of ``run``)."""
        return not self.interrupted and all(r.status in ("pass", "not claimed") for r in self.results)

    @property
    def status(self) -> str:
        """``interrupted`` (no verdict: partial results), ``pass`` or ``fail``."""
        if self.interrupted:
            return "interrupted"
        return "pass" if self.ok else "fail"

    @property
    def diagnosis(self) -> Diagnosis:
        """Root causes and what follows from them (:mod:`.diagnosis`)."""
        return diagnose(self.results, self.explanations)

    def verdict(self, result: PropertyResult) -> str:
        """A result's verdict after the diagnosis: its status, or "follows from X" for a failure that
        is the consequence of another root cause."""
        if result.failure is None:
            return result.status
        roots = self.diagnosis.follows.get(result.label, ())
        if roots:
            return f"follows from {', '.join(roots)}"
        return "adapter fault" if result.status == "fault" else "FAIL"

    def clause_verdicts(self) -> list[tuple[str, str, str, list[str]]]:
        """``(clause, title, verdict, properties)`` per clause of the spec; a verdict is never
        stronger than its evidence.

        ``FAIL``: the clause is a root cause of the diagnosis (or the output contract an adapter
        fault breaks). ``follows from X``: a failure was filed under the clause, but it is explained
        by the root cause X. Otherwise: ``not checked`` when no property of the run covers the
        clause; ``not claimed`` when no claimed configuration can exercise it (the first entry of
        ``properties`` names what is missing, :func:`~.evidence.missing_claim`); ``pass`` when a
        property checked it on a claimed configuration and passed (``pass (partly not claimed)``
        when a covering property is not claimed, or a part of the clause is:
        :func:`~.evidence.partly_missing`); ``not run (R)`` when the properties that could
        check it did not run (R: ``--fail-fast``, ``SIGINT``, ...); ``not established`` when every
        covering property that ran failed on other clauses or could not be run to the end (the
        adapter hung); ``not claimed`` when every covering property needs something the adapter
        does not claim (each named with what it needs).
        """
        diag = self.diagnosis
        roots = {c.clause: c for c in diag.roots if c.clause is not None}
        filed: dict[str, list[PropertyResult]] = {}
        for r in self.results:
            if r.failure is not None and r.failure.clause is not None:
                for c in [r.failure.clause, *(c for c, _ in r.failure.also)]:
                    filed.setdefault(c, []).append(r)
        rows = []
        for clause, title in CLAUSES:
            covering = [r for r in self.results if clause in r.clauses]
            unreached = [r for r in self.not_run if clause in r.clauses]
            passing = [r for r in covering if r.status == "pass"]
            unclaimed = [r for r in covering if r.status == "not claimed"]
            bad = [r for r in covering if r.status not in ("pass", "not claimed")]
            need = missing_claim(clause, self.capabilities)
            if clause in roots:
                verdict = "FAIL"
                names = [r.label for r in roots[clause].established_by]
            elif clause in filed:
                verdict = f"follows from {', '.join(diag.explained(clause)) or 'an adapter fault'}"
                names = [r.label for r in filed[clause]]
            elif not covering and not unreached:
                verdict, names = "not checked", []
            elif need is not None:
                verdict = "not claimed"
                names = [f"needs {need}", *sorted({r.label for r in covering + unreached})]
                rows.append((clause, title, verdict, names))
                continue
            elif passing:
                partly = partly_missing(clause, self.capabilities)
                verdict = "pass (partly not claimed)" if unclaimed or partly else "pass"
                names = [r.label for r in passing]
                if partly:
                    rows.append((clause, title, verdict, [f"partly needs {partly}", *sorted(set(names))]))
                    continue
            elif unreached:
                verdict = f"not run ({unreached[0].reason})"
                names = [r.label for r in unreached]
            elif bad:
                verdict = "not established"
                names = [f"{r.label} ({self.verdict(r)}{': ' + r.reason if r.reason else ''})" for r in bad]
            else:
                verdict = "not claimed"
                names = [f"{r.label} ({r.reason})" if r.reason else r.label for r in unclaimed]
            rows.append((clause, title, verdict, sorted(set(names))))
        return rows


def _describe(case: dict[str, Any]) -> str:
    """The shrunk example, readable: config, scalars, and arrays (in full when small)."""
    import numpy as np

    lines = []
    for key, value in case.items():
        if hasattr(value, "directions") and hasattr(value, "scale"):
            lines.append(f"{key} = {config_to_dict(value)}")
        elif isinstance(value, np.ndarray):
            if value.size <= 48:
                text = np.array2string(value, precision=6, separator=", ", max_line_width=100)
                lines.append(f"{key} {value.shape} =\n{text}")
            else:
                lines.append(f"{key}: shape {value.shape}, |max| {np.max(np.abs(value)):.4g}")
        else:
            lines.append(f"{key} = {value!r}")
    return "\n".join(lines)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def _settings(profile: Profile, prop: Property, level_examples: int) -> settings:
    return settings(
        max_examples=max(2, round(level_examples * prop.weight)),
        derandomize=profile.derandomize,
        database=None,
        deadline=None,
        print_blob=False,
        report_multiple_bugs=False,
        verbosity=Verbosity.quiet,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.differing_executors,
            HealthCheck.large_base_example,
        ],
    )


#: Examples hypothesis may still try after the first failing one, while shrinking it: enough to
#: shrink a numeric failure to a small case, bounded so that a broken adapter cannot make a property
#: cost hundreds of calls.
SHRINK_LIMIT = 60

#: Shrinking also stops after this many examples without a failing case smaller (in array
#: elements) than the smallest so far. The failure reported is the smallest in array elements seen
#: (of equal ones, the later: hypothesis only tries what is simpler in its own order).
SHRINK_PATIENCE = 20


class _Stop(BaseException):
    """Raised through hypothesis (which does not catch a BaseException, so does not shrink it): an
    adapter fault, or the end of the bounded shrink, carrying the failure to report."""

    def __init__(self, failure: ConformanceFailure | AdapterFault) -> None:
        super().__init__(str(failure))
        self.failure = failure


def _fault(exc: BaseException) -> AdapterFault:
    """An exception the adapter raised, as one :class:`AdapterFault` with the adapter's last frame."""
    if isinstance(exc, AdapterFault):
        return exc
    kind = "memory" if isinstance(exc, MemoryError) else "exception"
    return AdapterFault(
        kind, f"the adapter raised {type(exc).__name__}: {exc} on a valid input", frame=adapter_frame(exc)
    )


def _case_size(case: dict[str, Any]) -> tuple[int, str]:
    import numpy as np

    arrays = {k: v for k, v in case.items() if isinstance(v, np.ndarray)}
    shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in arrays.items() if k in ("queries", "docs"))
    return sum(int(v.size) for v in arrays.values()), shapes


def run_property(
    prop: Property,
    ctx: Context,
    profile: Profile,
    *,
    reproducer_dir: Path | None = None,
) -> PropertyResult:
    """Run one property against ``ctx``'s adapter; never raises for the adapter's failures.

    A failing example is shrunk by hypothesis for at most :data:`SHRINK_LIMIT` further examples (and
    :data:`SHRINK_PATIENCE` without a smaller one); the smallest failing case is reported; an
    adapter fault or a premise failure stops the property at once (it is reported from the first
    case that met it: a fault cannot get simpler, and a premise failure is evidence about a simpler
    rule whose own property shrinks it).
    """
    world = ctx.world_size if prop.level == "data_parallel" else None
    result = PropertyResult(prop.name, prop.clauses, prop.summary, prop.level, "pass", world_size=world)
    reason = prop.requires(ctx.caps)
    if reason is not None:
        result.status, result.reason = "not claimed", f"needs {reason}"
        return result
    checked = prop.checked_clauses(ctx.caps)
    exercised = tuple(c for c in checked if missing_claim(c, ctx.caps) is None)
    if not exercised:  # it could only check clauses that no claimed configuration exercises
        needs = sorted({missing_claim(c, ctx.caps) or "" for c in checked})
        result.status, result.reason = "not claimed", f"needs {'; '.join(needs)}"
        return result
    result.clauses = exercised
    budget = profile.dp_examples if prop.level == "data_parallel" else profile.examples
    state: dict[str, Any] = {"n": 0, "first": None, "best": None, "best_n": 0}

    @_settings(profile, prop, budget)
    @given(st.data())
    def test(data: Any) -> None:
        check_interrupt()  # a safe point: an interrupt stops the run here, between examples
        case = prop.draw(data, ctx)
        state["n"] += 1
        if state["first"] is not None and (
            state["n"] > state["first"] + SHRINK_LIMIT or state["n"] > state["best_n"] + SHRINK_PATIENCE
        ):
            raise _Stop(state["best"])
        try:
            prop.check(case, ctx)
            result.passed.append(case_features(case))
            if len(result.passed_cases) < PASSED_CASES_KEPT and level_one(case):
                result.passed_cases.append(case)
        except PremiseFailure as exc:
            exc.case = case  # evidence about a simpler rule, whose own property shrinks it: not shrunk here
            raise _Stop(exc) from None
        except ConformanceFailure as exc:
            exc.case = case
            if state["first"] is None:
                state["first"] = state["n"]
            if state["best"] is None or _case_size(case)[0] <= _case_size(state["best"].case)[0]:
                state["best"], state["best_n"] = exc, state["n"]
            raise
        except Exception as exc:
            check_interrupt()  # a worker killed by the same signal is the interrupt, not a fault
            fault = _fault(exc)
            fault.case = case
            raise _Stop(fault) from exc

    start = time.perf_counter()
    failure: ConformanceFailure | AdapterFault | None = None
    try:
        try:
            test()
        except BaseExceptionGroup as group:  # hypothesis' FlakyFailure: the failure did not reproduce
            first = _first_failure(group)
            if first is None:
                raise
            result.notes.append("flaky: the failing example did not fail again when replayed by hypothesis")
            raise first from None
    except _Stop as stop:
        failure = stop.failure
    except ConformanceFailure as exc:  # hypothesis' own end of shrinking: the smallest seen is reported
        best = state["best"]
        smaller = best is not None and _case_size(best.case)[0] < _case_size(exc.case or {})[0]
        failure = best if smaller else exc
    except (hypothesis_errors.Unsatisfiable, hypothesis_errors.FailedHealthCheck) as exc:
        result.status, result.reason = "ERROR", f"the suite could not generate examples: {exc}"
    finally:
        result.seconds = time.perf_counter() - start
    if isinstance(failure, NotCalled):  # the method hung earlier in the run: no new evidence
        result.status, result.reason = "not established", failure.detail
    elif failure is not None:
        _record_failure(result, failure, prop, ctx, world, reproducer_dir)
    result.examples = state["n"]
    result.worst_ratio = ctx.worst_ratio
    result.notes = sorted(set(ctx.notes) | set(result.notes))
    return result


def _record_failure(
    result: PropertyResult,
    exc: ConformanceFailure | AdapterFault,
    prop: Property,
    ctx: Context,
    world: int | None,
    reproducer_dir: Path | None,
) -> None:
    """Fill ``result`` from the failure ``exc`` and write its reproducer."""
    case = exc.case or {}
    config = case.get("config")
    size, shapes = _case_size(case)
    if isinstance(exc, AdapterFault):
        result.status = "fault"
        message = exc.detail + (f"\n  in {exc.frame}" if exc.frame else "")
        if exc.call or exc.rank is not None:
            where = " ".join(
                x for x in (exc.call and f"call {exc.call}", exc.rank is not None and f"rank {exc.rank}") if x
            )
            message += f"\n  ({where})"
        failure = Failure(
            exc.clause,
            message,
            _describe(case),
            config_to_dict(config) if config is not None else None,
            None,
            fault_kind=exc.kind,
            fault_call=exc.call,
            frame=exc.frame,
        )
    else:
        result.status = "premise" if isinstance(exc, PremiseFailure) else "FAIL"
        failure = Failure(
            exc.clause,
            exc.detail,
            _describe(case),
            config_to_dict(config) if config is not None else None,
            exc.mismatch,
            premise=getattr(exc, "premise", None),
            also=[(a.clause, a.detail) for a in exc.also],
        )
    failure.case_size, failure.shapes = size, shapes
    failure.features = case_features(case)
    failure.case = case or None
    failure.observed = getattr(exc, "observed", None)
    result.failure = failure
    if reproducer_dir is not None and case:
        path = Path(reproducer_dir) / f"{_slug(ctx.caps.name)}__{_slug(result.label)}.npz"
        meta = {
            "property": prop.name,
            "clause": exc.clause,
            "adapter": ctx.loaded.spec,
            "world_size": world,
            "dtype": ctx.dtype,
            "spec_version": infonce_spec.SPEC_VERSION,
            "message": failure.message,
        }
        save_case(path, case, meta)
        failure.reproducer = str(path)
        failure.replay = f"infonce-conformance replay {path} --adapter {ctx.loaded.spec}"


#: Passing level-1 cases kept per property (the controls of the explanations).
PASSED_CASES_KEPT = 2


def _explanations(report: RunReport, loaded: LoadedAdapter) -> dict[str, list[str]]:
    """The known mistakes that explain the report's root causes; nothing when asking the adapter again
    fails (its faults are the run's to report, not the explanation's; the reason goes to stderr)."""
    try:
        return explain_roots(report.diagnosis.roots, report.results, Context(loaded))
    except Interrupted as exc:  # the verdicts stand; the run reads as interrupted, as it was
        report.stopped = exc.reason
        return {}
    except Exception as exc:
        print(f"infonce-conformance: no explanations ({type(exc).__name__}: {exc})", file=sys.stderr)
        return {}
    finally:
        end_of_run()


def _first_failure(group: BaseExceptionGroup) -> ConformanceFailure | None:
    for exc in group.exceptions:
        if isinstance(exc, ConformanceFailure):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = _first_failure(exc)
            if found is not None:
                return found
    return None


def run_adapter(
    spec: str | LoadedAdapter,
    *,
    profile: str | Profile = "ci",
    world_sizes: Iterable[int] = (1, 2, 3, 4),
    reproducer_dir: str | Path | None = "infonce-conformance-failures",
    select: Callable[[Property], bool] | None = None,
    timeout: float = 60.0,
    on_result: Callable[[PropertyResult], None] | None = None,
    on_start: Callable[[str], None] | None = None,
    fail_fast: bool = False,
) -> RunReport:
    """Run every property against the adapter ``spec`` (``package.module:attribute``).

    With ``fail_fast`` the run stops at the first property that blames a clause with its premise met
    once every property that could still show a root under it has run (those covering a clause it
    presupposes), or at the first adapter fault; the diagnosis then names the root among them.

    Under ``torchrun`` (see :func:`~.harnesses.torchrun.in_torchrun`) only the data-parallel properties run,
    at the launcher's world size, each rank computing its own part in-process.
    """
    loaded = spec if isinstance(spec, LoadedAdapter) else load_adapter(spec)
    set_call_timeout(timeout)
    prof = PROFILES[profile] if isinstance(profile, str) else profile
    caps = loaded.capabilities
    props = [p for p in properties() if select is None or select(p)]
    rdir = Path(reproducer_dir) if reproducer_dir is not None else None
    results: list[PropertyResult] = []
    start = time.perf_counter()

    def record(r: PropertyResult) -> None:
        results.append(r)
        if on_result is not None:
            on_result(r)

    def wanted(prop: Property) -> bool:
        """Under ``fail_fast``, after a failure only what could still be its root: the properties
        covering a clause the failed clauses presuppose (nothing after an adapter fault)."""
        failed = [r for r in results if r.status in ("FAIL", "fault")] if fail_fast else []
        if not failed:
            return True
        if any(r.status == "fault" for r in failed):
            return False
        blamed = {c for r in failed for c in (r.failure.clause, *(a for a, _ in r.failure.also)) if c}
        needed = set().union(*(presupposes(c) for c in blamed)) - blamed
        return bool(needed & set(prop.clauses))

    def done() -> bool:
        return (
            fail_fast
            and any(r.status in ("FAIL", "fault") for r in results)
            and not any(wanted(p) for p in props if not any(r.property == p.name for r in results))
        )

    torchrun = in_torchrun()
    if torchrun:
        import os

        world_sizes = (int(os.environ["WORLD_SIZE"]),)
        if prof.name != "thorough":
            prof = Profile(prof.name, prof.examples, prof.dp_examples, True)
    # world sizes only where data parallelism is claimed (the report's header shows them)
    sizes = tuple(w for w in world_sizes if w <= caps.max_world_size) if caps.data_parallel else ()
    budget = CallBudget()  # a hang costs about one timeout per method, across the world sizes
    dp_props = [p for p in props if p.level == "data_parallel"]
    claimed = [p for p in dp_props if p.requires(caps) is None]
    unclaimed = [
        PropertyResult(
            p.name, p.clauses, p.summary, p.level, "not claimed", reason=f"needs {p.requires(caps)}"
        )
        for p in dp_props
        if p.requires(caps) is not None
    ]
    planned = [] if torchrun else [(p, None) for p in props if p.level != "data_parallel"]
    planned += [(p, w) for w in sizes for p in claimed if getattr(p, "min_world_size", 1) <= w]
    stopped: str | None = None
    harness: Any = None
    try:
        if not torchrun:
            for prop in (p for p in props if p.level != "data_parallel"):
                check_interrupt()
                if done():
                    break
                if not wanted(prop):
                    continue
                if on_start is not None:
                    on_start(prop.name)
                record(run_property(prop, Context(loaded), prof, reproducer_dir=rdir))
        for r in unclaimed:
            record(r)
        for w in sizes if claimed and not done() else ():
            todo = [p for p in claimed if getattr(p, "min_world_size", 1) <= w]
            check_interrupt()
            if not todo or done():
                continue
            harness = open_harness(loaded, w, timeout=timeout, torchrun=torchrun)
            if hasattr(harness, "budget"):
                harness.budget = budget
            try:
                for prop in todo:
                    check_interrupt()
                    if done():
                        break
                    if not wanted(prop):
                        continue
                    if on_start is not None:
                        on_start(f"{prop.name} [W={w}]")
                    record(
                        run_property(
                            prop, Context(loaded, harness=harness, world_size=w), prof, reproducer_dir=rdir
                        )
                    )
            except BaseException:  # an interrupt: a rank may be busy, hung or gone, so no graceful wait
                harness.close(graceful=False)
                raise
            else:
                harness.close()
    except Interrupted as exc:  # SIGINT, SIGTERM, --max-time: the report of what finished
        stopped = exc.reason
    finally:
        end_of_run()
    results.extend([r for r in unclaimed if all(r is not x for x in results)])
    ran = {(r.property, r.world_size) for r in results}
    left = [(p, w) for p, w in planned if (p.name, w) not in ran]
    if stopped is None and left and fail_fast:
        stopped = "--fail-fast"
    not_run = [
        PropertyResult(p.name, p.clauses, p.summary, p.level, "not run", reason=stopped, world_size=w)
        for p, w in left
        if stopped is not None
    ]
    report = RunReport(
        loaded.spec,
        caps,
        prof.name,
        sizes,
        results,
        time.perf_counter() - start,
        mode=DATA_PARALLEL_MODES[caps.collectives] if caps.data_parallel else SINGLE_PROCESS,
        stopped=stopped,
        not_run=not_run,
    )
    if not report.interrupted and not torchrun and any(r.status in ("FAIL", "premise") for r in results):
        report.explanations = _explanations(report, loaded)
    if torchrun:
        device = getattr(harness, "device", "-")
        report.mode = (
            f"torchrun (WORLD_SIZE={sizes[0] if sizes else '?'}, device {device}): data-parallel "
            "properties only; run without torchrun for the rest"
        )
    return report
