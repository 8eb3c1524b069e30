"""One worker process per rank: the pool every such harness shares, and the forkserver it starts from.

:class:`RankPool` -- ``W`` worker processes per world size and run (not per example), started by a
subclass that says how the ranks meet (:class:`~.gloo.GlooHarness`: a ``gloo`` process group over a
``TCPStore`` the parent binds; :class:`~.rendezvous.RendezvousHarness`: an address and ports the
adapter's own runtime uses), every wait under a time limit, a crashed, hung or failing rank raised as
one :class:`~..compare.AdapterFault` about the root rank -- never its peers' errors from the
collectives, which a subclass recognises (:meth:`RankPool.collateral`, :meth:`RankPool.waits_for_peer`);
the pool is then replaced and the run goes on -- and terminate/kill + join of every worker in
``close`` (no orphans; a killed runner takes its workers and the forkserver with it, :mod:`..lifetime`).

The forkserver (:func:`mp_context`) pre-imports torch and the adapter's module, so that the gloo ranks
and the single-process call workers (:mod:`..isolation`, ``INFONCE_CONFORMANCE_ISOLATION=forkserver``)
start in milliseconds; :func:`shared_forkserver` keeps it across the runs of a command or a test
session and :func:`end_of_run` ends what a run started.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import shutil
import signal
import sys
import tempfile
import time
import traceback
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from ..compare import AdapterFault
from ..interrupt import check as check_interrupt
from ..interrupt import children_ignore_sigint
from ..isolation import (
    CallBudget,
    close_workers,
    end_process,
    exit_description,
    last_frame,
    load_summary,
    prepare_worker,
    read_dump,
    run_call,
    thread_stack,
)
from ..lifetime import Parent, end_with
from . import RankError

__all__ = [
    "RankPool",
    "call_on_rank",
    "close_pools",
    "end_of_run",
    "load_on_rank",
    "mp_context",
    "no_main_reimport",
    "not_started",
    "rank_error_fault",
    "serve_rank",
    "shared_forkserver",
    "stop_forkserver",
]


def call_on_rank(adapter: Any, claimed: str, method: str, case: Any, rank: int) -> tuple[str, Any]:
    """One rank's call as ``(status, payload)``: ``ok`` (the result, dtypes kept), ``error`` (a
    :class:`RankError`) or ``fault`` (``(kind, message, clause)`` of an output fault)."""
    reply = run_call(adapter, claimed, method, case, rank)
    if reply[0] == "ok":
        return "ok", reply[1]
    if reply[0] == "fault":
        return "fault", reply[1:]
    _, _exc, type_name, message, tb, value_or_type = reply
    return "error", RankError(rank, type_name, value_or_type, message, tb)


def load_on_rank(spec: str, rank: int, results: Any, dump: str, origin: Parent) -> Any | None:
    """A rank worker's first steps: end with ``origin`` (:func:`~..lifetime.end_with`), prepare for
    stack dumps, load the adapter. ``None`` (a ``load`` answer sent) when it cannot be loaded."""
    end_with(origin)
    prepare_worker(dump)
    try:
        from ..protocol import load_adapter

        return load_adapter(spec)
    except BaseException as exc:
        not_started(results, rank, "load", exc)
        return None


def not_started(results: Any, rank: int, status: str, exc: BaseException) -> None:
    """Answer ``status`` (``load``: the adapter; ``start``: joining the others) for a rank that failed."""
    results.put((rank, -1, status, (load_summary(exc), traceback.format_exc())))


def serve_rank(loaded: Any, rank: int, tasks: Any, results: Any) -> None:
    """A rank worker's loop once its group is up: run ``(seq, method, case)`` tasks from ``tasks``
    until ``None``, each answer ``(rank, seq, status, payload)`` on ``results``."""
    claimed = loaded.capabilities.dtype
    while True:
        item = tasks.get()
        if item is None:
            break
        seq, method, case = item
        status, payload = call_on_rank(loaded.adapter, claimed, method, case, rank)
        results.put((rank, seq, status, payload))


def mp_context(spec: str) -> Any:
    """A forkserver context preloading torch and the adapter's module (spawn where unavailable).

    Notes whether this module started the forkserver, so that :func:`stop_forkserver` stops it. A
    forkserver this module started for another adapter (a :func:`shared_forkserver` block) that
    lacks this adapter's module is started again with it while it has no worker: otherwise every
    rank would import the adapter's library itself (seconds each for sentence-transformers)."""
    global _STARTED_FORKSERVER
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" not in methods:
        return multiprocessing.get_context("spawn")
    from multiprocessing import forkserver

    ctx = multiprocessing.get_context("forkserver")
    # torch._dynamo: torch's functional collectives import it on their first call (~3 s per process).
    # lifetime first: from its import on, the forkserver dies with the runner (even while importing torch).
    preload = [
        "infonce_spec.conformance.lifetime",
        "torch",
        "torch.distributed",
        "torch._dynamo",
        "infonce_spec.conformance.harnesses.gloo",
    ]
    module = spec.partition(":")[0]
    if not module.endswith(".py") and "/" not in module:
        preload.append(module)
    server = forkserver._forkserver
    running = getattr(server, "_forkserver_pid", None) is not None
    lacks = not set(preload) <= set(getattr(server, "_preload_modules", None) or ())
    if running and _STARTED_FORKSERVER and lacks and not _forkserver_has_workers():
        stop_forkserver()
        running = False
    if not running:
        _STARTED_FORKSERVER = True
        ctx.set_forkserver_preload(preload)
        with children_ignore_sigint():  # a Ctrl-C never kills the forkserver mid-import
            forkserver.ensure_running()
    return ctx


def _forkserver_has_workers() -> bool:
    """Whether a pool's rank or a call worker taken from the forkserver is running (it would lose
    its exit status with the forkserver)."""
    from ..isolation import forkserver_workers_alive

    return any(pool._procs for pool in list(_POOLS)) or forkserver_workers_alive()


_STARTED_FORKSERVER = False


@contextlib.contextmanager
def no_main_reimport() -> Any:
    """Start workers without re-importing the caller's ``__main__`` (they need only the adapter's name).

    multiprocessing re-runs the main script in spawn/forkserver children (to unpickle objects defined
    there); a user's script without an ``if __name__ == "__main__"`` guard would run again in every
    worker. The preparation data is read at ``Process.start()``, so hiding the main module's file and
    spec for that call is enough.
    """
    main = sys.modules.get("__main__")
    saved = {a: main.__dict__[a] for a in ("__file__", "__spec__") if main is not None and a in main.__dict__}
    try:
        if main is not None:
            main.__dict__.pop("__file__", None)
            main.__dict__["__spec__"] = None
        yield
    finally:
        if main is not None:
            main.__dict__.update(saved)
            if "__spec__" not in saved:
                main.__dict__.pop("__spec__", None)


_POOLS: weakref.WeakSet[RankPool] = weakref.WeakSet()


def stop_forkserver() -> None:
    """Stop every worker of this process (data-parallel pools, single-process workers) and the
    forkserver if this module started it, so a run leaves no process behind."""
    global _STARTED_FORKSERVER
    close_pools()
    if not _STARTED_FORKSERVER:
        return
    from multiprocessing import forkserver

    # Its children are gone: the forkserver is killed rather than asked, since an interpreter that
    # has imported torch takes about a second to exit; ``_stop`` then reaps it and cleans up.
    pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
    if pid is not None:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    stop = getattr(forkserver._forkserver, "_stop", None)
    if stop is not None:
        with contextlib.suppress(Exception):
            stop()
    _STARTED_FORKSERVER = False


def close_pools() -> None:
    """Stop every data-parallel pool and single-process worker of this process (not the forkserver)."""
    for pool in list(_POOLS):
        pool.close(graceful=False)
    close_workers()


_SHARED = 0


@contextlib.contextmanager
def shared_forkserver() -> Iterator[None]:
    """One forkserver for every run inside the block (the command line's adapters, a test session).

    A forkserver start imports torch, ``torch.distributed`` and ``torch._dynamo`` (seconds); inside
    the block a run ends with :func:`end_of_run`, which stops its pools and workers but keeps the
    forkserver for the next run. The outermost block stops it (and anything left) on its way out.
    """
    global _SHARED
    _SHARED += 1
    try:
        yield
    finally:
        _SHARED -= 1
        if not _SHARED:
            stop_forkserver()


def end_of_run() -> bool:
    """The end of a run (or a replay, a command): every pool and worker stops; the forkserver too,
    unless a :func:`shared_forkserver` block keeps it for the next run. True if it was stopped."""
    if _SHARED:
        close_pools()
        return False
    stop_forkserver()
    return True


def rank_error_fault(error: RankError, method: str, what: str) -> AdapterFault:
    kind = "memory" if error.type_name == "MemoryError" else "exception"
    return AdapterFault(
        kind,
        f"rank {error.rank} raised {error.type_name}: {error.message} {what}",
        call=method,
        rank=error.rank,
        frame=last_frame(error.traceback),
    )


class RankPool:
    """``W`` worker processes running one adapter, one per rank; :meth:`run` sends one case per rank
    and waits for all.

    Whatever goes wrong is raised as one :class:`AdapterFault` about one rank -- the root, not its
    peers: a rank that died (exit code or signal), else the lowest rank whose own code raised
    (``MemoryError`` as ``memory``), else the lowest rank that did not answer within ``timeout``
    and is not itself waiting for a peer in a collective (with its stack). Errors the peers get from
    the collectives are never the verdict. The pool is then torn down, and the next :meth:`run`
    starts a fresh one (as pytest-xdist replaces a crashed worker).

    A subclass says how the ranks meet: :attr:`target` (the worker's main function, called with
    ``(spec, rank, world_size, meeting, timeout, tasks, results, dump, origin)``), :meth:`context`
    (the multiprocessing context), :meth:`meeting` (what each rank is handed to join the others),
    :meth:`collateral` and :meth:`waits_for_peer` (the signs of a rank waiting for another).
    """

    #: The worker's main function (a module-level function: it is pickled by name).
    target: Callable[..., None]
    #: What a rank that failed to start could not do, after "could not" (the report's words).
    joining: str = "join the process group"

    def __init__(
        self, spec: str, world_size: int, *, timeout: float = 60.0, budget: CallBudget | None = None
    ) -> None:
        self.spec = spec
        self.world_size = world_size
        self.timeout = timeout
        #: The time limit after a hang (shared by a run's pools of every world size).
        self.budget = budget if budget is not None else CallBudget()
        self.restarts = 0
        self.device = "cpu"
        self._procs: list[Any] = []
        self._tasks: list[Any] = []
        self._results: Any = None
        self._seq = 0
        self._dir = tempfile.mkdtemp(prefix="infonce-conformance-")
        self._dumps = [os.path.join(self._dir, f"rank{r}.txt") for r in range(world_size)]
        _POOLS.add(self)

    # -- what a subclass says ------------------------------------------------------------------------------
    def context(self) -> Any:
        """The multiprocessing context the ranks start from."""
        raise NotImplementedError

    def meeting(self, group_timeout: float) -> list[Any]:
        """What each rank is handed to meet the others (rank order), set up by the parent."""
        raise NotImplementedError

    def collateral(self, error: RankError) -> bool:
        """Whether ``error`` is one a rank got from the collectives because *another* rank failed."""
        raise NotImplementedError

    def waits_for_peer(self, stack: str | None) -> bool:
        """Whether a hung rank's stack shows it waiting in a collective (for another rank)."""
        raise NotImplementedError

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self, method: str = "rank_embeddings") -> None:
        """Start the pool; a rank that cannot load the adapter or join the others raises a ``load`` fault."""
        ctx = self.context()
        # The group's own timeout is well beyond the harness's, so that the harness always decides
        # first and a peer's "connection closed" never races the root rank's verdict.
        group_timeout = 2 * self.timeout + 10
        meetings = self.meeting(group_timeout)
        self._results = ctx.Queue()
        self._tasks = [ctx.Queue() for _ in range(self.world_size)]
        origin = Parent.of(ctx)
        self._procs = [
            ctx.Process(
                target=type(self).target,
                args=(
                    self.spec,
                    r,
                    self.world_size,
                    meetings[r],
                    group_timeout,
                    self._tasks[r],
                    self._results,
                    self._dumps[r],
                    origin,
                ),
                daemon=True,
                name=f"infonce-conformance-rank{r}",
            )
            for r in range(self.world_size)
        ]
        with no_main_reimport(), children_ignore_sigint():
            for p in self._procs:
                p.start()
        what = "while loading the adapter"
        out = self._collect(-1, max(self.timeout, 60.0), lambda status, payload: status != "ready")
        problems = sorted((r, s, p) for r, (s, p) in out.items() if s != "ready")
        try:
            if problems:  # reported before the rank exits: the report says why
                r, status, (summary, tb) = problems[0]
                doing = "load the adapter" if status == "load" else self.joining
                raise AdapterFault(
                    "load",
                    f"rank {r} could not {doing}: {summary}",
                    call=method,
                    rank=r,
                    frame=last_frame(tb),
                )
            self._raise_dead(method, what)
            self._raise_missing(out, method, what, [])
        except AdapterFault:
            self.close(graceful=False)
            raise

    def close(self, *, graceful: bool = True) -> None:
        """Stop every worker: ask (if ``graceful``), then kill the ones left, all at once; always join
        (no orphans). All at once: a rank whose peers went first may abort loudly (JAX's coordination
        service does), and a runtime may catch SIGTERM (JAX's preemption notifier), so the ranks that
        did not leave when asked get SIGKILL together."""
        for q in self._tasks:
            with contextlib.suppress(Exception):
                q.put_nowait(None)
        procs = [p for p in self._procs if p._popen is not None]  # started ones (an interrupt may come first)
        deadline = time.monotonic() + (3.0 if graceful else 0.0)
        for p in procs:
            p.join(timeout=max(0.0, deadline - time.monotonic()))
        for p in procs:
            if p.is_alive():
                p.kill()
        for p in procs:
            end_process(p)
        for q in [*self._tasks, self._results]:
            if q is not None:
                with contextlib.suppress(Exception):
                    q.cancel_join_thread()
                    q.close()
        self._procs, self._tasks, self._results = [], [], None
        self.closed()

    def closed(self) -> None:
        """After :meth:`close`: drop what :meth:`meeting` set up in the parent (nothing by default)."""

    def __enter__(self) -> RankPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            shutil.rmtree(self._dir, ignore_errors=True)

    # -- running -------------------------------------------------------------------------------------------
    def _dead(self) -> list[tuple[int, int | None]]:
        return [
            (r, p.exitcode) for r, p in enumerate(self._procs) if p._popen is not None and not p.is_alive()
        ]

    def _collect(
        self, seq: int, timeout: float, root: Callable[[str, Any], bool]
    ) -> dict[int, tuple[str, Any]]:
        """Answers ``{rank: (status, payload)}`` until all ranks answered, one died, ``timeout`` passed,
        or one second after the first answer that is a ``root`` of failure (the others may be waiting
        for it in a collective; the second lets a lower rank's own failure arrive too)."""
        out: dict[int, tuple[str, Any]] = {}
        deadline = time.monotonic() + timeout
        dead_seen: float | None = None
        while len(out) < self.world_size:
            check_interrupt()
            now = time.monotonic()
            if now >= deadline:
                break
            if dead_seen is None and self._dead():
                dead_seen = now  # drain what the ranks sent before they went (their last words)
                deadline = min(deadline, now + 0.2)
            try:
                rank, got_seq, status, payload = self._results.get(timeout=min(0.05, deadline - now))
            except queue.Empty:
                continue
            if got_seq != seq:
                continue
            out[rank] = (status, payload)
            if root(status, payload):
                deadline = min(deadline, time.monotonic() + min(1.0, timeout))
        return out

    def _raise_dead(self, method: str, what: str) -> None:
        dead = self._dead()
        if dead:
            time.sleep(0.1)  # a rank dying takes its peers' connections with it: name the first to go
            r, code = min(self._dead())
            raise AdapterFault(
                "crash", f"rank {r} died ({exit_description(code)}) {what}", call=method, rank=r
            )

    def _raise_missing(
        self,
        out: dict[int, tuple[str, Any]],
        method: str,
        what: str,
        causes: list[RankError],
        limit: float | None = None,
    ) -> None:
        """Ranks that did not answer: the lowest one not itself waiting in a collective; if all of
        them wait in one, the lowest rank's error in ``causes`` (they wait for it), else rank 0."""
        missing = [r for r in range(self.world_size) if r not in out]
        if not missing:
            return
        stacks = {r: thread_stack(read_dump(self._procs[r], self._dumps[r]) or "") for r in missing}
        hung = [r for r in missing if not self.waits_for_peer(stacks[r])]
        if not hung and causes:
            raise rank_error_fault(causes[0], method, what)
        r = (hung or missing)[0]
        if limit is None:  # while the pool starts: not a hang of ``method``
            limit = self.timeout
        else:
            self.budget.hung_in(method)
        raise AdapterFault(
            "timeout",
            f"rank {r} did not answer within {limit:g} s {what}{self.budget.note(method, limit, self.timeout)}",
            call=method,
            rank=r,
            frame=stacks[r],
        )

    def _hung_as_errors(self, out: dict[int, tuple[str, Any]], limit: float) -> None:
        """With ``allow_errors``: ranks that did not answer because they wait in a collective for the
        ranks that raised come back as a :class:`RankError` of type ``"no answer"`` (the property
        judges them: DP-5 wants every rank to raise), not as an adapter fault."""
        missing = [r for r in range(self.world_size) if r not in out]
        stacks = {r: thread_stack(read_dump(self._procs[r], self._dumps[r]) or "") for r in missing}
        if missing and all(self.waits_for_peer(stacks[r]) for r in missing):
            for r in missing:
                message = (
                    f"did not answer within {limit:g} s: it waits in a collective for the ranks that raised"
                )
                out[r] = ("error", RankError(r, "no answer", False, message, stacks[r] or ""))
            self.close(graceful=False)

    def run(self, method: str, cases: list[Any], *, allow_errors: bool = False) -> list[Any]:
        """Run ``adapter.<method>(cases[r])`` on every rank r; results in rank order.

        With ``allow_errors`` a rank's exception comes back as a :class:`RankError` (DP-5 expects
        them); otherwise it is raised as an :class:`AdapterFault`. Crashes, hangs and output faults
        always raise (see the class docstring); the pool is then replaced on the next call.
        """
        limit = self.budget.limit(method, self.timeout)  # NotCalled after a hang that never answered
        if not self._procs:
            self.start(method)
        self._seq += 1
        seq = self._seq
        for r, case in enumerate(cases):
            self._tasks[r].put((seq, method, case))
        what = f"in {method}(case)"

        def unexpected(status: str, payload: Any) -> bool:
            """A fault, or an error that is not the ValueError/TypeError ``allow_errors`` expects."""
            if status == "fault":
                return True
            if status != "error" or self.collateral(payload):
                return False
            return not (allow_errors and payload.value_or_type_error)

        start = time.monotonic()
        out = self._collect(seq, limit, unexpected)
        if len(out) == self.world_size:
            self.budget.answered(method, time.monotonic() - start)
        errors = sorted((r, p) for r, (s, p) in out.items() if s == "error")
        faults = sorted((r, p) for r, (s, p) in out.items() if s == "fault")
        roots = [e for _, e in errors if unexpected("error", e)]
        try:
            self._raise_dead(method, what)
            if roots:
                raise rank_error_fault(roots[0], method, what)
            if faults:
                r, (kind, message, clause) = faults[0]
                raise AdapterFault(kind, message, clause=clause, call=method, rank=r)
            if allow_errors and errors:
                self._hung_as_errors(out, limit)  # DP-5: a rank that waits instead of raising
            self._raise_missing(out, method, what, [e for _, e in errors if unexpected("error", e)], limit)
            if errors and not allow_errors:
                raise rank_error_fault(errors[0][1], method, what)
        except AdapterFault:
            self.close(graceful=False)
            self.restarts += 1
            raise
        if errors and len(errors) < len(cases):
            # Some ranks raised, the others finished: the group may be out of step; start afresh.
            self.close()
        return [out[r][1] for r in range(len(cases))]
