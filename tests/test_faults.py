"""The harness under faults: every way an adapter can misbehave is one verdict, and the run goes on.

Fault adapters are in ``tests/fault_adapters.py`` (one fault each). Harness-level tests call the
data-parallel pool and the single-process worker directly (verdict text, kind, rank, time bound,
the pool replaced, the same text on a second run); command-line tests check exit codes, the JSON
report, the run time against a clean run, and clean interrupts (no process, semaphore or socket
folder left behind). Time bounds are generous bounds, not benchmarks.

What costs seconds is shared: the pools of the harness-level tests come from the session's one
forkserver (tests/conftest.py; after each test every pool and worker is stopped and none is left),
and the single-process and rank faults on the command line are one run (:func:`faults_cli_run`).
"""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from infonce_spec.conformance.compare import AdapterFault
from infonce_spec.conformance.harnesses.gloo import GlooHarness
from infonce_spec.conformance.harnesses.processes import close_pools
from infonce_spec.conformance.isolation import (
    HUNG_FLOOR,
    HUNG_MULTIPLE,
    CallBudget,
    NotCalled,
    call_timeout,
    set_call_timeout,
)
from infonce_spec.conformance.properties.base import Context
from infonce_spec.conformance.protocol import (
    EmbeddingCase,
    EncoderCase,
    EncoderStep,
    RankCase,
    RankEncoderCase,
    load_adapter,
)
from infonce_spec.reference import Config
from tests.processes import forkserver_pid, helper_pids, live_processes

FAULTS = Path(__file__).resolve().parent / "fault_adapters.py"
BUNDLED = "infonce_spec.adapters.bundled"


def spec(name: str) -> str:
    return f"{FAULTS}:{name}"


@pytest.fixture(autouse=True)
def _no_worker_left() -> Iterator[None]:
    """After each test every pool and call worker is stopped (:func:`close_pools`), and no process
    of them is left: none forked from the session's forkserver (conftest.py keeps that one for the
    whole session; a start costs seconds), none forked from this process but the session's helpers."""
    yield
    close_pools()
    helpers = helper_pids()
    forked_here = [pid for pid in live_processes(parent=os.getpid()) if pid not in helpers]
    assert forked_here == [], (
        f"call workers (or other children) left by this or an earlier test: {forked_here}"
    )
    server = forkserver_pid()
    if server is not None:
        ranks = live_processes(parent=server)
        assert ranks == [], (
            f"ranks or call workers of the forkserver left by this or an earlier test: {ranks}"
        )


# -- the data-parallel pool -------------------------------------------------------------------------------
def _rank_cases(w: int = 2) -> list[RankCase]:
    rng = np.random.default_rng(0)
    q, d = rng.normal(size=(2 * w, 3)), rng.normal(size=(2, 2 * w, 3))
    return [RankCase(r, w, q[2 * r : 2 * r + 2], d[:, 2 * r : 2 * r + 2], Config()) for r in range(w)]


def _encoder_cases(w: int = 2) -> list[RankEncoderCase]:
    rng = np.random.default_rng(1)
    x, weight = rng.normal(size=(2, 2 * w, 3)), rng.normal(size=(2, 3))
    return [
        RankEncoderCase(r, w, weight, x[0, 2 * r : 2 * r + 2], x[1:, 2 * r : 2 * r + 2], Config())
        for r in range(w)
    ]


#: The pool's time limit per call in these tests: a healthy call on a fresh pool of two ranks answers
#: in about 0.05 s; a hang costs the limit twice per test.
RANK_TIMEOUT = 2

RANK_FAULTS = [
    ("ExitAtRank1", "crash", "rank 1 died (exit code 3) in rank_embeddings(case)"),
    ("KilledAtRank1", "crash", "rank 1 died (killed by signal SIGKILL) in rank_embeddings(case)"),
    (
        "RaiseAtRank1",
        "exception",
        "rank 1 raised RuntimeError: rank 1 cannot gather in rank_embeddings(case)",
    ),
    (
        "MemoryErrorAtRank1",
        "memory",
        "rank 1 raised MemoryError: cannot allocate the gathered embeddings in rank_embeddings(case)",
    ),
    ("HangAtRank1", "timeout", f"rank 1 did not answer within {RANK_TIMEOUT} s in rank_embeddings(case)"),
]


@pytest.mark.distributed
@pytest.mark.parametrize(("name", "kind", "message"), RANK_FAULTS, ids=[f[0] for f in RANK_FAULTS])
def test_a_rank_fault_is_one_verdict_about_that_rank_and_the_pool_is_replaced(
    name: str, kind: str, message: str
) -> None:
    harness = GlooHarness(spec(name), 2, timeout=RANK_TIMEOUT)
    try:
        harness.start()
        messages = []
        for attempt in range(2):  # the same fault gives the same message on every run
            if kind == "timeout" and attempt == 1:
                # ... but a method that hung and never answered is not called again: a hang costs
                # one timeout per run, not one per call (isolation.CallBudget)
                with pytest.raises(NotCalled) as skipped:
                    harness.run("rank_embeddings", _rank_cases())
                assert skipped.value.detail == "the adapter hung in `rank_embeddings`"
                assert len(harness.run("rank_encoder", _encoder_cases())) == 2
                break
            start = time.monotonic()
            with pytest.raises(AdapterFault) as info:
                harness.run("rank_embeddings", _rank_cases())
            elapsed = time.monotonic() - start
            fault = info.value
            assert (fault.kind, fault.rank, fault.call) == (kind, 1, "rank_embeddings")
            messages.append(fault.detail)
            # a crash or an exception is known at once (a second of grace for the other ranks);
            # a hang takes the timeout plus the stack dump
            assert elapsed < (3 * (RANK_TIMEOUT + 2) if kind == "timeout" else 3 * 2)
            if kind == "timeout":
                assert fault.frame is not None and "fault_adapters.py" in fault.frame
                assert "in fault" in fault.frame  # the hung frame: HangAtRank1.fault
            if kind in ("exception", "memory"):
                assert fault.frame is not None and "fault_adapters.py" in fault.frame
            # the pool was replaced: a healthy call runs on a fresh one
            outs = harness.run("rank_encoder", _encoder_cases())
            assert len(outs) == 2 and all(np.shape(o.grad_weight) == (2, 3) for o in outs)
        assert messages == ([message] if kind == "timeout" else [message, message])
        assert harness.restarts == len(messages)
    finally:
        harness.close()


@pytest.mark.distributed
def test_a_constructor_that_raises_in_a_worker_is_one_load_fault() -> None:
    harness = GlooHarness(spec("ConstructorRaisesInWorker"), 2, timeout=RANK_TIMEOUT)
    try:
        for _ in range(2):  # not a broken pool: every attempt says the same
            start = time.monotonic()
            with pytest.raises(AdapterFault) as info:
                harness.run("rank_embeddings", _rank_cases())
            assert time.monotonic() - start < 60
            fault = info.value
            assert (fault.kind, fault.rank) == ("load", 0)
            assert fault.detail.startswith("rank 0 could not load the adapter: ")
            assert "RuntimeError: no accelerator in this process" in fault.detail
    finally:
        harness.close()


@pytest.mark.distributed
def test_a_rank_that_waits_while_the_others_raise_is_reported_to_the_property() -> None:
    """DP-5 wants every rank to raise: a rank left waiting in a collective is the property's to judge."""
    harness = GlooHarness(spec("OnlyRank1Refuses"), 2, timeout=2)
    try:
        harness.start()
        start = time.monotonic()
        outs = harness.run("rank_embeddings", _rank_cases(), allow_errors=True)
        assert time.monotonic() - start < 3 * (2 + 2)
        assert [o.type_name for o in outs] == ["no answer", "ValueError"]
        assert (
            outs[0].message == "did not answer within 2 s: it waits in a collective for the ranks that raised"
        )
        assert outs[1].value_or_type_error and not outs[0].value_or_type_error
        assert len(harness.run("rank_encoder", _encoder_cases())) == 2  # a fresh pool
    finally:
        harness.close()


# -- the single-process worker ----------------------------------------------------------------------------
@pytest.fixture
def short_timeout() -> Iterator[float]:
    before = call_timeout()
    set_call_timeout(2.0)
    yield 2.0
    set_call_timeout(before)


def _embeddings(ctx: Context) -> Any:
    rng = np.random.default_rng(2)
    return ctx.embeddings(rng.normal(size=(3, 2)), rng.normal(size=(2, 3, 2)), Config())


def _encoder(ctx: Context) -> Any:
    rng = np.random.default_rng(3)
    step = EncoderStep(rng.normal(size=(3, 2)), rng.normal(size=(1, 3, 2)))
    return ctx.adapter.encoder(EncoderCase(rng.normal(size=(2, 2)), (step,), Config()))


def test_a_hung_call_times_out_with_its_stack_and_the_worker_is_replaced(short_timeout: float) -> None:
    ctx = Context(load_adapter(spec("HangingEmbeddings")))
    _encoder(ctx)  # the worker is up
    start = time.monotonic()
    with pytest.raises(AdapterFault) as info:
        _embeddings(ctx)
    assert time.monotonic() - start < 3 * (short_timeout + 1)
    fault = info.value
    assert fault.kind == "timeout" and fault.rank is None and fault.call == "embeddings"
    assert fault.detail == "adapter did not answer within 2 s in embeddings(case)"
    assert fault.frame is not None and "fault_adapters.py" in fault.frame and "in embeddings" in fault.frame
    assert "0x…" in fault.frame or "0x" not in fault.frame  # thread addresses removed (stable text)
    assert np.shape(_encoder(ctx).grad_weight) == (2, 2)  # a fresh worker answers
    # embeddings hung and never answered: it is not called again (a hang costs one timeout per run)
    start = time.monotonic()
    with pytest.raises(NotCalled, match="the adapter hung in `embeddings`"):
        _embeddings(ctx)
    assert time.monotonic() - start < short_timeout


def test_after_a_hang_a_method_waits_a_multiple_of_its_slowest_answer() -> None:
    """The rule of :class:`CallBudget`: the full timeout until the method hangs; then a multiple of
    its slowest answer, at least the floor and at most the timeout; never again if it never answered."""
    budget = CallBudget()
    assert budget.limit("embeddings", 60.0) == 60.0
    budget.answered("embeddings", 0.02)
    budget.answered("embeddings", 0.3)
    assert budget.limit("embeddings", 60.0) == 60.0  # answering alone shortens nothing
    budget.hung_in("embeddings")
    assert budget.limit("embeddings", 60.0) == max(HUNG_FLOOR, HUNG_MULTIPLE * 0.3)
    assert budget.limit("embeddings", 2.0) == 2.0  # never more than --timeout
    assert "slowest answer took 0.3 s" in budget.note("embeddings", 5.0, 60.0)
    budget.answered("embeddings", 4.0)
    assert budget.limit("embeddings", 60.0) == HUNG_MULTIPLE * 4.0
    assert budget.limit("encoder", 60.0) == 60.0  # per method
    budget.hung_in("encoder")
    with pytest.raises(NotCalled, match="the adapter hung in `encoder`"):
        budget.limit("encoder", 60.0)


def test_a_dead_worker_is_a_crash_and_is_replaced(short_timeout: float) -> None:
    ctx = Context(load_adapter(spec("ExitInEmbeddings")))
    with pytest.raises(AdapterFault) as info:
        _embeddings(ctx)
    assert info.value.kind == "crash"
    assert info.value.detail == "the adapter's worker process died (exit code 7) in embeddings(case)"
    assert np.shape(_encoder(ctx).grad_weight) == (2, 2)


def test_a_worker_dropped_without_close_exits_by_itself() -> None:
    """A call worker the runner lets go of (no ``close``) sees its pipe end and exits, even with
    another worker forked after it (which must not keep a copy of the first one's pipe open)."""
    from infonce_spec.conformance.isolation import CallWorker

    loaded = load_adapter(f"{BUNDLED}:uncached")
    first, second = CallWorker(loaded), CallWorker(loaded)
    case = EmbeddingCase(np.eye(2, 3), np.eye(2, 3)[None], Config())
    first.call("embeddings", case)
    second.call("embeddings", case)
    proc = first._proc
    del first
    gc.collect()
    proc.join(timeout=10)
    assert proc.exitcode == 0, "the dropped worker is still waiting for a request"
    assert np.isfinite(second.call("embeddings", case).loss)  # the other worker still answers
    second.discard()


OUTPUT_FAULTS = [
    ("ReturnsNone", None, "embeddings() returned NoneType, which has no 'loss' (expected LossGrads)"),
    (
        "WrongShape",
        "LAYOUT-2",
        "embeddings() returned grad_docs of shape (2, 2, 2); the output contract is shape (2, 3, 2) [LAYOUT-2]",
    ),
    (
        "Float16Results",
        None,
        "embeddings() returned grad_queries as float16, but the adapter claims dtype float64",
    ),
]


@pytest.mark.parametrize("isolation", ["worker", "in process"])
@pytest.mark.parametrize(("name", "clause", "message"), OUTPUT_FAULTS, ids=[f[0] for f in OUTPUT_FAULTS])
def test_an_output_that_is_not_a_result_is_an_output_fault(
    name: str, clause: str | None, message: str, isolation: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if isolation == "in process":
        monkeypatch.setenv("INFONCE_CONFORMANCE_ISOLATION", "0")
    ctx = Context(load_adapter(spec(name)))
    with pytest.raises(AdapterFault) as info:
        _embeddings(ctx)
    assert info.value.kind == "output" and info.value.clause == clause
    assert info.value.detail.startswith(message)


def test_the_forkserver_worker_imports_the_adapter_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFONCE_CONFORMANCE_ISOLATION", "forkserver")
    ctx = Context(load_adapter(spec("Float16Results")))
    with pytest.raises(AdapterFault, match="returned grad_queries as float16") as info:
        _embeddings(ctx)
    assert info.value.kind == "output"
    assert np.shape(_encoder(ctx).grad_weight) == (2, 2)


def test_an_adapter_exception_keeps_its_type_for_the_properties() -> None:
    """VAL-1 needs ValueError/TypeError as such: the worker re-raises the adapter's own exception."""
    ctx = Context(load_adapter(f"{BUNDLED}:uncached"))
    docs_with_another_batch = np.ones((1, 3, 2))
    with pytest.raises(ValueError, match="LAYOUT-2") as info:
        ctx.adapter.embeddings(EmbeddingCase(np.ones((2, 2)), docs_with_another_batch, Config()))
    assert "worker process" in str(info.value.__cause__)


# -- the command line -------------------------------------------------------------------------------------
def _cli(*args: str, tmp: Path, timeout: float = 300) -> tuple[int, dict[str, Any], str]:
    out = tmp / "report.json"
    env = {**os.environ, "TMPDIR": str(tmp)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "infonce_spec.conformance",
            "run",
            "--no-progress",
            "--json",
            str(out),
            "--reproducers",
            str(tmp / "repro"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=tmp,
    )
    data = json.loads(out.read_text()) if out.exists() else {}
    return proc.returncode, data, proc.stdout + proc.stderr


def _by_adapter(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        rep["adapter"].rpartition(":")[2]: {p["property"]: p for p in rep["properties"]} | {"": rep}
        for rep in data["reports"]
    }


SINGLE_PROCESS_FAULTS = {
    "AlwaysRaising": "RuntimeError: the kernel is not implemented for this input",
    "ReturnsNone": "which has no 'loss'",
    "WrongShape": "[LAYOUT-2]",
    "Float16Results": "as float16, but the adapter claims dtype float64",
    "HangingEmbeddings": "adapter did not answer within 2 s in embeddings(case)",
}
CLI_RANK_FAULTS = {
    "RaiseAtRank1": "rank 1 raised RuntimeError: rank 1 cannot gather in rank_embeddings(case)",
    "KilledAtRank1": "rank 1 died (killed by signal SIGKILL) in rank_embeddings(case)",
}
SINGLE_PROCESS_PROPERTIES = ("reference/query_to_doc", "reference/doc_to_query", "encoder/linear")
DATA_PARALLEL_PROPERTIES = ("data_parallel/embeddings", "data_parallel/encoder")


@pytest.fixture(scope="module")
def faults_cli_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, dict[str, Any]], str]:
    """One command line run over a clean adapter and every fault of the command line tests (one
    process and one forkserver start for all of them): the single-process faults under the
    single-process properties, the rank faults under two data-parallel properties at W = 2 (the
    fault, then the next property); each adapter is offered every selected property (an adapter
    without data parallelism claims none of the data-parallel ones). Exit code, reports by adapter
    and property, and the output."""
    adapters = [a for n in [*SINGLE_PROCESS_FAULTS, *CLI_RANK_FAULTS] for a in ("--adapter", spec(n))]
    select = [a for prop in SINGLE_PROCESS_PROPERTIES + DATA_PARALLEL_PROPERTIES for a in ("--select", prop)]
    rc, data, log = _cli(
        "--adapter", f"{BUNDLED}:uncached", *adapters,
        "--profile", "quick", "--world-sizes", "2", "--timeout", "2", *select,
        tmp=tmp_path_factory.mktemp("faults-cli-run"),
    )  # fmt: skip
    return rc, _by_adapter(data) if data else {}, log


@pytest.mark.distributed  # the run it reads has data-parallel adapters too
def test_single_process_faults_are_one_verdict_each_and_not_shrunk(
    faults_cli_run: tuple[int, dict[str, dict[str, Any]], str],
) -> None:
    rc, reps, log = faults_cli_run
    assert rc == 1, log
    clean = reps["uncached"]
    assert clean[""]["ok"]
    for name, text in SINGLE_PROCESS_FAULTS.items():
        rep = reps[name]
        for prop in ("reference/query_to_doc", "reference/doc_to_query"):
            result = rep[prop]
            if name == "HangingEmbeddings" and prop == "reference/doc_to_query":
                # embeddings hung once and never answered: not called again (one timeout per run)
                assert result["status"] == "not established", result
                assert result["reason"] == "the adapter hung in `embeddings`"
                assert result["verdict"] == "not established" and result["failure"] is None
                continue
            assert result["status"] == "fault", (name, prop, result)
            assert text in result["failure"]["message"], (name, result["failure"]["message"])
            assert result["examples"] == 1  # reported from the first failing case, never shrunk
        # the later property still ran (and passes: only the embeddings call is broken)
        assert rep["encoder/linear"]["status"] == ("fault" if name == "AlwaysRaising" else "pass"), name
    for name in ("AlwaysRaising", "ReturnsNone", "WrongShape", "Float16Results"):
        assert reps[name][""]["seconds"] <= 2 * clean[""]["seconds"] + 1.0, (name, reps[name][""]["seconds"])
    assert reps["HangingEmbeddings"][""]["seconds"] <= clean[""]["seconds"] + (2 + 2) + 4


@pytest.mark.distributed
def test_rank_faults_on_the_command_line_then_the_next_property_runs(
    faults_cli_run: tuple[int, dict[str, dict[str, Any]], str],
) -> None:
    rc, reps, log = faults_cli_run
    assert rc == 1, log
    for name, text in CLI_RANK_FAULTS.items():
        emb, enc = reps[name]["data_parallel/embeddings"], reps[name]["data_parallel/encoder"]
        assert emb["status"] == "fault" and text in emb["failure"]["message"], emb
        assert emb["examples"] == 1 and emb["seconds"] < 30
        assert "broken" not in json.dumps(reps[name])  # no "the worker pool is broken" verdicts
        assert enc["status"] == "pass", enc  # a healthy pool for the next property
        # only rank_embeddings is broken: the single-process calls answer
        assert all(reps[name][prop]["status"] == "pass" for prop in SINGLE_PROCESS_PROPERTIES), name


def test_a_load_failure_after_a_completed_adapter_keeps_its_results(tmp_path: Path) -> None:
    rc, data, log = _cli(
        "--adapter", f"{BUNDLED}:uncached", "--adapter", "no_such_module_here:adapter",
        "--profile", "quick", "--select", "reference/query_to_doc",
        tmp=tmp_path,
    )  # fmt: skip
    assert rc == 2, log
    assert "Traceback" not in log
    (rep,) = data["reports"]
    assert rep["adapter"].endswith(":uncached") and rep["ok"]
    assert [e["adapter"] for e in data["load_errors"]] == ["no_such_module_here:adapter"]


# -- interrupts -------------------------------------------------------------------------------------------
def _session(sid: int) -> list[int]:
    """Live processes of session ``sid``."""
    return live_processes(session=sid)


def _semaphores(pids: list[int]) -> set[str]:
    """The multiprocessing semaphores these processes have mapped (``/dev/shm/sem.mp-*``)."""
    names = set()
    for pid in pids:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            continue
        names |= {line.split()[-1] for line in maps.splitlines() if "/dev/shm/sem." in line}
    return names


@pytest.mark.distributed
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupt_stops_everything_and_writes_the_partial_report(sig: int, tmp_path: Path) -> None:
    """The signal comes while a data-parallel call hangs: data_parallel/embeddings [W=1] has finished,
    and data_parallel/encoder [W=1] waits on the same pool for an answer that never comes (its time
    limit, 600 s, is far away), so the run is certainly still going, with its pool up."""
    report, out = tmp_path / "report.md", tmp_path / "report.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "infonce_spec.conformance", "run", "--no-progress",
         "--adapter", spec("HangingRankEncoder"), "--profile", "quick", "--world-sizes", "1",
         "--timeout", "600", "--select", "data_parallel", "--report", str(report), "--json", str(out),
         "--reproducers", str(tmp_path / "repro")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        cwd=tmp_path,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:  # wait until a property finished (its pool stays up for the next)
            lines.append(line)
            if "data_parallel/embeddings [W=1]" in line:
                break
        deadline = time.monotonic() + 15  # a loaded machine may take a while to map them
        while True:
            time.sleep(0.1)
            members = _session(proc.pid)
            semaphores = _semaphores(members)
            if (len(members) >= 3 and semaphores) or time.monotonic() > deadline:
                break
        assert len(members) >= 3, lines  # the runner, the forkserver, a rank (and the resource tracker)
        start = time.monotonic()
        proc.send_signal(sig)
        rest, _ = proc.communicate(timeout=60)
        assert time.monotonic() - start < 20
        assert proc.returncode == 3, "".join(lines) + rest
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    deadline = time.monotonic() + 5
    while _session(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _session(proc.pid) == []  # nothing of the run is left running
    assert semaphores and not any(Path(name).exists() for name in semaphores)
    assert not list(tmp_path.glob("pymp-*")) and not list(tmp_path.glob("infonce-conformance-*"))
    data = json.loads(out.read_text())
    assert data["interrupted"] is True and data["exit_code"] == 3
    (rep,) = data["reports"]
    finished = [p["property"] for p in rep["properties"]]
    assert finished == ["data_parallel/embeddings"]  # the interrupted property is not a result
    assert "Interrupted" in report.read_text()
