"""Golden vectors: the command line.

``infonce-conformance verify RESULTS [--claims FILE]`` and ``infonce-conformance golden run|cases|show``
(also ``python -m infonce_spec.conformance.golden verify|run|cases|show``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .claims import CLAIM_FIELDS, case_applies, load_claim
from .format import dumps
from .load import load_cases
from .verify import VERIFY_HELP, Report, verify

GOLDEN_HELP = "the golden vectors: run an adapter over them, list the cases a claim covers, show a case"
RUN_HELP = (
    "feed every golden vector the adapter's claim covers through the adapter (plug-in protocol), "
    "write the results file and verify it"
)
CLAIMS_HELP = (
    "claims file (JSON, or TOML on Python >= 3.11) with the fields "
    + ", ".join(CLAIM_FIELDS)
    + ": judge only the cases it covers (see docs/golden-vectors.md)"
)


# command line
def add_verify_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``verify``; :func:`run_verify` takes the parsed namespace."""
    parser.add_argument("results", type=Path, help="results JSON written by the implementation under test")
    parser.add_argument("--claims", type=Path, default=None, help=CLAIMS_HELP)
    _add_report_arguments(parser)


def _add_report_arguments(parser: argparse.ArgumentParser) -> None:
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
        report = verify(args.results, args.vectors, args.claims)
    except (OSError, ValueError, KeyError) as exc:
        print(f"verify: {exc}", file=sys.stderr)
        return 2
    return _conclude(report, args)


def _conclude(report: Report, args: argparse.Namespace) -> int:
    """Write the reports asked for, print the verdict and the first failures; the exit status."""
    if args.report:
        args.report.write_text(report.to_markdown())
    if args.json_out:
        args.json_out.write_text(json.dumps(report.to_json(), indent=1) + "\n")
    print(report.summary())
    print(f"  {report.header()}")
    for check in report.failed[:10]:
        print(f"  {check.case} [{check.aspect}] (suspect {', '.join(check.suspects)}): {check.details[0]}")
    if len(report.failed) > 10:
        print(f"  ... and {len(report.failed) - 10} more failing checks (see --report)")
    if report.ok or (args.allow_not_covered and not report.failed):
        return 0
    return 1


def _run_golden_run(args: argparse.Namespace) -> int:
    """``golden run --adapter NAME --out results.json``: write the results, then verify them against
    the adapter's claim. An adapter that cannot be loaded raises AdapterLoadError (exit 2 upstream)."""
    from ..protocol import load_adapter
    from .run import write_results

    loaded = load_adapter(args.adapter)
    try:
        claim, count = write_results(loaded, args.out, args.vectors)
        report = verify(args.out, args.vectors, claim)
    except (OSError, ValueError, KeyError) as exc:
        print(f"golden run: {exc}", file=sys.stderr)
        return 2
    print(f"{count} golden vectors run through {loaded.spec}; results: {args.out}")
    return _conclude(report, args)


def _run_cases(args: argparse.Namespace) -> int:
    """``golden cases --claims FILE``: the ids of the cases the claim covers, one per line."""
    try:
        claim = load_claim(args.claims)
        _, cases = load_cases(args.vectors)
    except (OSError, ValueError, KeyError) as exc:
        print(f"cases: {exc}", file=sys.stderr)
        return 2
    for _, case in cases:
        if case_applies(claim, case):
            print(case["id"])
    return 0


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


def add_golden_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``run``, ``cases`` and ``show`` under ``sub``; each sets ``func`` to its runner."""
    run = sub.add_parser("run", help=RUN_HELP, description=RUN_HELP)
    run.add_argument(
        "--adapter", required=True, metavar="NAME", help="package.module:attribute or file.py:attribute"
    )
    run.add_argument("--out", type=Path, default=Path("golden-results.json"), help="results file to write")
    _add_report_arguments(run)
    run.set_defaults(func=_run_golden_run)
    cases = sub.add_parser("cases", help="print the ids of the cases a claims file covers, one per line")
    cases.add_argument("--claims", type=Path, required=True, help=CLAIMS_HELP)
    cases.add_argument("--vectors", type=Path, default=None, help="vectors folder or its MANIFEST.json")
    cases.set_defaults(func=_run_cases)
    show = sub.add_parser("show", help="print one case (inputs, config, expected) to replay a failure")
    show.add_argument("case")
    show.add_argument("--vectors", type=Path, default=None)
    show.set_defaults(func=_run_show)


def main(argv: Sequence[str] | None = None) -> int:
    """``verify RESULTS [--claims FILE]``, ``run --adapter NAME``, ``cases --claims FILE``, ``show CASE_ID``."""
    from ..protocol import AdapterLoadError

    parser = argparse.ArgumentParser(
        prog="python -m infonce_spec.conformance.golden", description=VERIFY_HELP
    )
    sub = parser.add_subparsers(dest="command", required=True)
    verify_parser = sub.add_parser("verify", help=VERIFY_HELP, description=VERIFY_HELP)
    add_verify_arguments(verify_parser)
    verify_parser.set_defaults(func=run_verify)
    add_golden_commands(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except AdapterLoadError as exc:
        print(f"golden: error: {exc}", file=sys.stderr)
        return 2
