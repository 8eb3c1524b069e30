"""Interrupted is its own verdict, and an interrupt is never lost.

The reports of an interrupted run (SIGINT, SIGTERM, ``--max-time``) say INTERRUPTED before anything
else and never "conformant" or ``"ok": true``; a signal is a request the runner acts on at its next
safe point (:mod:`infonce_spec.conformance.interrupt`), so it reaches the runner whatever code is
running, with no traceback. The sweep here sends SIGINT at a few moments of a run (a process each);
``python -m tests.interrupt_sweep --interrupts 50`` is the full sweep, run on demand.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from infonce_spec.conformance import cli, interrupt
from infonce_spec.conformance.protocol import Capabilities
from infonce_spec.conformance.report import to_json, to_markdown
from infonce_spec.conformance.runner import PropertyResult, RunReport, run_adapter
from tests.interrupt_sweep import delays, interrupt_once

HERE = Path(__file__).resolve()
CLI_TESTS = HERE.with_name("test_conformance_cli.py")


def _partial(reason: str | None = "SIGINT") -> RunReport:
    """A report with one passing property and one the interrupt left unrun."""
    done = PropertyResult("reference/query_to_doc", ("QD-1",), "", "embeddings", "pass", examples=8)
    left = PropertyResult(
        "numerics/large_logits", ("NUM-1",), "", "embeddings", "not run", reason=reason or ""
    )
    return RunReport("m:A", Capabilities(name="a"), "quick", (), [done], 1.5, stopped=reason, not_run=[left])


def test_an_interrupted_report_says_interrupted_first_and_never_ok() -> None:
    rep = _partial()
    assert rep.interrupted == "SIGINT" and rep.status == "interrupted" and not rep.ok
    text = to_markdown([rep])
    first, *_ = text.splitlines()
    assert first == "# infonce-spec conformance report: INTERRUPTED (SIGINT)"
    assert "## `m:A` (a): INTERRUPTED" in text and "PASS" not in text
    data = to_json([rep])
    assert data["status"] == "interrupted" and data["ok"] is False
    assert data["reports"][0]["status"] == "interrupted" and data["reports"][0]["ok"] is False
    assert data["reports"][0]["not_run"] == [
        {"property": "numerics/large_logits", "world_size": None, "clauses": ["NUM-1"], "reason": "SIGINT"}
    ]
    verdicts = {c: v for c, _, v, _ in rep.clause_verdicts()}
    assert verdicts["QD-1"] == "pass" and verdicts["NUM-1"] == "not run (SIGINT)"


def test_the_summary_line_of_an_interrupted_run_has_no_verdict() -> None:
    outcome = cli.RunOutcome(reports=[_partial()], interrupted="SIGINT", not_started=["m:B"], seconds=2.0)
    line = cli.summary_line(outcome)
    assert line.startswith("INTERRUPTED: no verdict (SIGINT); finished: 0 of 2 adapters")
    assert "m:A (1 properties not run)" in line and "not started: m:B" in line
    assert "conformant" not in line and outcome.exit_code == cli.ExitCode.INTERRUPTED


def test_a_signal_is_a_request_acted_on_at_the_next_safe_point() -> None:
    """Inside the guard a signal raises nothing where it lands; :func:`interrupt.check` raises."""
    with interrupt.guarded_run():
        signal.raise_signal(signal.SIGINT)  # the handler runs here: it only records the request
        assert interrupt.pending() == "SIGINT"
        with pytest.raises(interrupt.Interrupted) as info:
            interrupt.check()
        assert info.value.reason == "SIGINT"
        signal.raise_signal(signal.SIGINT)  # stopping: ignored
    assert interrupt.pending() is None  # the guard's end forgets it


def test_fail_fast_leaves_clauses_not_run() -> None:
    """Clauses that only the properties after the early stop cover read "not run (--fail-fast)"."""
    rep = run_adapter(
        f"{CLI_TESTS}:BrokenSelfMask", profile="quick", world_sizes=(), reproducer_dir=None, fail_fast=True
    )
    assert rep.stopped == "--fail-fast" and rep.interrupted is None and not rep.ok
    assert rep.not_run and all(r.reason == "--fail-fast" for r in rep.not_run)
    verdicts = {c: v for c, _, v, _ in rep.clause_verdicts()}
    assert "not run (--fail-fast)" in verdicts.values(), verdicts
    assert "not checked" not in {verdicts[c] for r in rep.not_run for c in r.clauses}


def test_max_time_stops_the_run_with_a_partial_report(tmp_path: Path) -> None:
    """``--max-time`` is the same stop request, made by the clock: exit 3 and the partial reports."""
    code = cli.main(
        [
            "run",
            "--adapter",
            f"{CLI_TESTS}:NumpyQueryToQuery",
            "--profile",
            "ci",
            "--max-time",
            "0.5",
            "--json",
            str(tmp_path / "r.json"),
            "--report",
            str(tmp_path / "r.md"),
            "--no-progress",
        ]
    )
    assert code == cli.ExitCode.INTERRUPTED
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["status"] == "interrupted" and data["ok"] is False
    assert data["interrupted_by"] == "--max-time 0.5 s"
    (rep,) = data["reports"]
    assert rep["not_run"] and all(p["reason"] == "--max-time 0.5 s" for p in rep["not_run"])
    assert (
        (tmp_path / "r.md")
        .read_text()
        .startswith("# infonce-spec conformance report: INTERRUPTED (--max-time 0.5 s)")
    )


@pytest.mark.distributed
def test_sigint_at_several_moments_of_a_run(tmp_path: Path) -> None:
    """A few moments of the sweep (interpreter start-up and imports, single-process properties,
    the forkserver's and the pool's start, the data-parallel examples, a hung rank): every time
    exit 3, an interrupted report and JSON, no traceback, nothing left running."""
    outcomes = [
        interrupt_once(delay, group=i % 2 == 0, folder=tmp_path / f"run{i}")
        for i, delay in enumerate(delays(4, 1.0, 10.0))
    ]
    assert [(o.delay, o.problems) for o in outcomes if o.problems] == []
