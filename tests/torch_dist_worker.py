"""A pool of gloo worker processes for tests/test_torch_distributed.py (DP-1 .. DP-5).

:class:`GlooPool` starts W processes once (forked from the session's forkserver), each joins a
gloo process group and then serves cases sent through its own queue: ``pool.run(name, payload)``
sends the same case to every rank and returns the per-rank results, in rank order. Every queue
read has a timeout; workers exit on a ``None`` message, or by themselves when the parent process
goes away; :meth:`GlooPool.close` joins them and terminates/kills any that linger.

The cases receive the *global* batch (numpy arrays) and take their own slice (rank r owns rows
``[r B, (r + 1) B)``), so the test process can compare with the reference's ``rank_expectations``.
"""

from __future__ import annotations

import os
import queue
import socket
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from infonce_spec.conformance.harnesses.processes import mp_context, no_main_reimport

__all__ = ["CASES", "GlooPool", "free_port"]

READY_TIMEOUT = 60.0
CASE_TIMEOUT = 60.0


def free_port() -> int:
    """A TCP port that was free a moment ago (bind to port 0 and read what the OS chose)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ----------------------------------------------------------------------------------------- cases


def _local(x: np.ndarray, rank: int, world: int, axis: int = 0) -> torch.Tensor:
    b = x.shape[axis] // world
    return torch.from_numpy(np.take(x, np.arange(rank * b, (rank + 1) * b), axis=axis).copy())


def case_functional(rank: int, world: int, p: dict) -> dict:
    """infonce_loss with gather_across_devices: L_r and W * dL/d(local) (DP-2, DP-3)."""
    from infonce_spec.adapters.torch import infonce_loss

    dtype = getattr(torch, p["dtype"])
    q = _local(p["queries"], rank, world).to(dtype).requires_grad_(True)
    d = _local(p["docs"], rank, world, axis=1).to(dtype).requires_grad_(True)
    loss = infonce_loss(q, d, **p["config"], gather_across_devices=True)
    loss.backward()
    return {
        "loss": float(loss.detach()),
        "grad_queries": q.grad.double().numpy(),
        "grad_docs": d.grad.double().numpy(),
    }


def case_linear(rank: int, world: int, p: dict) -> dict:
    """A bias-free linear encoder under InfoNCELoss or CachedInfoNCELoss; returns L_r and dL_r/dW-ish."""
    from infonce_spec.adapters.torch import CachedInfoNCELoss, InfoNCELoss

    encoder = torch.nn.Linear(p["weight"].shape[1], p["weight"].shape[0], bias=False).double()
    with torch.no_grad():
        encoder.weight.copy_(torch.from_numpy(p["weight"]))
    inputs = [_local(x, rank, world) for x in p["inputs"]]
    if p["mini_batch_size"] is None:
        module = InfoNCELoss(encoder, **p["config"], gather_across_devices=True)
    else:
        module = CachedInfoNCELoss(
            encoder, mini_batch_size=p["mini_batch_size"], **p["config"], gather_across_devices=True
        )
    loss = module(inputs)
    loss.backward()
    return {"loss": float(loss.detach()), "grad_weight": encoder.weight.grad.numpy().copy()}


def case_gather_backward(rank: int, world: int, p: dict) -> dict:
    """The gather's backward is a reduce-scatter SUM, for torch's collective and for the fallback."""
    from infonce_spec.adapters.torch import all_gather_with_grad

    out = {}
    for use_functional in (True, False):
        x = torch.full((2, 3), float(rank + 1), dtype=torch.float64, requires_grad=True)
        y = all_gather_with_grad(x, use_functional=use_functional)
        weight = torch.from_numpy(p["weights"][rank])
        (y * weight).sum().backward()
        out[f"gathered_{use_functional}"] = y.detach().numpy().copy()
        out[f"grad_{use_functional}"] = x.grad.numpy().copy()
    return out


def case_unequal(rank: int, world: int, p: dict) -> dict:
    """Unequal local B, K or D raises SpecViolation('DP-5') on every rank, for both losses."""
    from infonce_spec.adapters.torch import CachedInfoNCELoss, infonce_loss
    from infonce_spec.errors import SpecViolation

    b, k, d = 2, 1, 3
    which = p["which"]
    b, k, d = (b + rank, k, d) if which == "B" else (b, k + rank, d) if which == "K" else (b, k, d + rank)
    clauses = []
    try:
        infonce_loss(torch.randn(b, d), torch.randn(k, b, d), gather_across_devices=True)
    except SpecViolation as exc:
        clauses.append(exc.clause)
    try:
        CachedInfoNCELoss(torch.nn.Linear(3, d), mini_batch_size=1, gather_across_devices=True)(
            [torch.randn(b, 3) for _ in range(k + 1)]
        )
    except SpecViolation as exc:
        clauses.append(exc.clause)
    return {"clauses": clauses}


def case_worked_example(rank: int, world: int, p: dict) -> dict:
    """Every worked-example case at W = 2: L_r and W * dL/d(local) (DP-2, DP-3)."""
    out = []
    for example in p["cases"]:
        config = {**example["config"], "directions": tuple(example["config"]["directions"])}
        q_all = np.asarray(example["inputs"]["queries"], dtype=np.float64)
        d_all = np.asarray(example["inputs"]["docs"], dtype=np.float64)
        result = case_functional(
            rank, world, {"queries": q_all, "docs": d_all, "dtype": "float64", "config": config}
        )
        out.append(result)
    return {"cases": out}


def case_ddp_cached(rank: int, world: int, p: dict) -> dict:
    """CachedInfoNCELoss around a DDP encoder: one all-reduce per step, averaged grads = dL/dW (DP-4)."""
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
    from torch.nn.parallel import DistributedDataParallel

    from infonce_spec.adapters.torch import CachedInfoNCELoss

    encoder = torch.nn.Linear(p["weight"].shape[1], p["weight"].shape[0], bias=False).double()
    with torch.no_grad():
        encoder.weight.copy_(torch.from_numpy(p["weight"]))
    ddp = DistributedDataParallel(encoder)
    calls = []

    def counting_hook(state, bucket):  # DDP rejects annotations other than dist.GradBucket / Future
        calls.append(1)
        return allreduce_hook(state, bucket)

    ddp.register_comm_hook(None, counting_hook)
    module = CachedInfoNCELoss(
        ddp, mini_batch_size=p["mini_batch_size"], **p["config"], gather_across_devices=True
    )
    per_step = []
    for step_inputs in p["steps"]:
        ddp.zero_grad(set_to_none=True)
        before = len(calls)
        module([_local(x, rank, world) for x in step_inputs]).backward()
        per_step.append(
            {"allreduces": len(calls) - before, "grad_weight": encoder.weight.grad.numpy().copy()}
        )
    return {"steps": per_step}


CASES: dict[str, Callable[[int, int, dict], dict]] = {
    "functional": case_functional,
    "linear": case_linear,
    "gather_backward": case_gather_backward,
    "unequal": case_unequal,
    "ddp_cached": case_ddp_cached,
    "worked_example": case_worked_example,
    "pid": lambda rank, world, p: {"pid": os.getpid()},
}


# ------------------------------------------------------------------------------------------ pool


def worker_main(rank: int, world: int, port: int, inbox: Any, outbox: Any) -> None:
    """Join the gloo group, then serve cases until told to stop or orphaned."""
    torch.set_num_threads(1)
    parent = os.getppid()
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=60),
    )
    outbox.put(("ready", rank, os.getpid()))
    try:
        while True:
            try:
                message = inbox.get(timeout=1.0)
            except queue.Empty:
                if os.getppid() != parent:
                    return  # orphaned: the test process is gone
                continue
            if message is None:
                return
            name, payload = message
            try:
                outbox.put(("ok", rank, CASES[name](rank, world, payload)))
            except BaseException:  # report everything to the test process
                outbox.put(("error", rank, traceback.format_exc()))
    finally:
        dist.destroy_process_group()


class GlooPool:
    """W gloo workers serving cases (see the module docstring)."""

    def __init__(self, world: int) -> None:
        # Workers fork from the test session's forkserver (tests/conftest.py), which has imported
        # torch, torch.distributed and torch._dynamo once: a spawned worker pays those imports itself.
        ctx = mp_context("infonce_spec.adapters.bundled:data_parallel")
        port = free_port()
        self.world = world
        self.outbox = ctx.Queue()
        self.inboxes = [ctx.Queue() for _ in range(world)]
        self.processes = [
            ctx.Process(target=worker_main, args=(r, world, port, self.inboxes[r], self.outbox), daemon=True)
            for r in range(world)
        ]
        with no_main_reimport():
            for process in self.processes:
                process.start()
        try:
            ready = [self._get(READY_TIMEOUT) for _ in range(world)]
        except BaseException:
            self.close()
            raise
        self.pids = sorted(pid for _, _, pid in ready)

    def _get(self, timeout: float) -> tuple:
        try:
            return self.outbox.get(timeout=timeout)
        except queue.Empty:
            alive = [p.is_alive() for p in self.processes]
            raise AssertionError(f"gloo workers did not answer within {timeout} s (alive: {alive})") from None

    def run(self, name: str, payload: dict | None = None, timeout: float = CASE_TIMEOUT) -> list[dict]:
        """Run case ``name`` on every rank; results in rank order. Worker errors become AssertionError."""
        for inbox in self.inboxes:
            inbox.put((name, payload or {}))
        replies = sorted((self._get(timeout) for _ in range(self.world)), key=lambda m: m[1])
        errors = [f"rank {rank}:\n{body}" for status, rank, body in replies if status == "error"]
        if errors:
            raise AssertionError(f"case {name!r} failed on a worker:\n" + "\n".join(errors))
        return [body for _, _, body in replies]

    def close(self) -> None:
        """Stop the workers: ask, wait, then terminate and kill what is left."""
        for inbox in self.inboxes:
            inbox.put(None)
        for process in self.processes:
            process.join(timeout=15)
        for process in self.processes:
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
        for q in (self.outbox, *self.inboxes):
            q.close()
            q.join_thread()
