"""pytest plugin: the conformance suite as one pytest test per property (per world size for data parallel).

Two ways in (the plugin is registered through the ``pytest11`` entry point, so installing
infonce-spec is enough):

* command line -- ``pytest --infonce-adapter mymod:MyAdapter [--infonce-profile ci]
  [--infonce-world-sizes 1,2] --junitxml conformance.xml`` adds the tests to whatever else is collected;
* one line in your own test module --
  ``test_conformance = conformance_tests("mymod:MyAdapter")`` (a parametrized test function).

A property the adapter does not claim is *skipped* with the reason ``not claimed: needs ...``; a
failure shows the clause, the worst element against its bound, the shrunk example and the replay
command. Runs are derandomized with no hypothesis database (``quick`` and ``ci`` profiles), so CI is
deterministic and writes nothing but the reproducers of failures. The generated tests are collected
like any others ("collected N items" counts them; ``-k`` selects among them); an adapter that
cannot be loaded is one collection error, in one line. Without ``--infonce-adapter`` the
plugin adds nothing to the collection (it is loaded in every pytest run of an environment that has
infonce-spec installed).
"""

from __future__ import annotations

import atexit
from collections.abc import Iterable, Sequence
from typing import Any

import pytest

__all__ = [
    "conformance_tests",
    "pytest_addoption",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "pytest_sessionfinish",
]

_HARNESSES: dict[tuple[str, int], Any] = {}
_ADAPTERS: dict[str, Any] = {}
#: Every conformance test's result per adapter, for the diagnosis printed at the end of the session.
_RESULTS: dict[str, list[Any]] = {}
#: The test IDs collected per adapter (what an interrupted session did not reach).
_COLLECTED: dict[str, list[str]] = {}


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("infonce-conformance", "infonce-spec conformance suite")
    group.addoption(
        "--infonce-adapter",
        action="append",
        default=[],
        metavar="MOD:ATTR",
        help="generate one conformance test per property for this adapter (repeatable)",
    )
    group.addoption(
        "--infonce-profile",
        default="ci",
        choices=["quick", "ci", "thorough"],
        help="example budget of the conformance tests (default: ci, derandomized)",
    )
    group.addoption(
        "--infonce-world-sizes",
        default="1,2",
        metavar="1,2",
        help="data-parallel world sizes of the conformance tests (default: 1,2)",
    )
    group.addoption(
        "--infonce-reproducers",
        default="infonce-conformance-failures",
        metavar="DIR",
        help="folder for the .npz reproducers of failures",
    )


def pytest_configure(config: Any) -> None:
    if config.getoption("infonce_adapter", default=None):
        from .cli import keep_hypothesis_out_of_the_working_folder

        keep_hypothesis_out_of_the_working_folder()


def _close_all() -> None:
    for harness in list(_HARNESSES.values()):
        harness.close()
    _HARNESSES.clear()
    from .harnesses.processes import stop_forkserver

    stop_forkserver()


atexit.register(_close_all)


def pytest_sessionfinish(session: Any, exitstatus: Any) -> None:
    if _HARNESSES:
        _close_all()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: Any = 0) -> None:
    """The diagnosis of each adapter's conformance tests: its root causes, one line each (the other
    failing tests follow from them). An interrupted session says INTERRUPTED first, with what
    finished and what did not: its results are no verdict."""
    from .diagnosis import diagnose

    if exitstatus == pytest.ExitCode.INTERRUPTED and _COLLECTED:
        terminalreporter.section("infonce-conformance: INTERRUPTED", red=True, bold=True)
        for spec, ids in _COLLECTED.items():
            outcomes = {
                report.nodeid: category
                for category in ("passed", "failed", "skipped")
                for report in terminalreporter.stats.get(category, [])
                if getattr(report, "nodeid", "").startswith(f"{spec}::")
            }
            counts = ", ".join(
                f"{list(outcomes.values()).count(c)} {c}" for c in ("passed", "failed", "skipped")
            )
            terminalreporter.line(
                f"INTERRUPTED {spec}: no verdict; {len(outcomes)} of {len(ids)} conformance tests "
                f"finished ({counts}), {len(ids) - len(outcomes)} not run"
            )
    for spec, results in _RESULTS.items():
        roots = diagnose(results).roots
        if roots:
            terminalreporter.section(f"infonce-conformance root causes: {spec}")
            for i, cause in enumerate(roots, 1):
                terminalreporter.line(f"{i}. {cause.line()}")


def _loaded(spec: str) -> Any:
    from .protocol import load_adapter

    if spec not in _ADAPTERS:
        _ADAPTERS[spec] = load_adapter(spec)
    return _ADAPTERS[spec]


def _harness(spec: str, world_size: int) -> Any:
    from .harnesses import open_harness

    key = (spec, world_size)
    if key not in _HARNESSES:
        _HARNESSES[key] = open_harness(_loaded(spec), world_size, timeout=60.0)
    return _HARNESSES[key]


def _cases(world_sizes: Iterable[int]) -> list[tuple[str, int | None, str]]:
    """``(property, world size or None, test id)`` for every property."""
    from .properties import properties

    out: list[tuple[str, int | None, str]] = []
    for prop in properties():
        if prop.level != "data_parallel":
            out.append((prop.name, None, prop.name))
            continue
        for w in world_sizes:
            if w >= getattr(prop, "min_world_size", 1):
                out.append((prop.name, w, f"{prop.name}[W={w}]"))
    return out


class ConformanceFailed(Exception):
    """Raised by a conformance test; its text is the failure report."""


def _failure_text(result: Any) -> str:
    f = result.failure
    if f is None:
        return f"[{result.clauses[0]}] {result.label}: {result.reason}"
    if result.status == "premise":
        head = f"[premise not met: {f.clause}] {result.label} could not check its own clauses"
    elif result.status == "fault":
        head = f"[adapter fault{': ' + f.clause if f.clause else ''}] {result.label}"
    else:
        head = f"[{f.clause}] {result.label}"
    lines = [f"{head}: {f.message}"]
    if f.mismatch is not None:
        m = f.mismatch
        lines.append(
            f"largest error: {m.quantity} at {m.index}: computed {m.computed:.6g}, expected {m.expected:.6g}, "
            f"|diff| {m.difference:.3g} > allowed {m.bound:.3g}"
        )
    lines += ["shrunk example:", f.example]
    if f.replay:
        lines.append(f"replay: {f.replay}")
    return "\n".join(lines)


def run_one(
    spec: str,
    name: str,
    world_size: int | None,
    *,
    profile: str = "ci",
    reproducer_dir: str | None = "infonce-conformance-failures",
) -> None:
    """Run one property as a pytest test: pass, skip (not claimed) or raise :class:`ConformanceFailed`."""
    from .properties.base import REGISTRY, Context, properties
    from .runner import PROFILES, run_property

    properties()
    prop = REGISTRY[name]()
    loaded = _loaded(spec)
    reason = prop.requires(loaded.capabilities)
    if reason is not None:
        pytest.skip(f"not claimed: needs {reason}")
    harness = None
    if prop.level == "data_parallel":
        assert world_size is not None
        if world_size > loaded.capabilities.max_world_size:
            pytest.skip(f"not claimed: max_world_size {loaded.capabilities.max_world_size}")
        harness = _harness(spec, world_size)
    ctx = Context(loaded, harness=harness, world_size=world_size or 1)
    from pathlib import Path

    result = run_property(
        prop, ctx, PROFILES[profile], reproducer_dir=Path(reproducer_dir) if reproducer_dir else None
    )
    _RESULTS.setdefault(spec, []).append(result)
    if result.status == "not claimed":  # it checks only clauses no claimed configuration exercises
        pytest.skip(f"not claimed: {result.reason}")
    if result.status != "pass":
        raise ConformanceFailed(_failure_text(result))


class ConformanceCollector(pytest.Collector):
    """One adapter's generated tests (JUnit classname = the adapter's name). Collecting loads the
    adapter, so an adapter that cannot be loaded is one collection error, in one line."""

    def __init__(self, *, spec: str, sizes: tuple[int, ...], options: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec, self.sizes, self.options = spec, sizes, options

    def collect(self) -> list[Any]:
        _loaded(self.spec)
        _COLLECTED[self.spec] = [test_id for _, _, test_id in _cases(self.sizes)]
        return [
            ConformanceItem.from_parent(
                self, name=test_id, spec=self.spec, prop=name, world_size=w, options=self.options
            )
            for name, w, test_id in _cases(self.sizes)
        ]

    def repr_failure(self, excinfo: Any, style: Any = None) -> Any:
        from .protocol import AdapterLoadError

        if isinstance(excinfo.value, AdapterLoadError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)


class ConformanceItem(pytest.Item):
    """One generated conformance test."""

    def __init__(
        self, *, spec: str, prop: str, world_size: int | None, options: dict[str, Any], **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.spec, self.prop, self.world_size, self.options = spec, prop, world_size, options

    def runtest(self) -> None:
        run_one(self.spec, self.prop, self.world_size, **self.options)

    def repr_failure(self, excinfo: Any, style: Any = None) -> Any:
        if isinstance(excinfo.value, ConformanceFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, f"infonce-conformance {self.name}"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: Any, config: Any, items: list[Any]) -> None:
    """Collect one test per property (and world size) for every ``--infonce-adapter``.

    The tests go through pytest's own collection (:meth:`pytest.Session.genitems`), so they are
    counted in "collected N items", ``-k`` and ``--deselect`` apply, and an adapter that cannot be
    loaded is a collection error.
    """
    specs = config.getoption("infonce_adapter", default=None)
    if not specs:
        return  # inert: nothing added, nothing reordered
    text = str(config.getoption("infonce_world_sizes"))
    try:
        sizes = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise pytest.UsageError(
            f"--infonce-world-sizes must be comma-separated integers, got {text!r}"
        ) from None
    options = {
        "profile": config.getoption("infonce_profile"),
        "reproducer_dir": config.getoption("infonce_reproducers"),
    }
    for spec in specs:
        # node IDs read ``adapter::property`` (a collector under the session would add a leading "::")
        parent = ConformanceCollector.from_parent(
            session, name=spec, nodeid=spec, spec=spec, sizes=sizes, options=options
        )
        items.extend(session.genitems(parent))


def conformance_tests(
    spec: str,
    *,
    profile: str = "ci",
    world_sizes: Sequence[int] = (1, 2),
    reproducer_dir: str | None = "infonce-conformance-failures",
) -> Any:
    """A parametrized pytest test function checking ``spec``: ``test_conformance = conformance_tests("m:A")``.

    The adapter is loaded here, while pytest imports the test module: one that cannot be loaded is
    a one-line collection error of that module.
    """
    from .protocol import AdapterLoadError

    try:
        _loaded(spec)
    except AdapterLoadError as exc:
        pytest.fail(str(exc), pytrace=False)
    params = [pytest.param(name, w, id=test_id) for name, w, test_id in _cases(world_sizes)]

    @pytest.mark.parametrize(("conformance_property", "world_size"), params)
    def test_infonce_conformance(conformance_property: str, world_size: int | None) -> None:
        run_one(spec, conformance_property, world_size, profile=profile, reproducer_dir=reproducer_dir)

    return test_infonce_conformance
