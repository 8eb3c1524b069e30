"""The data-parallel harness: the suite owns the worker processes and the process group (DP-1 .. DP-5).

:class:`GlooHarness` -- one pool of ``W`` worker processes per world size and run (not per
example), a ``gloo`` process group over a ``TCPStore`` that the parent binds to port 0 (the OS
picks a free port; no probe-then-bind race), every wait under a timeout, a crashed or hung worker
raised as :class:`HarnessError` (the property reports it as a failure of its clause), and
terminate/kill + join of every worker in ``close`` (no orphans). Workers are forked from a
``forkserver`` that has pre-imported torch and the adapter module (a spawn per worker would
re-import torch each time); they import the adapter by its ``package.module:attribute`` name.

:class:`TorchrunHarness` -- under ``torchrun`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set) the runner
is itself one rank: it initialises the default group (NCCL when CUDA is available, else gloo),
computes its own rank's case in-process, and all-gathers every rank's result as an object, so all
ranks see the same results and take the same (derandomized) hypothesis path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import multiprocessing
import os
import queue
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "GlooHarness",
    "HarnessError",
    "RankError",
    "TorchrunHarness",
    "in_torchrun",
    "plain_result",
]


class HarnessError(RuntimeError):
    """A rank raised, crashed or hung. ``kind`` is ``"error"``, ``"crash"``, ``"timeout"`` or ``"start"``."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(f"data-parallel worker {kind}: {message}")


@dataclass(frozen=True)
class RankError:
    """An exception raised by the adapter on one rank (sent back instead of a result)."""

    rank: int
    type_name: str
    value_or_type_error: bool
    message: str
    traceback: str


def _as_float64(x: Any) -> Any:
    if hasattr(x, "detach"):  # a torch tensor: any device, any floating dtype
        x = x.detach().to("cpu").double().numpy()
    return np.asarray(x, dtype=np.float64)


def plain_result(out: Any) -> Any:
    """An adapter result with every array as a float64 NumPy array (picklable, device-free)."""
    if dataclasses.is_dataclass(out) and not isinstance(out, type):
        changes = {}
        for f in dataclasses.fields(out):
            value = getattr(out, f.name)
            if f.name == "losses":
                changes[f.name] = [float(_as_float64(v)) for v in value]
            elif f.name in ("loss", "grad_scale"):
                changes[f.name] = None if value is None else float(_as_float64(value))
            else:
                changes[f.name] = _as_float64(value)
        return dataclasses.replace(out, **changes)
    return out


def _call(adapter: Any, method: str, case: Any, rank: int) -> tuple[str, Any]:
    try:
        return "ok", plain_result(getattr(adapter, method)(case))
    except Exception as exc:
        return "error", RankError(
            rank,
            type(exc).__name__,
            isinstance(exc, (ValueError, TypeError)),
            str(exc),
            traceback.format_exc(),
        )


def _worker_main(
    spec: str, rank: int, world: int, port: int, timeout: float, tasks: Any, results: Any
) -> None:
    """One rank: join the group, then run ``(seq, method, case)`` tasks until ``None``."""
    try:
        import torch
        import torch.distributed as dist

        from .protocol import load_adapter

        torch.set_num_threads(1)
        adapter = load_adapter(spec).adapter
        store = dist.TCPStore("127.0.0.1", port, world, False, timeout=datetime.timedelta(seconds=timeout))
        dist.init_process_group(
            "gloo", store=store, rank=rank, world_size=world, timeout=datetime.timedelta(seconds=timeout)
        )
    except BaseException:
        results.put((rank, -1, "start", traceback.format_exc()))
        return
    results.put((rank, -1, "ready", None))
    while True:
        item = tasks.get()
        if item is None:
            break
        seq, method, case = item
        status, payload = _call(adapter, method, case, rank)
        results.put((rank, seq, status, payload))
    with contextlib.suppress(Exception):
        dist.destroy_process_group()


def _mp_context(spec: str) -> Any:
    """A forkserver context preloading torch and the adapter's module (spawn where unavailable)."""
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" not in methods:
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    # torch._dynamo: torch's functional collectives import it on their first call (~3 s per process).
    preload = ["torch", "torch.distributed", "torch._dynamo", "infonce_spec.conformance.distributed"]
    module = spec.partition(":")[0]
    if not module.endswith(".py") and "/" not in module:
        preload.append(module)
    ctx.set_forkserver_preload(preload)
    return ctx


_STARTED_FORKSERVER = False


@contextlib.contextmanager
def _no_main_reimport() -> Any:
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


def stop_forkserver() -> None:
    """Stop the forkserver if this module started it (so a run leaves no process behind)."""
    global _STARTED_FORKSERVER
    if not _STARTED_FORKSERVER:
        return
    from multiprocessing import forkserver

    stop = getattr(forkserver._forkserver, "_stop", None)
    if stop is not None:
        with contextlib.suppress(Exception):
            stop()
    _STARTED_FORKSERVER = False


class GlooHarness:
    """``W`` gloo workers running one adapter; :meth:`run` sends one case per rank and waits for all.

    After a crash the pool is torn down and the next :meth:`run` starts a fresh one, at most
    ``max_restarts`` times; after a hang (or too many crashes) every later :meth:`run` fails at once,
    so shrinking never waits on a broken pool again and again.
    """

    def __init__(self, spec: str, world_size: int, *, timeout: float = 60.0, max_restarts: int = 2) -> None:
        self.spec = spec
        self.world_size = world_size
        self.timeout = timeout
        self.max_restarts = max_restarts
        self.restarts = 0
        self.device = "cpu"
        self._procs: list[Any] = []
        self._tasks: list[Any] = []
        self._results: Any = None
        self._store: Any = None
        self._seq = 0
        self._broken: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> None:
        global _STARTED_FORKSERVER
        from multiprocessing import forkserver

        import torch.distributed as dist

        if getattr(forkserver._forkserver, "_forkserver_pid", None) is None:
            _STARTED_FORKSERVER = True
        ctx = _mp_context(self.spec)
        self._store = dist.TCPStore(
            "127.0.0.1",
            0,
            self.world_size + 1,
            True,
            timeout=datetime.timedelta(seconds=self.timeout),
            wait_for_workers=False,
        )
        port = self._store.port
        self._results = ctx.Queue()
        self._tasks = [ctx.Queue() for _ in range(self.world_size)]
        self._procs = [
            ctx.Process(
                target=_worker_main,
                args=(self.spec, r, self.world_size, port, self.timeout, self._tasks[r], self._results),
                daemon=True,
                name=f"infonce-conformance-rank{r}",
            )
            for r in range(self.world_size)
        ]
        with _no_main_reimport():
            for p in self._procs:
                p.start()
        ready: set[int] = set()
        deadline = time.monotonic() + max(self.timeout, 60.0)
        try:
            while len(ready) < self.world_size:
                rank, _, status, payload = self._get(deadline, "starting the process group")
                if status != "ready":
                    raise HarnessError("start", f"rank {rank} could not start:\n{payload}")
                ready.add(rank)
        except HarnessError:
            self.close(graceful=False)
            raise

    def close(self, *, graceful: bool = True) -> None:
        """Stop every worker: ask (if ``graceful``), then terminate, then kill; always join (no orphans)."""
        for q in self._tasks:
            with contextlib.suppress(Exception):
                q.put_nowait(None)
        deadline = time.monotonic() + (3.0 if graceful else 0.0)
        for p in self._procs:
            p.join(timeout=max(0.0, deadline - time.monotonic()))
        for p in self._procs:
            if p.is_alive():
                p.terminate()
                p.join(timeout=2.0)
            if p.is_alive():
                p.kill()
                p.join(timeout=2.0)
        for q in [*self._tasks, self._results]:
            if q is not None:
                with contextlib.suppress(Exception):
                    q.cancel_join_thread()
                    q.close()
        self._procs, self._tasks, self._results, self._store = [], [], None, None

    def __enter__(self) -> GlooHarness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- running -------------------------------------------------------------------------------------------
    def _get(self, deadline: float, what: str) -> tuple[int, int, str, Any]:
        while True:
            try:
                return self._results.get(timeout=0.1)
            except queue.Empty:
                pass
            dead = [(r, p.exitcode) for r, p in enumerate(self._procs) if not p.is_alive()]
            if dead:
                raise HarnessError(
                    "crash",
                    f"rank(s) {[r for r, _ in dead]} died (exit codes {[c for _, c in dead]}) while {what}",
                )
            if time.monotonic() > deadline:
                raise HarnessError(
                    "timeout", f"no answer within {self.timeout:.0f} s while {what} (a hung rank)"
                )

    def run(self, method: str, cases: list[Any], *, allow_errors: bool = False) -> list[Any]:
        """Run ``adapter.<method>(cases[r])`` on every rank r; results in rank order.

        With ``allow_errors`` a rank's exception comes back as a :class:`RankError`; otherwise it
        raises :class:`HarnessError`. Crashes and hangs always raise.
        """
        if self._broken is not None:
            raise HarnessError("crash", f"the worker pool is broken after earlier failures ({self._broken})")
        if not self._procs:
            try:
                self.start()
            except HarnessError as exc:
                self._broken = str(exc)  # a pool that cannot start will not start on the next example
                raise
        self._seq += 1
        seq = self._seq
        for r, case in enumerate(cases):
            self._tasks[r].put((seq, method, case))
        out: dict[int, Any] = {}
        deadline = time.monotonic() + self.timeout
        try:
            while len(out) < len(cases):
                rank, got_seq, _status, payload = self._get(deadline, f"running {method}")
                if got_seq != seq:
                    continue
                out[rank] = payload
        except HarnessError as exc:
            self.close(graceful=False)
            self.restarts += 1
            if exc.kind == "timeout" or self.restarts > self.max_restarts:
                self._broken = str(exc)  # a hung adapter hangs again: do not wait for it once more
            raise
        errors = [v for v in out.values() if isinstance(v, RankError)]
        if errors and len(errors) < len(cases):
            # Some ranks raised, the others finished: the group may be out of step; start afresh.
            self.close()
        if errors and not allow_errors:
            e = errors[0]
            raise HarnessError("error", f"rank {e.rank} raised {e.type_name}: {e.message}\n{e.traceback}")
        return [out[r] for r in range(len(cases))]


def in_torchrun() -> bool:
    """True when launched by ``torchrun`` (or any launcher that sets RANK, WORLD_SIZE and LOCAL_RANK)."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


class TorchrunHarness:
    """In-process harness for a real multi-process launch (``torchrun``); see the module docstring."""

    def __init__(self, spec: str, *, timeout: float = 300.0) -> None:
        import torch
        import torch.distributed as dist

        from .protocol import load_adapter

        self.rank = int(os.environ["RANK"])
        self.world_size = int(os.environ["WORLD_SIZE"])
        self.local_rank = int(os.environ["LOCAL_RANK"])
        self.device = "cpu"
        backend = "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(self.local_rank)
            self.device = f"cuda:{self.local_rank}"
            backend = "nccl"
        if not dist.is_initialized():
            dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout))
        self.adapter = load_adapter(spec).adapter

    def run(self, method: str, cases: list[Any], *, allow_errors: bool = False) -> list[Any]:
        import torch.distributed as dist

        case = cases[self.rank]
        if hasattr(case, "device"):
            case = dataclasses.replace(case, device=self.device)
        _status, payload = _call(self.adapter, method, case, self.rank)
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, payload)
        errors = [v for v in gathered if isinstance(v, RankError)]
        if errors and not allow_errors:
            e = errors[0]
            raise HarnessError("error", f"rank {e.rank} raised {e.type_name}: {e.message}\n{e.traceback}")
        return gathered

    def close(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
