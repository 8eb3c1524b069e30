"""Adapter calls where they can be stopped: a time limit on every call, a fault as one verdict.

The implementation under test is untrusted: it may hang, die, run out of memory or answer with
something that is not a result. The single-process calls (``embeddings``, ``encoder``,
``dropout_encoder`` and the CACHE-5 peak-memory meter) therefore run in one persistent worker
process per adapter (:class:`CallWorker`). On Linux the worker is forked from the runner: the
adapter object is copied, nothing is re-imported, a start costs milliseconds (a forkserver start,
which imports torch, costs seconds per adapter: more than the 10 % the CI profile allows for this).
GNU OpenMP is not fork-safe -- a forked child that enters a parallel region the parent has used
hangs -- so torch computes on one thread in a forked worker. ``INFONCE_CONFORMANCE_ISOLATION=forkserver``
(the default elsewhere) takes the worker from the data-parallel harness's forkserver instead
(:mod:`.harnesses.processes`; the adapter is imported by its ``package.module:attribute`` name, torch keeps
its threads); ``INFONCE_CONFORMANCE_ISOLATION=0`` runs every call in process, without a time limit
(for debuggers). A runtime that starts threads of its own on first use and does not survive
``fork`` -- JAX's XLA client, TensorFlow's thread pools -- may already be running in the runner
when the adapter's module computed something at import; a forked worker would then wait forever
for a lock held by a thread that was not copied. When the adapter's load brought one of
:data:`FORK_UNSAFE_RUNTIMES` into the runner, workers are therefore spawned (a fresh interpreter
that imports the adapter by its name; nothing is inherited), as with
``INFONCE_CONFORMANCE_ISOLATION=spawn``; ``INFONCE_CONFORMANCE_ISOLATION=fork`` forks regardless,
and a forked worker that then never answers says so, naming the setting.
Every call has a time limit (``--timeout``, :func:`set_call_timeout`); what goes wrong is raised in
the runner as one :class:`~.compare.AdapterFault`:

* ``timeout`` -- "adapter did not answer within T s in embeddings(case)", with the stack of the hung
  frame (``faulthandler`` in the worker, on ``SIGUSR1``); the worker is killed and replaced;
* ``crash`` -- the worker died (exit code or signal named); it is replaced;
* ``memory`` -- the adapter raised ``MemoryError``;
* ``output`` -- a result in a lower precision than the claimed ``Capabilities.dtype``, or one that
  cannot be sent back (:func:`check_result_dtypes`, applied where the result is produced);
* ``load`` -- the adapter cannot be loaded in the worker (a constructor that raises there).

Any other exception of the adapter is re-raised as itself (``ValueError``/``TypeError`` are what
VAL-1 expects), with the worker's traceback attached as its ``__cause__``.

A worker ends with the runner, even when the runner is killed outright (:mod:`.lifetime`).

With the forkserver, an adapter that cannot be re-imported by its name (a
:class:`~.protocol.LoadedAdapter` built around an object) runs in process, without a time limit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import importlib
import multiprocessing
import os
import re
import signal
import sys
import tempfile
import time
import traceback
import weakref
from pathlib import Path
from typing import Any

from .compare import AdapterFault
from .interrupt import check as check_interrupt
from .interrupt import children_ignore_sigint
from .lifetime import Parent, end_with

__all__ = [
    "CALLS",
    "FORK_UNSAFE_RUNTIMES",
    "HUNG_FLOOR",
    "HUNG_MULTIPLE",
    "CallBudget",
    "CallWorker",
    "IsolatedAdapter",
    "NotCalled",
    "Returned",
    "adapter_frame",
    "call_timeout",
    "check_result_dtypes",
    "close_workers",
    "end_process",
    "exit_description",
    "forkserver_workers_alive",
    "isolated",
    "last_frame",
    "library_frame",
    "load_summary",
    "portable",
    "set_call_timeout",
    "wait_for",
]

#: The adapter methods that compute (everything else is read from the object in process).
CALLS: tuple[str, ...] = (
    "embeddings",
    "encoder",
    "dropout_encoder",
    "rank_embeddings",
    "rank_encoder",
    "devices_embeddings",
    "devices_encoder",
)

#: Unit roundoff of the floating dtypes an adapter may return (lower precision = larger).
_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24, "float16": 2.0**-11, "bfloat16": 2.0**-8}

_timeout = 60.0


def set_call_timeout(seconds: float) -> None:
    """The time limit of every adapter call (``--timeout``), in seconds."""
    global _timeout
    if not seconds > 0:
        raise ValueError(f"the call timeout must be > 0 seconds, got {seconds!r}")
    _timeout = float(seconds)


def call_timeout() -> float:
    """The current time limit of an adapter call, in seconds."""
    return _timeout


# -- the time limit after a hang ---------------------------------------------------------------------------
#: Once a method has hung, a later call of it waits at most this multiple of its slowest answer ...
HUNG_MULTIPLE = 10.0
#: ... but never less than this many seconds (nor more than ``--timeout``).
HUNG_FLOOR = 5.0


class NotCalled(AdapterFault):
    """A call the suite did not make: the method hung earlier in the run and never answered, so the
    property that needed it is "not established (the adapter hung in `method`)", not a new fault."""

    def __init__(self, method: str, rank: int | None = None) -> None:
        super().__init__(
            "not called",
            f"the adapter hung in `{method}`",
            call=method,
            rank=rank,
        )


class CallBudget:
    """The time limit of each call of one adapter's methods: a hang costs about one ``--timeout``.

    Until a method hangs, every call of it gets the full ``--timeout``. After it hung, a call of it
    gets ``HUNG_MULTIPLE`` times its slowest answer so far (at least ``HUNG_FLOOR`` seconds, at
    most ``--timeout``); a method that hung before it ever answered is not called again
    (:class:`NotCalled`). The calls that answered are the evidence of how long an answer takes.
    """

    def __init__(self) -> None:
        self.slowest: dict[str, float] = {}
        self.hung: set[str] = set()

    def limit(self, method: str, timeout: float) -> float:
        """Seconds to wait for a call of ``method``; raises :class:`NotCalled` when it is not made."""
        if method not in self.hung:
            return timeout
        if method not in self.slowest:
            raise NotCalled(method)
        return min(timeout, max(HUNG_FLOOR, HUNG_MULTIPLE * self.slowest[method]))

    def answered(self, method: str, seconds: float) -> None:
        self.slowest[method] = max(seconds, self.slowest.get(method, 0.0))

    def hung_in(self, method: str) -> None:
        self.hung.add(method)

    def note(self, method: str, limit: float, timeout: float) -> str:
        """How a shortened limit came about (empty for the full ``--timeout``)."""
        if limit >= timeout:
            return ""
        return (
            f" (a shortened limit: `{method}` hung earlier in this run; its slowest answer took "
            f"{self.slowest.get(method, 0.0):.2g} s)"
        )


def wait_for(ready: Any, timeout: float, *, step: float = 0.1) -> bool:
    """Wait up to ``timeout`` seconds for ``ready(seconds)`` (e.g. ``conn.poll``) to say True, in
    steps of ``step`` seconds, each followed by a safe point for an interrupt
    (:func:`~.interrupt.check`)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if ready(max(0.0, min(left, step))):
            return True
        check_interrupt()
        if left <= step:
            return bool(ready(0))


# -- results -----------------------------------------------------------------------------------------------
class Returned:
    """An adapter's result as it came back from a worker: its type's name, its fields (arrays as NumPy,
    in their own dtype; bfloat16 widened to float32) and the dtype each field was returned in."""

    __slots__ = ("dtypes", "fields", "type_name")

    def __init__(self, type_name: str, fields: dict[str, Any], dtypes: dict[str, str]) -> None:
        self.type_name = type_name
        self.fields = fields
        self.dtypes = dtypes

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self.fields[name]
        except KeyError:
            raise AttributeError(name) from None

    def __reduce__(self) -> Any:
        return (Returned, (self.type_name, self.fields, self.dtypes))

    def __repr__(self) -> str:
        return f"{self.type_name}({', '.join(self.fields)})"


def _dtype_name(value: Any) -> str | None:
    dt = getattr(value, "dtype", None)
    if dt is None and isinstance(value, (list, tuple)) and value:
        dt = getattr(value[0], "dtype", None)
    return None if dt is None else str(dt).removeprefix("torch.")


def _plain(value: Any) -> Any:
    """A torch tensor as a NumPy array in its own dtype (bfloat16, which NumPy lacks, as float32)."""
    if hasattr(value, "detach") and hasattr(value, "dtype"):
        t = value.detach().to("cpu")
        if str(t.dtype) == "torch.bfloat16":
            t = t.float()
        return t.numpy()
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value) if isinstance(value, list) else tuple(map(_plain, value))
    return value


def portable(out: Any) -> Any:
    """``out`` made device-free and picklable, keeping the dtypes: a dataclass becomes :class:`Returned`."""
    if dataclasses.is_dataclass(out) and not isinstance(out, type):
        fields, dtypes = {}, {}
        for f in dataclasses.fields(out):
            value = getattr(out, f.name)
            name = _dtype_name(value)
            if name is not None:
                dtypes[f.name] = name
            fields[f.name] = _plain(value)
        return Returned(type(out).__name__, fields, dtypes)
    return _plain(out)


def result_dtypes(out: Any) -> dict[str, str]:
    """The dtype of each array field of an adapter result (as returned, before any conversion)."""
    if isinstance(out, Returned):
        return dict(out.dtypes)
    if dataclasses.is_dataclass(out) and not isinstance(out, type):
        named = {f.name: _dtype_name(getattr(out, f.name)) for f in dataclasses.fields(out)}
        return {k: v for k, v in named.items() if v is not None}
    return {}


def check_result_dtypes(out: Any, claimed: str, call: str, rank: int | None = None) -> None:
    """Raise an ``output`` :class:`AdapterFault` when a field of ``out`` is in a lower precision than
    the claimed ``Capabilities.dtype`` (or not of a real floating type).

    The spec leaves the working precision free (§8.2); what an adapter claims is the suite's adapter
    protocol: ``Capabilities.dtype`` is the precision of the returned results, and the tolerance
    model is chosen from it. A float16 gradient from an adapter that claims float64 breaks that
    claim, not a clause of the spec (``clause=None``); a higher precision than claimed is fine.
    """
    where = f"rank {rank}: " if rank is not None else ""
    for name, dtype in result_dtypes(out).items():
        if dtype not in _ROUNDOFF:
            if dtype.startswith(("int", "uint", "bool", "complex")):
                raise AdapterFault(
                    "output",
                    f"{where}{call}() returned {name} of dtype {dtype}, not of a real floating type "
                    f"(the adapter claims dtype {claimed})",
                    call=call,
                    rank=rank,
                )
            continue  # an extended type (e.g. float128): at least as precise as float64
        if _ROUNDOFF[dtype] > _ROUNDOFF[claimed]:
            raise AdapterFault(
                "output",
                f"{where}{call}() returned {name} as {dtype}, but the adapter claims dtype {claimed} "
                f"(Capabilities.dtype is the precision of the returned results; the tolerance model of "
                f"{claimed} cannot judge a {dtype} result)",
                call=call,
                rank=rank,
            )


# -- faults ------------------------------------------------------------------------------------------------
class _RemoteTraceback(Exception):
    """The worker's traceback of an adapter exception (the ``__cause__`` of the re-raised one)."""

    def __init__(self, text: str) -> None:
        self.text = text
        super().__init__(text)

    def __str__(self) -> str:
        return f"\n(in the adapter's worker process)\n{self.text}"


def last_frame(tb_text: str) -> str | None:
    """The innermost ``File ..., line ...`` entry of a formatted traceback that is the adapter's own
    code, with its source line: frames of installed libraries (torch, numpy: ``site-packages``), of
    the standard library and of the suite's machinery are passed over, so that one line of the
    adapter is one origin whichever path reached it (in process, on a rank, under the memory meter).
    The innermost entry when no frame is the adapter's."""
    lines = tb_text.rstrip().splitlines()
    entries = []
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].lstrip().startswith('File "'):
            tail = [lines[i].strip()]
            if i + 1 < len(lines) and not lines[i + 1].lstrip().startswith(("File ", "Traceback")):
                tail.append(lines[i + 1].strip())
            entries.append("\n".join(tail))
    own = [e for e in entries if not library_frame(e)]
    return (own or entries or [None])[0]


#: Where the suite's own machinery lives (its mutants are adapters, so they count as adapter code).
_SUITE = os.path.dirname(os.path.abspath(__file__))
_STDLIB = os.path.dirname(os.path.abspath(os.__file__))


def library_frame(entry: str) -> bool:
    path = entry.split('"', 2)[1] if entry.count('"') >= 2 else ""
    if "site-packages" in path or "dist-packages" in path or path.startswith("<"):
        return True
    if path.startswith(_STDLIB + os.sep):
        return True
    return path.startswith(_SUITE + os.sep) and not path.startswith(os.path.join(_SUITE, "mutants") + os.sep)


def adapter_frame(exc: BaseException) -> str | None:
    """The last frame of the adapter's traceback for ``exc`` (from the worker when it ran there)."""
    if isinstance(exc, AdapterFault) and exc.frame:
        return exc.frame
    cause = exc.__cause__
    if isinstance(cause, _RemoteTraceback):
        return last_frame(cause.text)
    if exc.__traceback__ is not None:
        return last_frame("".join(traceback.format_tb(exc.__traceback__)))
    return None


def load_summary(exc: BaseException) -> str:
    """One line for an adapter that could not be loaded (the load error's own text names the cause)."""
    if type(exc).__name__ == "AdapterLoadError":
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def exit_description(exitcode: int | None) -> str:
    """``exit code 3`` / ``killed by signal SIGKILL`` (a process's end, as the OS reported it)."""
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return f"killed by signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


def thread_stack(dump: str) -> str | None:
    """The main thread's stack from a ``faulthandler`` dump, thread addresses removed (stable text)."""
    blocks = re.split(r"\n(?=(?:Current thread|Thread) 0x)", dump.strip())
    main = [b for b in blocks if " in _serve" in b or " in _worker_main" in b]
    text = (main or blocks)[-1] if blocks and blocks[0] else ""
    text = re.sub(r"0x[0-9a-fA-F]+", "0x…", text).strip()
    return text or None


# -- the worker --------------------------------------------------------------------------------------------
def end_process(proc: Any, wait: float = 2.0) -> None:
    """End a started worker process that did not exit by itself: SIGTERM, then SIGKILL, each given
    ``wait`` seconds (nothing is left behind, nothing waits forever)."""
    for stop in (proc.terminate, proc.kill):
        if proc.is_alive():
            stop()
            proc.join(timeout=wait)


def prepare_worker(dump_path: str) -> None:
    """In a worker: ignore SIGINT (the runner stops its workers) and dump every thread's stack to
    ``dump_path`` on ``SIGUSR1`` (the stack of a hung call)."""
    import faulthandler

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a forked worker inherits the runner's handler
    dump = open(dump_path, "w")
    faulthandler.register(signal.SIGUSR1, file=dump, all_threads=True)


def run_call(adapter: Any, claimed: str, method: str, case: Any, rank: int | None = None) -> tuple[Any, ...]:
    """One call in a worker, as a reply: ``("ok", result)``, ``("fault", kind, message, clause)`` or
    ``("raised", exception or None, type name, message, traceback, is ValueError/TypeError)``."""
    try:
        if method == "peak_bytes":
            from .properties.memory import peak_bytes

            return ("ok", peak_bytes(adapter, case))
        out = portable(getattr(adapter, method)(case))
        check_result_dtypes(out, claimed, method, rank)
        return ("ok", out)
    except AdapterFault as fault:
        return ("fault", fault.kind, fault.detail, fault.clause)
    except Exception as exc:
        tb = traceback.format_exc()
        try:
            import pickle

            pickle.loads(pickle.dumps(exc))
            sendable: BaseException | None = exc
        except Exception:  # sent as its nearest built-in base class, with the same message
            base = next(c for c in type(exc).__mro__ if c.__module__ == "builtins")
            try:
                sendable = base(str(exc))
            except Exception:
                sendable = None
        return (
            "raised",
            sendable,
            type(exc).__name__,
            str(exc),
            tb,
            isinstance(exc, (ValueError, TypeError)),
        )


def _drop_inherited_pipes() -> None:
    """In a forked worker: close the copies of the runner's forkserver and resource-tracker pipes.

    Both helpers exit when every writer of their pipe has closed it; a forked worker that kept the
    runner's copies alive would make the runner's shutdown (``stop_forkserver``, the resource
    tracker at exit) wait for the worker forever.
    """
    from multiprocessing import forkserver, resource_tracker

    for helper, fd_attr, pid_attr in (
        (forkserver._forkserver, "_forkserver_alive_fd", "_forkserver_pid"),
        (resource_tracker._resource_tracker, "_fd", "_pid"),
    ):
        fd = getattr(helper, fd_attr, None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
            setattr(helper, fd_attr, None)
            setattr(helper, pid_attr, None)


def _serve(adapter: Any, conn: Any, dump_path: str, runner_end: Any, origin: Parent) -> None:
    """The single-process worker: end with ``origin`` (:func:`~.lifetime.end_with`), load the adapter
    (``adapter`` is its name, or the object itself in a forked worker), then answer
    ``(method, case)`` until ``None`` or until the runner's end of the pipe is closed.

    A forked worker first closes its copies of the runner's pipe ends -- ``runner_end`` (its own
    pipe's) and every other live worker's: a copy left open would keep that pipe from ever
    reaching end-of-file, and a worker the runner dropped would wait forever."""
    end_with(origin)
    prepare_worker(dump_path)
    if not isinstance(adapter, str):
        _drop_inherited_pipes()
        for other in [runner_end, *(w._conn for w in list(_LIVE))]:
            if other is not None:
                with contextlib.suppress(OSError):
                    other.close()
    torch = sys.modules.get("torch")  # imported by the parent (a child imports its own afresh)
    if not isinstance(adapter, str) and torch is not None:  # forked: the parent's OpenMP pool is not
        torch.set_num_threads(1)  # fork-safe (a child that runs a parallel region hangs): one thread
    try:
        from .protocol import LoadedAdapter, load_adapter

        loaded = load_adapter(adapter) if isinstance(adapter, str) else adapter
        if not isinstance(loaded, LoadedAdapter):
            raise TypeError(f"not an adapter: {loaded!r}")
    except BaseException as exc:
        conn.send(("load", (load_summary(exc), traceback.format_exc())))
        return
    conn.send(("ready", None))
    claimed = loaded.capabilities.dtype
    while True:
        try:
            item = conn.recv()
        except (EOFError, OSError):
            return
        if item is None:
            return
        method, case = item
        reply = run_call(loaded.adapter, claimed, method, case)
        try:
            conn.send(reply)
        except Exception as exc:  # the result does not pickle
            conn.send(
                (
                    "fault",
                    "output",
                    f"{method}() returned a {type(reply[1]).__name__} that cannot be sent back from the "
                    f"worker process ({type(exc).__name__}: {exc})",
                    None,
                )
            )


def read_dump(proc: Any, path: str, wait: float = 1.0) -> str | None:
    """Ask a live worker for its stacks (``SIGUSR1``) and read them back (``None`` if none came)."""
    if proc.pid is None or not proc.is_alive():
        return None
    with contextlib.suppress(OSError):
        Path(path).write_text("")
    try:
        os.kill(proc.pid, signal.SIGUSR1)
    except OSError:
        return None
    deadline = time.monotonic() + wait
    text, last = "", -1
    while time.monotonic() < deadline:
        time.sleep(0.05)
        with contextlib.suppress(OSError):
            text = Path(path).read_text()
        if text and len(text) == last:
            break
        last = len(text)
    return text or None


@contextlib.contextmanager
def _frozen_heap(fork: bool) -> Any:
    """Around a fork: the parent's objects are moved to the permanent generation first, so that a
    collection in the child (the CACHE-5 meter collects before it measures) walks only the child's
    own objects, not the inherited heap, and touches no inherited page (the pattern the ``gc``
    module documents for ``fork``)."""
    if not fork:
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class CallWorker:
    """One persistent worker process running one adapter's single-process calls, each under a time
    limit; replaced after a timeout or a crash (the next call starts a fresh one)."""

    def __init__(self, loaded: Any, *, fork: bool = True, spawn: bool = False) -> None:
        self.loaded = loaded
        self.fork = fork
        self.spawn = spawn and not fork  # a fresh interpreter (nothing inherited), else the forkserver
        self._proc: Any = None
        self._conn: Any = None
        self._dir = tempfile.mkdtemp(prefix="infonce-conformance-")
        self._dump = os.path.join(self._dir, "stack.txt")
        self.budget = CallBudget()
        _LIVE.add(self)

    def _start(self, method: str) -> None:
        from .harnesses import processes

        os.makedirs(self._dir, exist_ok=True)
        if self.fork:  # the parent's adapter object, copied: a few milliseconds, nothing re-imported
            ctx, target = multiprocessing.get_context("fork"), self.loaded
        elif self.spawn:
            ctx, target = multiprocessing.get_context("spawn"), self.loaded.spec
        else:
            ctx, target = processes.mp_context(self.loaded.spec), self.loaded.spec
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=_serve,
            args=(target, child, self._dump, parent if self.fork else None, Parent.of(ctx)),
            daemon=True,
            name="infonce-conformance-call",
        )
        with processes.no_main_reimport(), _frozen_heap(self.fork), children_ignore_sigint():
            proc.start()
        child.close()
        self._proc, self._conn = proc, parent
        try:
            status, payload = self._receive(method, max(_timeout, 60.0), starting=True)
        except AdapterFault:
            self.close()
            raise
        if status == "load":
            self.close()
            summary, tb = payload
            raise AdapterFault(
                "load",
                f"the adapter could not be loaded in a worker process: {summary}",
                call=method,
                frame=last_frame(tb),
            )

    def _receive(
        self, method: str, timeout: float, *, starting: bool = False, note: str = ""
    ) -> tuple[Any, ...]:
        what = "while loading the adapter" if starting else f"in {method}(case)"
        try:
            answered = wait_for(self._conn.poll, timeout)
        except BaseException:  # an interrupt: the busy worker cannot read a request to stop
            self.close(graceful=False)
            raise
        if not answered:
            stack = thread_stack(read_dump(self._proc, self._dump) or "")
            self.close(graceful=False)  # a hung worker cannot read the request to stop
            if not starting:
                self.budget.hung_in(method)
            raise AdapterFault(
                "timeout",
                f"adapter did not answer within {timeout:g} s {what}{note}{_fork_hint(self.fork, starting)}",
                call=method,
                frame=stack,
            )
        try:
            return self._conn.recv()
        except (EOFError, OSError):
            self._proc.join(timeout=5.0)
            how = exit_description(self._proc.exitcode)
            self.close()
            raise AdapterFault(
                "crash", f"the adapter's worker process died ({how}) {what}", call=method
            ) from None

    def call(self, method: str, case: Any) -> Any:
        """``adapter.<method>(case)`` in the worker, within :func:`call_timeout` seconds (less once
        ``method`` has hung: :class:`CallBudget`)."""
        limit = self.budget.limit(method, _timeout)
        if self._proc is None:
            self._start(method)
        self._conn.send((method, case))
        start = time.monotonic()
        reply = self._receive(method, limit, note=self.budget.note(method, limit, _timeout))
        self.budget.answered(method, time.monotonic() - start)
        status = reply[0]
        if status == "ok":
            return reply[1]
        if status == "fault":
            _, kind, message, clause = reply
            raise AdapterFault(kind, message, clause=clause, call=method)
        _, exc, type_name, message, tb, _ = reply
        if type_name == "MemoryError":
            raise AdapterFault(
                "memory", f"{method}() raised MemoryError: {message}", call=method, frame=last_frame(tb)
            )
        if exc is None:
            raise AdapterFault(
                "exception", f"{method}() raised {type_name}: {message}", call=method, frame=last_frame(tb)
            )
        raise exc from _RemoteTraceback(tb)

    def close(self, *, graceful: bool = True) -> None:
        """Stop the worker: ask and wait a second (if ``graceful``), then terminate, then kill;
        always join."""
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if conn is not None and graceful:
            with contextlib.suppress(Exception):
                conn.send(None)
        if proc is not None and proc._popen is not None:
            if graceful:
                proc.join(timeout=1.0)
            end_process(proc)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def discard(self) -> None:
        """:meth:`close` and remove the worker's temporary folder."""
        self.close()
        with contextlib.suppress(OSError):
            for p in Path(self._dir).iterdir():
                p.unlink()
            os.rmdir(self._dir)
        _LIVE.discard(self)


_LIVE: weakref.WeakSet[CallWorker] = weakref.WeakSet()
_WORKERS: dict[int, CallWorker] = {}
#: Workers are forked from the runner where fork is safe for torch on CPU (Linux, one thread in the
#: child); elsewhere they come from the forkserver and import the adapter by name.
_FORK = sys.platform.startswith("linux")


#: Modules whose runtime starts threads on first use and does not survive ``fork`` (a forked child
#: waits forever on a lock a thread of the parent held): with one of them loaded in the runner, call
#: workers are spawned rather than forked.
FORK_UNSAFE_RUNTIMES: tuple[str, ...] = ("jax", "jaxlib", "tensorflow")


def fork_unsafe_runtime() -> str | None:
    """The first of :data:`FORK_UNSAFE_RUNTIMES` imported in this process, or ``None``."""
    return next((name for name in FORK_UNSAFE_RUNTIMES if name in sys.modules), None)


def _fork_hint(forked: bool, starting: bool) -> str:
    """For a forked worker that did not answer: the start method as a possible cause, naming the
    setting -- when a fork-unsafe runtime is loaded here (``INFONCE_CONFORMANCE_ISOLATION=fork``
    forced the fork), or when the worker hung before its first answer (a forked worker loads
    nothing, so only inherited state can stop it there)."""
    runtime = fork_unsafe_runtime()
    if not forked or not (runtime or starting):
        return ""
    cause = f"{runtime} was loaded in the runner before the fork" if runtime else "it hung before loading"
    return (
        f" (the worker was forked from the runner and {cause}: a runtime whose threads do not survive "
        "fork waits forever there; INFONCE_CONFORMANCE_ISOLATION=spawn starts workers with nothing inherited)"
    )


def _mode() -> str:
    """``INFONCE_CONFORMANCE_ISOLATION``: ``fork`` (default on Linux), ``forkserver`` (default
    elsewhere: workers import the adapter by name, torch keeps its threads), ``spawn`` (a fresh
    interpreter per worker; the default when a :data:`FORK_UNSAFE_RUNTIMES` module is loaded and
    no method is named) or ``0`` (in process)."""
    value = os.environ.get("INFONCE_CONFORMANCE_ISOLATION", "").strip().lower()
    if value in ("0", "off", "no", "false"):
        return "off"
    if value == "spawn" or (value not in ("fork", "forkserver") and fork_unsafe_runtime()):
        return "spawn"
    if value == "forkserver" or not _FORK:
        return "forkserver"
    return "fork"


class IsolatedAdapter:
    """The adapter as the properties see it: :data:`CALLS` go to its :class:`CallWorker`, everything
    else (``capabilities``, ...) is read from the object loaded in process."""

    def __init__(self, adapter: Any, worker: CallWorker) -> None:
        self._adapter = adapter
        self._worker = worker

    def __getattr__(self, name: str) -> Any:
        if name in CALLS:
            worker = self._worker

            def call(case: Any) -> Any:
                return worker.call(name, case)

            return call
        return getattr(self._adapter, name)

    def peak_bytes(self, case: Any) -> tuple[int, int]:
        """CACHE-5's meter around ``encoder(case)``, measured in the worker (where the adapter runs)."""
        return self._worker.call("peak_bytes", case)


def _reimportable(spec: str, adapter: Any) -> bool:
    """True when importing ``spec`` in a worker gives this adapter (the same object, or a fresh
    instance of exactly its class)."""
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name:
        return False
    try:
        if module_name.endswith(".py"):
            from .protocol import _import_file

            module: Any = _import_file(Path(module_name).resolve())
        else:
            module = sys.modules.get(module_name) or importlib.import_module(module_name)
        obj: Any = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception:
        return False
    return obj is adapter or (isinstance(obj, type) and type(adapter) is obj)


def isolated(loaded: Any) -> Any:
    """The adapter of ``loaded`` behind its worker (:class:`IsolatedAdapter`), or the object itself when
    it cannot be re-imported by name or isolation is switched off."""
    mode = _mode()
    if mode == "off":
        return loaded.adapter
    if mode in ("forkserver", "spawn") and not _reimportable(loaded.spec, loaded.adapter):
        return loaded.adapter
    fork, spawn = mode == "fork", mode == "spawn"
    worker = _WORKERS.get(id(loaded))
    if worker is None or worker.loaded is not loaded or (worker.fork, worker.spawn) != (fork, spawn):
        worker = _WORKERS[id(loaded)] = CallWorker(loaded, fork=fork, spawn=spawn)
    return IsolatedAdapter(loaded.adapter, worker)


def forkserver_workers_alive() -> bool:
    """Whether a single-process worker taken from the forkserver (not forked from here) is running."""
    return any(w._proc is not None and not w.fork and not w.spawn for w in list(_LIVE))


def close_workers() -> None:
    """Stop every single-process worker (the end of a run, or an interrupt)."""
    workers = list(_LIVE)  # taken first: _WORKERS may hold the last reference to a live worker
    _WORKERS.clear()
    for worker in workers:
        worker.discard()
