"""``python -m infonce_spec.conformance.mutants``: the kill matrix of the catalogue.

Default (targeted): per mutant, only the properties covering its tagged clause, fail-fast, no
shrinking -- seconds. ``--full``: the whole ci suite per mutant, every property to its first failing
example (``--shrink``: shrunk as a user's run would, which costs minutes per failing property) --
minutes; this gives the complete mutant x clause matrix and the time to first failure in the suite's
own order. ``--markdown FILE`` writes the tables (docs/mutants.md records them).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from .catalogue import CATALOGUE
from .killmatrix import Kill, kill_all


def _secs(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def catalogue_table() -> str:
    lines = ["| id | clause | level | bug | public reference |", "| --- | --- | --- | --- | --- |"]
    for m in CATALOGUE.values():
        lines.append(f"| `{m.id}` | {m.clause} | {m.level} | {m.description} | {m.reference or '-'} |")
    return "\n".join(lines)


def kill_table(kills: list[Kill]) -> str:
    lines = [
        "| mutant | tagged | killed on tag | clauses flagged (property) | s to kill | s to 1st failure | s run |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for k in kills:
        flagged = "; ".join(f"{c} ({', '.join(sorted(set(p)))})" for c, p in sorted(k.run.flagged().items()))
        verdict = "yes" if k.killed else ("**no** (detected elsewhere)" if k.detected else "**NOT DETECTED**")
        lines.append(
            f"| `{k.mutant.id}` | {k.mutant.clause} | {verdict} | {flagged or '-'} | {_secs(k.seconds_to_kill)} "
            f"| {_secs(k.seconds_to_first_failure)} | {k.run.seconds:.2f} |"
        )
    return "\n".join(lines)


def matrix(kills: list[Kill]) -> str:
    """mutant x clause: ``T`` the tag flagged, ``x`` another clause flagged, ``t`` the tag not flagged."""
    clauses = sorted({c for k in kills for c in k.run.flagged()} | {k.mutant.clause for k in kills})
    lines = ["| mutant | " + " | ".join(clauses) + " |", "| --- |" + " --- |" * len(clauses)]
    for k in kills:
        flagged = k.run.flagged()
        cells = []
        for c in clauses:
            if c == k.mutant.clause:
                cells.append("**T**" if c in flagged else "t")
            else:
                cells.append("x" if c in flagged else "")
        lines.append(f"| `{k.mutant.id}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(kills: list[Kill]) -> str:
    killed = [k for k in kills if k.killed]
    detected = [k for k in kills if k.detected]
    times = [k.seconds_to_kill for k in killed if k.seconds_to_kill is not None]
    first = [k.seconds_to_first_failure for k in detected if k.seconds_to_first_failure is not None]
    return (
        f"{len(kills)} mutants: {len(detected)} detected ({100 * len(detected) / len(kills):.0f}%), "
        f"{len(killed)} killed on their tagged clause ({100 * len(killed) / len(kills):.0f}%); "
        f"median seconds to kill {_secs(statistics.median(times) if times else None)}, "
        f"median seconds to first failure {_secs(statistics.median(first) if first else None)}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infonce_spec.conformance.mutants", description=__doc__)
    parser.add_argument("--full", action="store_true", help="the whole suite per mutant")
    parser.add_argument("--shrink", action="store_true", help="let hypothesis shrink each failure (slow)")
    parser.add_argument("--profile", default="ci", choices=["quick", "ci", "thorough"])
    parser.add_argument("--only", action="append", default=[], metavar="ID", help="only these mutants")
    parser.add_argument("--markdown", type=Path, help="write the tables here")
    parser.add_argument("--catalogue", action="store_true", help="print the catalogue and exit")
    args = parser.parse_args(argv)
    if args.catalogue:
        print(catalogue_table())
        return 0
    unknown = [i for i in args.only if i not in CATALOGUE]
    if unknown:
        parser.error(f"unknown mutants {unknown}; known: {sorted(CATALOGUE)}")

    def progress(k: Kill) -> None:
        state = "killed" if k.killed else ("detected" if k.detected else "SURVIVED")
        print(f"  {k.mutant.id:34s} {state:9s} {_secs(k.seconds_to_kill):>6s} s", file=sys.stderr, flush=True)

    kills = kill_all(
        args.only or None, profile=args.profile, targeted=not args.full, shrink=args.shrink, on_kill=progress
    )
    mode = "full suite" if args.full else "targeted, fail-fast"
    mode += ", shrinking" if args.shrink else ", no shrinking"
    text = "\n\n".join(
        [f"Kill matrix ({mode}, profile {args.profile})", matrix(kills), kill_table(kills), summary(kills)]
    )
    print(text)
    if args.markdown is not None:
        args.markdown.write_text(text + "\n")
    return 0 if all(k.detected for k in kills) else 1


if __name__ == "__main__":
    sys.exit(main())
