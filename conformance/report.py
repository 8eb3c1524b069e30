"""Reports of a run: Markdown, JSON and the rich terminal view.

An interrupted run (SIGINT, SIGTERM, ``--max-time``) has no verdict: every report says
INTERRUPTED before anything else -- the Markdown report's first heading, the terminal report's first
line, the JSON's ``"status": "interrupted"`` (``"ok"`` is false) -- with what finished and what did
not. Otherwise every report opens with the **root causes** (one line each: clause, what the spec says, the
smallest case, the replay command), then the clause table (pass / FAIL for a root cause /
"follows from X" for a consequence / not established / not claimed / not checked), the property
table (verdict, examples, seconds, worst error/tolerance ratio of a passing property) and the
failures: each root cause's evidence in full, its consequences folded under it in one line each.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from infonce_spec.release import SPEC_SHA256, release_line

from .diagnosis import RootCause
from .runner import PropertyResult, RunReport

__all__ = ["dumps_json", "interrupted_line", "print_report", "to_json", "to_markdown"]

_BADGE = {"pass": "pass", "FAIL": "**FAIL**", "adapter fault": "**adapter fault**", "ERROR": "**ERROR**"}


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
        f"validates inputs {c.validates_inputs}" + _exact_claims_text(c)
    )


def _exact_claims_text(c: Any) -> str:
    """With an exact claim: the claimed configurations and the spec's others, not claimed."""
    if c.configurations is None:
        return ""
    from .protocol import shape_text

    claimed = ", ".join(shape_text(s) for s in c.shapes())
    unclaimed = ", ".join(shape_text(s) for s in c.unclaimed_shapes()) or "none"
    return f"; configurations exactly {claimed}; not claimed: {unclaimed}"


def interrupted_line(rep: RunReport) -> str:
    """What an interrupted run finished and what it did not, in one line."""
    counts = {
        s: sum(r.status == s for r in rep.results)
        for s in ("pass", "not claimed")
        if any(r.status == s for r in rep.results)
    }
    other = len(rep.results) - sum(counts.values())
    done = ", ".join(
        [f"{n} {s}" for s, n in counts.items()] + ([f"{other} failed or not established"] if other else [])
    )
    left = ", ".join(r.label for r in rep.not_run[:6]) + (", ..." if len(rep.not_run) > 6 else "")
    return (
        f"INTERRUPTED ({rep.interrupted}) after {rep.seconds:.1f} s: no verdict; "
        f"{len(rep.results)} properties finished ({done or 'none'}); "
        f"{len(rep.not_run)} not run" + (f" ({left})" if left else "")
    )


def _header(rep: RunReport) -> str:
    """Spec, profile, world sizes (only where data parallelism is claimed), time."""
    sizes = f"; world sizes {list(rep.world_sizes) or '-'}" if rep.capabilities.data_parallel else ""
    return (
        f"- spec {rep.spec_version} (sha256 {SPEC_SHA256}); profile `{rep.profile}`{sizes}; "
        f"{rep.seconds:.1f} s"
    )


#: Failure fields that stay in memory: the case's arrays and the adapter's outputs on it (the
#: reproducer file holds the case).
_IN_MEMORY_ONLY = ("case", "observed")


def _failure_json(failure: Any) -> dict[str, Any]:
    """A failure as plain data: its fields but the in-memory ones, features as a sorted list."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(failure):
        if f.name in _IN_MEMORY_ONLY:
            continue
        value = getattr(failure, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        elif isinstance(value, (set, frozenset)):
            value = sorted(value)
        out[f.name] = value
    return out


def _ratio(r: PropertyResult) -> str:
    return f"{r.worst_ratio:.2g}" if r.status == "pass" and r.examples else ""


def _root_markdown(cause: RootCause) -> list[str]:
    r = cause.smallest
    f = r.failure
    out = [f"#### {cause.title} -- root cause ({cause.kind})", "", cause.explanation, ""]
    if cause.trigger:
        out += [f"Trigger: {cause.trigger}.", ""]
    out += [f"What the implementation computes instead -- {text}." for text in cause.matches]
    out += [""] if cause.matches else []
    out += [
        f"Found by `{r.label}`" + (f" (premise: {f.premise})" if f.premise else "") + ":",
        "",
        f.message,
        "",
    ]
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
    others = [x.label for x in cause.established_by if x is not r]
    if others:
        out.append(f"- also established by: {', '.join(others)}")
    out += ["", "Smallest case:", "", "```", f.example, "```", ""]
    if cause.consequences:
        out += ["Consequences (they follow from this root cause; replay them after fixing it):", ""]
        for c in cause.consequences:
            cf = c.failure
            line = f"- `{c.label}` filed under {cf.clause}: {cf.message.splitlines()[0]}"
            out.append(line + (f" -- replay: `{cf.replay}`" if cf.replay else ""))
        out.append("")
    return out


def to_markdown(
    reports: list[RunReport], *, interrupted: str | None = None, not_started: list[str] | tuple[str, ...] = ()
) -> str:
    """One Markdown document for one or more adapters' runs. ``interrupted`` (or an interrupted
    report) makes the first heading say INTERRUPTED; ``not_started`` are the adapters the run did not
    reach."""
    reason = interrupted or next((r.interrupted for r in reports if r.interrupted), None)
    if reason is None:
        out = ["# infonce-spec conformance report", ""]
    else:
        out = [
            f"# infonce-spec conformance report: INTERRUPTED ({reason})",
            "",
            "**Interrupted**: the run was stopped; there is no verdict. The results below are the "
            "ones that finished"
            + (f"; adapters not run: {', '.join(f'`{s}`' for s in not_started)}" if not_started else "")
            + ".",
            "",
        ]
    for rep in reports:
        diag = rep.diagnosis
        out += [f"## `{rep.adapter}` ({rep.capabilities.name}): {rep.status.upper()}", ""]
        if rep.interrupted:
            out += [interrupted_line(rep), ""]
        out += [
            _header(rep),
            f"- mode: {rep.mode}",
            f"- claims: {_caps_text(rep)}",
            "",
        ]
        if diag.roots:
            out += ["### Root causes", ""]
            out += [f"{i}. {c.line()}" for i, c in enumerate(diag.roots, 1)]
            out.append("")
        out += ["### Clauses", "", "| clause | title | verdict | properties |", "| --- | --- | --- | --- |"]
        for clause, title, v, names in rep.clause_verdicts():
            shown = "**FAIL**" if v == "FAIL" else v
            out.append(f"| {clause} | {title} | {shown} | {', '.join(names)} |")
        out += [
            "",
            "### Properties",
            "",
            "| property | clauses | verdict | examples | seconds | worst err/tol |",
            "| --- | --- | --- | ---: | ---: | ---: |",
        ]
        for r in rep.results + rep.not_run:
            v = rep.verdict(r)
            status = _BADGE.get(v, v) + (f" ({r.reason})" if r.reason else "")
            out.append(
                f"| {r.label} | {', '.join(r.clauses)} | {status} | {r.examples} | {r.seconds:.2f} | {_ratio(r)} |"
            )
        if diag.roots:
            out += ["", "### Failures", ""]
            for cause in diag.roots:
                out += _root_markdown(cause)
        notes = [(r.label, n) for r in rep.results for n in r.notes]
        if notes:
            out += ["", "### Notes", ""] + [f"- {label}: {n}" for label, n in notes]
        out.append("")
    return "\n".join(out)


def to_json(reports: list[RunReport], *, interrupted: str | None = None) -> dict[str, Any]:
    """A JSON-serialisable summary (root causes, clause verdicts, properties, failures); ``status``
    is ``interrupted`` (``ok`` false) when the run (``interrupted``) or a report was interrupted."""

    def one(rep: RunReport) -> dict[str, Any]:
        caps = {
            k: (sorted(v) if isinstance(v, frozenset) else v)
            for k, v in dataclasses.asdict(rep.capabilities).items()
        }
        if rep.capabilities.configurations is not None:  # simplest first, as JSON lists
            caps["configurations"] = [[list(dirs), mode] for dirs, mode in rep.capabilities.shapes()]
        caps["unclaimed_configurations"] = [
            [list(dirs), mode] for dirs, mode in rep.capabilities.unclaimed_shapes()
        ]
        diag = rep.diagnosis
        return {
            "adapter": rep.adapter,
            "status": rep.status,
            "ok": rep.ok,
            "interrupted": rep.interrupted,
            "stopped": rep.stopped,
            "profile": rep.profile,
            "spec_version": rep.spec_version,
            "spec_sha256": SPEC_SHA256,
            "world_sizes": list(rep.world_sizes),
            "mode": rep.mode,
            "seconds": rep.seconds,
            "capabilities": caps,
            "root_causes": [
                {
                    "clause": c.clause,
                    "kind": c.kind,
                    "explanation": c.explanation,
                    "trigger": c.trigger or None,
                    "matches": list(c.matches),
                    "established_by": [r.label for r in c.established_by],
                    "smallest": c.smallest.label,
                    "replay": c.smallest.failure.replay,
                    "consequences": [r.label for r in c.consequences],
                }
                for c in diag.roots
            ],
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
                    "verdict": rep.verdict(r),
                    "follows_from": list(diag.follows.get(r.label, ())),
                    "reason": r.reason,
                    "examples": r.examples,
                    "seconds": r.seconds,
                    "worst_ratio": r.worst_ratio if r.status == "pass" else None,
                    "notes": r.notes,
                    "failure": None if r.failure is None else _failure_json(r.failure),
                }
                for r in rep.results
            ],
            "not_run": [
                {
                    "property": r.property,
                    "world_size": r.world_size,
                    "clauses": list(r.clauses),
                    "reason": r.reason,
                }
                for r in rep.not_run
            ],
        }

    reason = interrupted or next((r.interrupted for r in reports if r.interrupted), None)
    ok = reason is None and all(r.ok for r in reports)
    return {
        "status": "interrupted" if reason else ("pass" if ok else "fail"),
        "ok": ok,
        "reports": [one(r) for r in reports],
    }


def dumps_json(reports: list[RunReport]) -> str:
    return json.dumps(to_json(reports), indent=2, default=str)


_STYLE = {
    "INTERRUPTED": "bold yellow",
    "pass": "green",
    "pass (partly not claimed)": "green",
    "FAIL": "bold red",
    "adapter fault": "bold red",
    "ERROR": "bold red",
    "not claimed": "yellow",
    "not checked": "dim",
    "not established": "magenta",
}


def _styled(verdict: str) -> str:
    from rich.markup import escape

    style = _STYLE.get(verdict, "dim" if verdict.startswith(("follows from", "not run")) else "")
    return f"[{style}]{escape(verdict)}[/]" if style else escape(verdict)


def print_report(rep: RunReport, console: Any = None, *, show_passing_clauses: bool = True) -> None:
    """The rich terminal view of one adapter's run: root causes first, then the tables, then each
    root cause's evidence with its consequences folded under it."""
    from rich.console import Console
    from rich.markup import escape
    from rich.panel import Panel
    from rich.table import Table

    console = console or Console()
    diag = rep.diagnosis
    if rep.interrupted:
        console.print(f"[bold yellow]{escape(interrupted_line(rep))}[/]", soft_wrap=True)
        console.print()
    if diag.roots:
        console.print(f"[bold red]{len(diag.roots)} root cause(s)[/] in {escape(rep.adapter)}:")
        for i, cause in enumerate(diag.roots, 1):
            console.print(f"  {i}. {escape(cause.line())}", soft_wrap=True)
        console.print()
    table = Table(title=f"{rep.adapter}: clauses", show_lines=False)
    for col in ("clause", "title", "verdict", "properties"):
        table.add_column(col, overflow="fold")
    for clause, title, v, names in rep.clause_verdicts():
        if show_passing_clauses or v != "pass":
            table.add_row(clause, escape(title), _styled(v), escape(", ".join(names)))
    console.print(table)
    props = Table(title=f"{rep.adapter}: properties ({rep.profile}, {rep.seconds:.1f} s)")
    for col in ("property", "verdict", "examples", "seconds", "worst err/tol"):
        props.add_column(
            col,
            justify="right" if col in ("examples", "seconds", "worst err/tol") else "left",
            overflow="fold",
        )
    for r in rep.results + rep.not_run:
        status = _styled(rep.verdict(r)) + (f" [dim]{escape(r.reason)}[/]" if r.reason else "")
        props.add_row(escape(r.label), status, str(r.examples), f"{r.seconds:.2f}", _ratio(r))
    console.print(props)
    for cause in diag.roots:
        r = cause.smallest
        f = r.failure
        body = f"{escape(cause.explanation)}\n\n[bold]found by[/] {escape(r.label)}\n{escape(f.message)}"
        body += f"\n\n[bold]smallest case[/]\n{escape(f.example)}"
        if f.replay:
            body += f"\n\n[bold]replay[/]  {escape(f.replay)}"
        if cause.consequences:
            body += "\n\n[bold]follows from it[/] (replay after fixing the root cause)"
            for c in cause.consequences:
                body += f"\n  {escape(c.label)} (filed under {escape(str(c.failure.clause))})"
        console.print(Panel(body, title=f"[bold red]ROOT {escape(cause.title)}[/]", expand=False))
    verdict = {
        "interrupted": f"[bold yellow]INTERRUPTED ({escape(str(rep.interrupted))}): partial results, no verdict[/]",
        "pass": "[bold green]PASS[/]",
        "fail": "[bold red]FAIL[/]",
    }[rep.status]
    console.print(
        f"{verdict} {escape(rep.adapter)} ({escape(rep.capabilities.name)}, {rep.capabilities.dtype})"
        f" against {escape(release_line())}"
    )
