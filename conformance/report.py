"""Reports of a run: Markdown, JSON and the rich terminal view.

Every report has the clause table (clause x verdict: pass / FAIL / not claimed / not checked), the
property table (status, examples, seconds, worst error/tolerance ratio seen in passing comparisons)
and, for each failure, the clause, the config, the shrunk example, the largest error against its
bound, the reproducer file and the one-line replay command.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from .runner import RunReport

__all__ = ["print_report", "to_json", "to_markdown"]

_BADGE = {"pass": "pass", "FAIL": "**FAIL**", "ERROR": "**ERROR**", "not claimed": "not claimed"}


def _caps_text(report: RunReport) -> str:
    c = report.capabilities
    levels = (
        ["embeddings"]
        + (["encoder"] if c.encoder else [])
        + (["cached"] if c.cached else [])
        + (["dropout"] if c.dropout else [])
        + (["data-parallel"] if c.data_parallel else [])
    )
    return (
        f"dtype {c.dtype}; levels {', '.join(levels)}; directions {sorted(c.directions)}; "
        f"partition {sorted(c.partition_modes)}; similarity {sorted(c.similarities)}; "
        f"hardness {sorted(c.hardness_modes)}; max K {c.max_k or 'any'}; grad_scale {c.grad_scale}; "
        f"validates inputs {c.validates_inputs}"
    )


def to_markdown(reports: list[RunReport]) -> str:
    """One Markdown document for one or more adapters' runs."""
    out = ["# infonce-spec conformance report", ""]
    for rep in reports:
        verdict = "PASS" if rep.ok else "FAIL"
        out += [
            f"## `{rep.adapter}` ({rep.capabilities.name}): {verdict}",
            "",
            f"- spec {rep.spec_version}; profile `{rep.profile}`; world sizes {list(rep.world_sizes) or '-'}; "
            f"{rep.seconds:.1f} s",
            f"- mode: {rep.mode}",
            f"- claims: {_caps_text(rep)}",
            "",
            "### Clauses",
            "",
            "| clause | title | verdict | properties |",
            "| --- | --- | --- | --- |",
        ]
        for clause, title, v, names in rep.clause_verdicts():
            shown = "**FAIL**" if v == "FAIL" else v
            out.append(f"| {clause} | {title} | {shown} | {', '.join(names)} |")
        out += [
            "",
            "### Properties",
            "",
            "| property | clauses | status | examples | seconds | worst err/tol |",
            "| --- | --- | --- | ---: | ---: | ---: |",
        ]
        for r in rep.results:
            status = _BADGE.get(r.status, r.status) + (f" ({r.reason})" if r.reason else "")
            ratio = f"{r.worst_ratio:.2g}" if r.status == "pass" and r.examples else ""
            out.append(
                f"| {r.label} | {', '.join(r.clauses)} | {status} | {r.examples} | {r.seconds:.2f} | {ratio} |"
            )
        failures = [r for r in rep.results if r.failure is not None]
        if failures:
            out += ["", "### Failures", ""]
        for r in failures:
            f = r.failure
            assert f is not None
            out += [f"#### {f.clause} -- {r.label}", "", f"{f.message}", ""]
            if f.mismatch is not None:
                m = f.mismatch
                out.append(
                    f"- largest error: `{m.quantity}` at {m.index}: computed {m.computed:.6g}, expected "
                    f"{m.expected:.6g}, |diff| {m.difference:.3g} vs allowed {m.bound:.3g} "
                    f"({m.ratio:.3g} x); {m.n_bad}/{m.n_total} elements out"
                )
            if f.config is not None:
                out.append(f"- config: `{f.config}`")
            if f.reproducer:
                out += [f"- reproducer: `{f.reproducer}`", f"- replay: `{f.replay}`"]
            out += ["", "Shrunk example:", "", "```", f.example, "```", ""]
        notes = [(r.label, n) for r in rep.results for n in r.notes]
        if notes:
            out += ["", "### Notes", ""] + [f"- {label}: {n}" for label, n in notes]
        out.append("")
    return "\n".join(out)


def to_json(reports: list[RunReport]) -> dict[str, Any]:
    """A JSON-serialisable summary (clause verdicts, properties, failures)."""

    def one(rep: RunReport) -> dict[str, Any]:
        caps = {
            k: (sorted(v) if isinstance(v, frozenset) else v)
            for k, v in dataclasses.asdict(rep.capabilities).items()
        }
        return {
            "adapter": rep.adapter,
            "ok": rep.ok,
            "profile": rep.profile,
            "spec_version": rep.spec_version,
            "world_sizes": list(rep.world_sizes),
            "mode": rep.mode,
            "seconds": rep.seconds,
            "capabilities": caps,
            "clauses": [
                {"clause": c, "title": t, "verdict": v, "properties": p}
                for c, t, v, p in rep.clause_verdicts()
            ],
            "properties": [
                {
                    "property": r.property,
                    "world_size": r.world_size,
                    "clauses": list(r.clauses),
                    "status": r.status,
                    "reason": r.reason,
                    "examples": r.examples,
                    "seconds": r.seconds,
                    "worst_ratio": r.worst_ratio,
                    "notes": r.notes,
                    "failure": None
                    if r.failure is None
                    else {
                        k: (dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v)
                        for k, v in dataclasses.asdict(r.failure).items()
                    },
                }
                for r in rep.results
            ],
        }

    return {"ok": all(r.ok for r in reports), "reports": [one(r) for r in reports]}


def dumps_json(reports: list[RunReport]) -> str:
    return json.dumps(to_json(reports), indent=2, default=str)


def print_report(rep: RunReport, console: Any = None, *, show_passing_clauses: bool = True) -> None:
    """The rich terminal view of one adapter's run."""
    from rich.console import Console
    from rich.markup import escape
    from rich.panel import Panel
    from rich.table import Table

    console = console or Console()
    style = {
        "pass": "green",
        "FAIL": "bold red",
        "ERROR": "bold red",
        "not claimed": "yellow",
        "not checked": "dim",
        "pass (partly not claimed)": "green",
        "not established": "magenta",
    }
    table = Table(title=f"{rep.adapter}: clauses", show_lines=False)
    for col in ("clause", "title", "verdict", "properties"):
        table.add_column(col)
    for clause, title, v, names in rep.clause_verdicts():
        if show_passing_clauses or v != "pass":
            table.add_row(clause, escape(title), f"[{style.get(v, '')}]{v}[/]", escape(", ".join(names)))
    console.print(table)
    props = Table(title=f"{rep.adapter}: properties ({rep.profile}, {rep.seconds:.1f} s)")
    for col in ("property", "status", "examples", "seconds", "worst err/tol"):
        props.add_column(col, justify="right" if col in ("examples", "seconds", "worst err/tol") else "left")
    for r in rep.results:
        status = f"[{style.get(r.status, '')}]{r.status}[/]" + (
            f" [dim]{escape(r.reason)}[/]" if r.reason else ""
        )
        ratio = f"{r.worst_ratio:.2g}" if r.status == "pass" and r.examples else ""
        props.add_row(escape(r.label), status, str(r.examples), f"{r.seconds:.2f}", ratio)
    console.print(props)
    for r in rep.results:
        if r.failure is None:
            continue
        f = r.failure
        body = f"{escape(f.message)}\n\n[bold]shrunk example[/]\n{escape(f.example)}"
        if f.replay:
            body += f"\n\n[bold]replay[/]  {escape(f.replay)}"
        console.print(Panel(body, title=f"[bold red]FAIL {f.clause}[/] {escape(r.label)}", expand=False))
    verdict = "[bold green]PASS[/]" if rep.ok else "[bold red]FAIL[/]"
    console.print(
        f"{verdict} {escape(rep.adapter)} ({escape(rep.capabilities.name)}, {rep.capabilities.dtype})"
    )
