"""The command line: ``infonce-conformance`` (also ``python -m infonce_spec.conformance``).

* ``run [--adapter NAME ...] [--profile quick|ci|thorough] [--world-sizes 1,2,3,4] [--report out.md]
  [--json out.json] [--reproducers DIR] [--select TEXT]`` -- every claimed clause, per adapter.
  Without ``--adapter`` it checks our bundled torch implementations (uncached, cached, data parallel).
* ``replay file.npz [--adapter NAME]`` -- re-run a failure's reproducer.
* ``list [--adapter NAME]`` -- the bundled adapters, the properties and the clauses they check.
* ``verify results.json [--claims claims.json]`` -- check results computed elsewhere against the
  golden vectors (only the cases the claim covers).
* ``golden run --adapter NAME`` -- feed the golden vectors through an adapter, write and verify the
  results; ``golden cases --claims FILE`` lists the cases a claim covers; ``golden show CASE``.

An adapter NAME is ``package.module:attribute``, ``path/to/file.py:attribute`` or ``module:attribute``
of a module in the current folder; it is loaded the way pytest loads test files
(:func:`~infonce_spec.conformance.protocol.load_adapter`).

Exit codes (:class:`ExitCode`, like pytest's): 0 conformant, 1 not conformant, 2 usage or load
error (one line, no traceback), 3 interrupted (SIGINT, SIGTERM, ``--max-time``: no verdict; the
results that finished are written, saying INTERRUPTED first), 4 internal
error (one line, and the file the traceback was written to).

Under ``torchrun`` only the data-parallel properties run (at the launcher's world size; NCCL when CUDA
is available); rank 0 prints and writes the reports.
"""

from __future__ import annotations

import argparse
import atexit
import enum
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infonce_spec import SPEC_SHA256, SPEC_VERSION, __version__

from .protocol import AdapterLoadError

__all__ = ["ExitCode", "UsageError", "main"]

DESCRIPTION = (
    "Check an implementation of the InfoNCE / MultipleNegativesRankingLoss family against "
    f"infonce-spec {SPEC_VERSION}, clause by clause, through a small adapter."
)
ADAPTER_HELP = (
    "package.module:attribute, path/to/file.py:attribute, or module:attribute of a module in the "
    "current folder (loaded as pytest loads test files: the file's folder and the current folder "
    "are importable)"
)
EXIT_CODES_HELP = """exit codes:
  0  conformant: every claimed clause passes
  1  not conformant: a claimed clause fails
  2  usage or load error (bad option, unknown --select, an adapter that cannot be loaded)
  3  interrupted (SIGINT, SIGTERM or --max-time): no verdict; the results that
     finished are written, saying INTERRUPTED first
  4  internal error of the suite (the traceback is written to a file, named on stderr)"""
#: Width of the console when stdout is not a terminal (CI logs): wide enough that rich never cuts
#: a table cell; long cells wrap at spaces instead.
LOG_WIDTH = 400


class ExitCode(enum.IntEnum):
    """The exit status of ``infonce-conformance`` (pytest's convention)."""

    OK = 0
    NOT_CONFORMANT = 1
    USAGE_ERROR = 2
    INTERRUPTED = 3
    INTERNAL_ERROR = 4


class UsageError(Exception):
    """A command line the suite cannot act on; printed as one line, exit status 2."""


def _world_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"world sizes must be comma-separated integers, got {text!r}"
        ) from None
    if any(w < 1 for w in sizes):
        raise argparse.ArgumentTypeError("world sizes must be >= 1")
    return sizes


def _seconds(text: str) -> float:
    """A positive number of seconds (``--max-time``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0 seconds, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    from .golden import GOLDEN_HELP, VERIFY_HELP, add_golden_commands, add_verify_arguments
    from .runner import BUNDLED_ADAPTERS, PROFILES

    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="infonce-conformance", description=DESCRIPTION, epilog=EXIT_CODES_HELP, formatter_class=formatter
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"infonce-conformance: infonce-spec package {__version__}, spec {SPEC_VERSION} "
        f"(sha256 {SPEC_SHA256})",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="check implementations against the spec, clause by clause",
        description="Check implementations against the spec, clause by clause. " + DESCRIPTION,
        epilog=EXIT_CODES_HELP,
        formatter_class=formatter,
    )
    run.add_argument(
        "--adapter",
        action="append",
        default=[],
        metavar="NAME",
        help=f"adapter to check, as {ADAPTER_HELP}; repeatable; default: the bundled torch ones "
        f"({', '.join(BUNDLED_ADAPTERS)})",
    )
    run.add_argument(
        "--profile",
        choices=list(PROFILES),
        default="ci",
        help="example budget: quick (smoke), ci (default; derandomized), thorough (random, long)",
    )
    run.add_argument(
        "--world-sizes",
        type=_world_sizes,
        default=(1, 2, 3, 4),
        metavar="1,2,3,4",
        help="data-parallel world sizes to check (gloo workers on this machine)",
    )
    run.add_argument("--report", type=Path, help="write a Markdown report here")
    run.add_argument("--json", type=Path, help="write a JSON report here")
    run.add_argument(
        "--reproducers",
        type=Path,
        default=Path("infonce-conformance-failures"),
        help="folder for the .npz reproducers of failures",
    )
    run.add_argument(
        "--select",
        action="append",
        default=[],
        metavar="TEXT",
        help="run only properties whose name or clauses contain TEXT (repeatable; a TEXT that "
        "matches nothing is an error)",
    )
    run.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to wait for any adapter call (single process or one rank) before it is an adapter fault",
    )
    run.add_argument(
        "--max-time",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="stop the whole run after SECONDS and write the partial report (exit status 3)",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument(
        "--fail-fast",
        action="store_true",
        help="stop at the first established root cause and print it (the edit-run loop)",
    )
    replay = sub.add_parser(
        "replay",
        help="re-run a failure's reproducer (.npz)",
        description="Re-run a failure's reproducer: exit 1 if it still fails, 0 if it now passes.",
    )
    replay.add_argument("path", type=Path)
    replay.add_argument(
        "--adapter",
        metavar="NAME",
        help=f"adapter to replay against, as {ADAPTER_HELP} (default: the one that failed)",
    )
    lst = sub.add_parser("list", help="list the bundled adapters, the properties and the clauses they check")
    lst.add_argument("--adapter", metavar="NAME", help=f"also say what this adapter claims ({ADAPTER_HELP})")
    verify = sub.add_parser("verify", help=VERIFY_HELP.split("\n")[0], description=VERIFY_HELP)
    add_verify_arguments(verify)
    golden = sub.add_parser("golden", help=GOLDEN_HELP, description=GOLDEN_HELP)
    add_golden_commands(golden.add_subparsers(dest="golden_command", required=True))
    return parser


def load(spec: str) -> Any:
    """:func:`~.protocol.load_adapter`; an unknown module's error also names the bundled adapters."""
    from .protocol import load_adapter
    from .runner import BUNDLED_ADAPTERS

    try:
        return load_adapter(spec)
    except AdapterLoadError as exc:
        if ": no module named " not in str(exc):
            raise
        raise AdapterLoadError(f"{exc}; bundled adapters: {', '.join(BUNDLED_ADAPTERS)}") from exc


def _selector(texts: Sequence[str]) -> Callable[[Any], bool] | None:
    """The ``--select`` filter; a TEXT matching no property is a usage error naming the choices."""
    if not texts:
        return None
    from .properties import properties

    def matches(prop: Any, text: str) -> bool:
        return text in prop.name or any(text in clause for clause in prop.clauses)

    props = properties()
    unknown = [t for t in texts if not any(matches(p, t) for p in props)]
    if unknown:
        clauses = sorted({c for p in props for c in p.clauses})
        raise UsageError(
            f"--select {', '.join(map(repr, unknown))} matches no property; choose a property name or "
            f"a clause (or a part of one): properties {', '.join(p.name for p in props)}; "
            f"clauses {', '.join(clauses)}"
        )
    return lambda prop: any(matches(prop, t) for t in texts)


def _console(rank0: bool) -> Any:
    """A rich console; outside a terminal (CI logs) it is wide, so tables wrap instead of cutting."""
    from rich.console import Console

    console = Console(quiet=not rank0)
    if not console.is_terminal:
        console = Console(quiet=not rank0, width=LOG_WIDTH)
    return console


def _heading(console: Any, text: str) -> None:
    from rich.markup import escape

    if console.is_terminal:
        console.rule(f"[bold]{escape(text)}[/]")
    else:
        console.print(f"== {escape(text)} ==")


@dataclass
class RunOutcome:
    """What a ``run`` produced: every adapter's report (a partial one if interrupted), the adapters
    that could not be loaded, why the run was interrupted (``SIGINT``, ``SIGTERM``, ``--max-time N
    s``; ``None`` if it was not) and the adapters it did not reach."""

    reports: list[Any] = field(default_factory=list)
    load_errors: list[tuple[str, str]] = field(default_factory=list)
    interrupted: str | None = None
    seconds: float = 0.0
    not_started: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> ExitCode:
        if self.interrupted:
            return ExitCode.INTERRUPTED
        if self.load_errors:
            return ExitCode.USAGE_ERROR
        return ExitCode.OK if all(r.ok for r in self.reports) else ExitCode.NOT_CONFORMANT


def _root_causes(rep: Any) -> list[str]:
    """The root causes of one adapter's report (clause, or "adapter fault")."""
    return [cause.clause or "adapter fault" for cause in rep.diagnosis.roots]


def summary_line(outcome: RunOutcome) -> str:
    """One line over every adapter of the run: adapters passed / failed, properties, root causes.

    An interrupted run has no verdict: the line starts ``INTERRUPTED`` and says what finished and
    what did not, never how many adapters are conformant."""
    reports = outcome.reports
    statuses = [r.status for rep in reports for r in rep.results]
    passed, unclaimed = statuses.count("pass"), statuses.count("not claimed")
    failed = len(statuses) - passed - unclaimed
    roots = [c for rep in reports if not rep.ok for c in _root_causes(rep)]
    named = ", ".join(sorted(set(roots)))
    found = f"{len(roots)} root cause{'' if len(roots) == 1 else 's'} ({named})" if roots else "no root cause"
    props = f"properties: {passed} pass, {failed} FAIL, {unclaimed} not claimed"
    if outcome.interrupted:
        finished = [rep.adapter for rep in reports if not rep.interrupted]
        cut = [rep for rep in reports if rep.interrupted]
        parts = [f"no verdict ({outcome.interrupted})"]
        parts.append(f"finished: {len(finished)} of {len(reports) + len(outcome.not_started)} adapters")
        if cut:
            parts.append(
                "stopped in "
                + ", ".join(f"{rep.adapter} ({len(rep.not_run)} properties not run)" for rep in cut)
            )
        if outcome.not_started:
            parts.append(f"not started: {', '.join(outcome.not_started)}")
        parts.append(f"{props} so far")
        parts.append(found + (" so far" if not roots else ""))
        return f"INTERRUPTED: {'; '.join(parts)} ({outcome.seconds:.1f} s)"
    ok = [rep for rep in reports if rep.ok]
    bad = [rep for rep in reports if not rep.ok]
    verdict = {ExitCode.OK: "PASS", ExitCode.NOT_CONFORMANT: "FAIL", ExitCode.USAGE_ERROR: "ERROR"}[
        outcome.exit_code
    ]
    total = len(reports) + len(outcome.load_errors)
    parts = [f"{len(ok)} of {total} adapters conformant" + (f", {len(bad)} not" if bad else "")]
    if outcome.load_errors:
        parts.append(f"{len(outcome.load_errors)} could not be loaded")
    parts += [props, found]
    return f"{verdict}: {'; '.join(parts)} ({outcome.seconds:.1f} s)"


def _run_adapters(specs: Sequence[str], args: argparse.Namespace, console: Any, outcome: RunOutcome) -> None:
    """THE RUN LOOP: load and run each adapter in turn, appending to ``outcome`` as results finish.

    An adapter that cannot be loaded is one line (and exit status 2 at the end); the other adapters
    still run and every completed report is written. An interrupt (SIGINT, SIGTERM, ``--max-time``)
    ends the adapter's run with a partial report (``RunReport.interrupted``), printed and kept, and
    the adapters after it are not started; a bare ``KeyboardInterrupt`` (outside
    :func:`~.interrupt.guarded_run`) propagates from here after the finished properties are kept
    as a partial report.
    """
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from .interrupt import pending
    from .report import print_report
    from .runner import RunReport, run_adapter

    select = _selector(args.select)
    show = not args.no_progress and console.is_terminal
    for i, spec in enumerate(specs):
        outcome.interrupted = outcome.interrupted or pending()  # a safe point: before a load
        if outcome.interrupted:
            outcome.not_started = list(specs[i:])
            return
        outcome.not_started = list(specs[i + 1 :])  # until this one ends
        _heading(console, spec)
        try:
            loaded = load(spec)
        except AdapterLoadError as exc:
            outcome.load_errors.append((spec, str(exc)))
            print(f"infonce-conformance: error: {exc}", file=sys.stderr)
            continue
        done: list[Any] = []
        start = time.perf_counter()
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not show,
        ) as progress:
            task = progress.add_task("starting", total=None)

            def started(name: str, task: Any = task, progress: Progress = progress) -> None:
                progress.update(task, description=escape(name))

            def finished(r: Any, task: Any = task, progress: Progress = progress, done: list = done) -> None:
                done.append(r)
                progress.advance(task)
                colour = {"pass": "green", "not claimed": "yellow"}.get(r.status, "bold red")
                console.print(
                    f"  [{colour}]{r.status:>15}[/] {escape(r.label):48s} {r.examples:4d} ex "
                    f"{r.seconds:6.2f} s"
                )

            try:
                rep = run_adapter(
                    loaded,
                    profile=args.profile,
                    world_sizes=args.world_sizes,
                    # absolute, so that the printed replay command works from any folder
                    reproducer_dir=args.reproducers.resolve() if args.rank0 else None,
                    select=select,
                    timeout=args.timeout,
                    on_result=finished,
                    on_start=started,
                    fail_fast=args.fail_fast,
                )
            except KeyboardInterrupt:
                outcome.reports.append(
                    RunReport(
                        loaded.spec,
                        loaded.capabilities,
                        args.profile,
                        tuple(args.world_sizes) if loaded.capabilities.data_parallel else (),
                        done,
                        time.perf_counter() - start,
                        stopped="KeyboardInterrupt",
                    )
                )
                raise
        outcome.reports.append(rep)
        print_report(rep, console)
        if rep.interrupted:
            outcome.interrupted = rep.interrupted
            continue
        if args.fail_fast and rep.diagnosis.roots:
            console.print(
                f"--fail-fast: stopped at the first root cause: {escape(rep.diagnosis.roots[0].line())}"
            )
            break
    outcome.not_started = []


def _write_reports(args: argparse.Namespace, outcome: RunOutcome, console: Any) -> None:
    """The Markdown and JSON reports of every completed (or interrupted) adapter, and the load errors."""
    from .report import to_json, to_markdown

    if not args.rank0:
        return
    if args.report:
        text = to_markdown(outcome.reports, interrupted=outcome.interrupted, not_started=outcome.not_started)
        if outcome.load_errors:
            text += "\n## Adapters that could not be loaded\n\n"
            text += "".join(f"- `{spec}`: {error}\n" for spec, error in outcome.load_errors)
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(text)
        console.print(f"Markdown report: {args.report}")
    if args.json:
        data = to_json(outcome.reports, interrupted=outcome.interrupted)
        data["ok"] = outcome.exit_code == ExitCode.OK
        data["exit_code"] = int(outcome.exit_code)
        data["interrupted"] = outcome.interrupted is not None
        data["interrupted_by"] = outcome.interrupted
        data["not_started"] = outcome.not_started
        data["load_errors"] = [{"adapter": spec, "error": error} for spec, error in outcome.load_errors]
        data["summary"] = summary_line(outcome)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=2, default=str))
        console.print(f"JSON report: {args.json}")


def _cmd_run(args: argparse.Namespace) -> ExitCode:
    from .harnesses.processes import shared_forkserver
    from .harnesses.torchrun import in_torchrun
    from .interrupt import settle
    from .runner import BUNDLED_ADAPTERS

    args.rank0 = not in_torchrun() or os.environ.get("RANK") == "0"
    _selector(args.select)  # a usage error before anything runs
    console = _console(args.rank0)
    outcome = RunOutcome()
    start = time.perf_counter()
    specs = args.adapter or list(BUNDLED_ADAPTERS)
    try:
        with shared_forkserver():  # one forkserver start for every adapter of the run
            _run_adapters(specs, args, console, outcome)
    except KeyboardInterrupt as exc:
        outcome.interrupted = getattr(exc, "reason", None) or "KeyboardInterrupt"
    # a signal that came after the last safe point still counts; later ones are ignored
    outcome.interrupted = outcome.interrupted or settle()
    if outcome.interrupted:
        print(
            f"infonce-conformance: interrupted ({outcome.interrupted}); writing the results that finished",
            file=sys.stderr,
        )
    outcome.seconds = time.perf_counter() - start
    _write_reports(args, outcome, console)
    console.print(summary_line(outcome), markup=False, highlight=False)
    return outcome.exit_code


def _cmd_replay(args: argparse.Namespace) -> ExitCode:
    from .replay import replay

    if not args.path.is_file():
        raise UsageError(f"no such reproducer: {args.path}")
    res = replay(args.path, args.adapter)
    if res.failed:
        print(f"FAIL [{res.clause}] {res.property} ({res.adapter}): {res.message}")
        return ExitCode.NOT_CONFORMANT
    print(f"pass {res.property} ({res.adapter}): the stored case no longer fails")
    return ExitCode.OK


def _cmd_list(args: argparse.Namespace) -> ExitCode:
    from .clauses import CLAUSES
    from .properties import properties
    from .runner import BUNDLED_ADAPTERS

    caps = load(args.adapter).capabilities if args.adapter else None
    print("bundled adapters (what `run` checks without --adapter):")
    for spec in BUNDLED_ADAPTERS:
        print(f"    {spec}")
    print()
    props = properties()
    for p in props:
        claim = ""
        if caps is not None:
            reason = p.requires(caps)
            claim = "  [claimed]" if reason is None else f"  [not claimed: needs {reason}]"
        print(f"{p.name:40s} {', '.join(p.clauses)}{claim}\n    {p.summary}")
    covered = {c for p in props for c in p.clauses}
    missing = [c for c, _ in CLAUSES if c not in covered]
    print(f"\n{len(props)} properties; clauses not checked by any property: {', '.join(missing) or 'none'}")
    return ExitCode.OK


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        return _cmd_run(args)
    if args.command == "replay":
        return _cmd_replay(args)
    if args.command == "list":
        return _cmd_list(args)
    if args.command == "golden":
        return int(args.func(args))
    from .golden import run_verify

    return run_verify(args)


def _write_traceback(exc: BaseException) -> Path:
    fd, name = tempfile.mkstemp(prefix="infonce-conformance-traceback-", suffix=".txt")
    with os.fdopen(fd, "w") as out:
        out.write(f"infonce-conformance {__version__} (spec {SPEC_VERSION}), argv {sys.argv!r}\n\n")
        out.write("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    return Path(name)


def keep_hypothesis_out_of_the_working_folder() -> None:
    """Point hypothesis' storage (its example database and constants cache, ``.hypothesis/``) at a
    temporary folder unless ``HYPOTHESIS_STORAGE_DIRECTORY`` says where: a run writes nothing into
    the user's folder but the reports and reproducers asked for."""
    if os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
        return
    import shutil

    from hypothesis.configuration import set_hypothesis_home_dir

    folder = tempfile.mkdtemp(prefix="infonce-conformance-hypothesis-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    set_hypothesis_home_dir(folder)


def main(argv: Sequence[str] | None = None) -> int:
    """The console script's entry point; returns an :class:`ExitCode` (argparse's own usage errors
    exit 2 directly)."""
    # SIGINT/SIGTERM are a stop request from the first moment (:mod:`.interrupt`); every worker
    # is stopped on the way out
    from .interrupt import guarded_run, pending, set_deadline
    from .isolation import set_call_timeout

    try:
        with guarded_run():
            args = _parser().parse_args(argv)
            if args.command in ("run", "replay"):
                keep_hypothesis_out_of_the_working_folder()
            if getattr(args, "timeout", None) is not None:
                set_call_timeout(args.timeout)
            set_deadline(getattr(args, "max_time", None))
            code = int(_dispatch(args))
            if pending() is not None and code != ExitCode.INTERRUPTED:  # a command without safe points
                print(f"infonce-conformance: interrupted ({pending()})", file=sys.stderr)
                return ExitCode.INTERRUPTED
            return code
    except (UsageError, AdapterLoadError) as exc:
        print(f"infonce-conformance: error: {exc}", file=sys.stderr)
        return ExitCode.USAGE_ERROR
    except KeyboardInterrupt:
        print("infonce-conformance: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:  # the reader went away (``... | head``): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK
    except Exception as exc:
        path = _write_traceback(exc)
        text = " ".join(str(exc).split())
        print(
            f"infonce-conformance: internal error: {type(exc).__name__}: {text} (traceback written to {path})",
            file=sys.stderr,
        )
        return ExitCode.INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
