"""``infonce-conformance`` (also ``python -m infonce_spec.conformance``).

* ``run [--adapter mod:attr ...] [--profile quick|ci|thorough] [--world-sizes 1,2,3,4] [--report out.md]
  [--json out.json] [--reproducers DIR] [--select TEXT]`` -- exit 0 iff every claimed clause passes.
  Without ``--adapter`` it checks our bundled torch implementations (uncached, cached, data parallel).
* ``replay file.npz [--adapter mod:attr]`` -- re-run a failure's reproducer (exit 1 if it still fails).
* ``list [--adapter mod:attr]`` -- the properties and the clauses they check (and what is claimed).
* ``verify results.json`` -- check results computed elsewhere against the golden vectors (spec/vectors).

Under ``torchrun`` only the data-parallel properties run (at the launcher's world size; NCCL when CUDA
is available); rank 0 prints and writes the reports.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


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


def _parser() -> argparse.ArgumentParser:
    from .golden import VERIFY_HELP, add_verify_arguments

    parser = argparse.ArgumentParser(prog="infonce-conformance", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="check implementations against the spec, clause by clause")
    run.add_argument(
        "--adapter",
        action="append",
        default=[],
        metavar="MOD:ATTR",
        help="adapter to check, as package.module:attribute (repeatable; default: the bundled torch ones)",
    )
    run.add_argument(
        "--profile",
        choices=["quick", "ci", "thorough"],
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
        help="run only properties whose name or clauses contain TEXT (repeatable)",
    )
    run.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a data-parallel step")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    replay = sub.add_parser("replay", help="re-run a failure's reproducer (.npz)")
    replay.add_argument("path", type=Path)
    replay.add_argument("--adapter", help="adapter to replay against (default: the one that failed)")
    lst = sub.add_parser("list", help="list the properties and the clauses they check")
    lst.add_argument("--adapter", help="also say what this adapter claims")
    verify = sub.add_parser("verify", help=VERIFY_HELP.split("\n")[0], description=VERIFY_HELP)
    add_verify_arguments(verify)
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from .distributed import in_torchrun
    from .report import dumps_json, print_report, to_markdown
    from .runner import BUNDLED_ADAPTERS, run_adapter

    rank0 = not in_torchrun() or os.environ.get("RANK") == "0"
    console = Console(stderr=False, quiet=not rank0)
    specs = args.adapter or list(BUNDLED_ADAPTERS)
    select = None
    if args.select:
        texts = args.select

        def select(p):  # type: ignore[no-untyped-def]
            return any(t in p.name or any(t in c for c in p.clauses) for t in texts)

    reports = []
    show = rank0 and not args.no_progress and console.is_terminal
    for spec in specs:
        console.rule(f"[bold]{escape(spec)}[/]")
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not show,
        ) as progress:
            task = progress.add_task("starting", total=None)

            def started(name: str, task: int = task, progress: Progress = progress) -> None:
                progress.update(task, description=escape(name))

            def finished(r, task: int = task, progress: Progress = progress) -> None:  # type: ignore[no-untyped-def]
                progress.advance(task)
                colour = {"pass": "green", "not claimed": "yellow"}.get(r.status, "bold red")
                console.print(
                    f"  [{colour}]{r.status:>11}[/] {escape(r.label):48s} {r.examples:4d} ex "
                    f"{r.seconds:6.2f} s"
                )

            rep = run_adapter(
                spec,
                profile=args.profile,
                world_sizes=args.world_sizes,
                reproducer_dir=args.reproducers if rank0 else None,
                select=select,
                timeout=args.timeout,
                on_result=finished,
                on_start=started,
            )
        reports.append(rep)
        print_report(rep, console)
    if rank0 and args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(to_markdown(reports))
        console.print(f"Markdown report: {args.report}")
    if rank0 and args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(dumps_json(reports))
        console.print(f"JSON report: {args.json}")
    return 0 if all(r.ok for r in reports) else 1


def _cmd_replay(args: argparse.Namespace) -> int:
    from .replay import replay

    res = replay(args.path, args.adapter)
    if res.failed:
        print(f"FAIL [{res.clause}] {res.property} ({res.adapter}): {res.message}")
        return 1
    print(f"pass {res.property} ({res.adapter}): the stored case no longer fails")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from .clauses import CLAUSES
    from .properties import properties
    from .protocol import load_adapter

    caps = load_adapter(args.adapter).capabilities if args.adapter else None
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
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The console script's entry point."""
    args = _parser().parse_args(argv)
    if args.command == "run":
        return _cmd_run(args)
    if args.command == "replay":
        return _cmd_replay(args)
    if args.command == "list":
        return _cmd_list(args)
    from .golden import run_verify

    return run_verify(args)


if __name__ == "__main__":
    sys.exit(main())
