"""Golden vectors: the command line (``infonce-conformance verify``, ``... golden show``)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .format import dumps
from .load import load_cases
from .verify import VERIFY_HELP, verify


# command line
def add_verify_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``verify``; :func:`run_verify` takes the parsed namespace."""
    parser.add_argument("results", type=Path, help="results JSON written by the implementation under test")
    parser.add_argument("--vectors", type=Path, default=None, help="vectors folder or its MANIFEST.json")
    parser.add_argument("--report", type=Path, default=None, help="write the Markdown report here")
    parser.add_argument("--json", type=Path, default=None, dest="json_out", help="write the JSON report here")
    parser.add_argument(
        "--allow-not-covered",
        action="store_true",
        help="exit 0 when nothing fails although some cases or optional fields are absent from the results",
    )


def run_verify(args: argparse.Namespace) -> int:
    """Run ``verify`` from parsed arguments; print the verdict, write the reports, return the exit status.

    0: PASS -- no check fails and every required check ran (``--allow-not-covered``: INCOMPLETE,
    nothing fails, is 0 too); 1: FAIL, or INCOMPLETE without ``--allow-not-covered``; 2: the
    results or the vectors cannot be read.
    """
    try:
        report = verify(args.results, args.vectors)
    except (OSError, ValueError, KeyError) as exc:
        print(f"verify: {exc}", file=sys.stderr)
        return 2
    if args.report:
        args.report.write_text(report.to_markdown())
    if args.json_out:
        args.json_out.write_text(json.dumps(report.to_json(), indent=1) + "\n")
    print(report.summary())
    for check in report.failed[:10]:
        print(f"  {check.case} [{check.aspect}] (suspect {', '.join(check.suspects)}): {check.details[0]}")
    if len(report.failed) > 10:
        print(f"  ... and {len(report.failed) - 10} more failing checks (see --report)")
    if report.ok or (args.allow_not_covered and not report.failed):
        return 0
    return 1


def _run_show(args: argparse.Namespace) -> int:
    try:
        _, cases = load_cases(args.vectors)
    except (OSError, ValueError, KeyError) as exc:
        print(f"show: {exc}", file=sys.stderr)
        return 2
    for file, case in cases:
        if case["id"] == args.case:
            print(f"{case['id']} is in {file}", file=sys.stderr)
            print(dumps(case), end="")
            return 0
    print(f"show: no case {args.case!r} in the manifest", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """``verify RESULTS [--vectors DIR] [--report out.md] [--json out.json]`` or ``show CASE_ID``."""
    parser = argparse.ArgumentParser(
        prog="python -m infonce_spec.conformance.golden", description=VERIFY_HELP
    )
    sub = parser.add_subparsers(dest="command", required=True)
    verify_parser = sub.add_parser("verify", help=VERIFY_HELP, description=VERIFY_HELP)
    add_verify_arguments(verify_parser)
    verify_parser.set_defaults(func=run_verify)
    show = sub.add_parser("show", help="print one case (inputs, config, expected) to replay a failure")
    show.add_argument("case")
    show.add_argument("--vectors", type=Path, default=None)
    show.set_defaults(func=_run_show)
    args = parser.parse_args(argv)
    return int(args.func(args))
