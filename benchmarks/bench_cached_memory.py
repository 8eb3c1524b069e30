"""Peak memory of the loss stage: cached (chunked, CACHE-5) vs uncached, as the batch grows.

What is measured. Each (variant, B) runs in a fresh Python process. The process builds the
embeddings (queries (B, D), docs (K, B, D), float32, requires_grad), runs a small warm-up of the
same variant (so thread pools and kernels are loaded), then resets the kernel's peak-RSS counter
(``echo 5 > /proc/self/clear_refs``, Linux >= 4.0) and runs the loss stage once:

* ``uncached``: ``infonce_loss(q, docs).backward()`` -- (B x candidates) logits, autograd graph;
* ``cached``: ``chunked_loss_and_grads(q, docs, config, mini_batch_size)`` -- the loss stage of
  ``CachedInfoNCELoss``: loss and embedding gradients, ``mini_batch_size`` rows at a time.

The figure is ``VmHWM - VmRSS`` at the reset: the peak resident memory the loss stage added, in
MiB (all allocations, torch's and the allocator's overhead included; torch's CPU allocator does
not cache, and glibc's mmap threshold is pinned with ``MALLOC_MMAP_THRESHOLD_`` so large blocks
go back to the OS when freed). Ratios are against the smallest B of the same run. Expect the
uncached column to grow ~4x per doubling of B (quadratic) and the cached one ~2x (linear).

With ``--device cuda`` the variants run in this process on the GPU and the figure is exact:
``torch.cuda.max_memory_allocated()`` after ``reset_peak_memory_stats()``, minus the memory
allocated before the stage (the caching allocator's bytes handed to tensors, not its reserve).

Run: ``python benchmarks/bench_cached_memory.py [--sizes 1024 2048 4096 8192] [--dim 128]
[--mini-batch-size 64] [--threads 1] [--device cpu|cuda]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time

_STATUS = "/proc/self/status"


def _status_kib(field: str) -> int:
    with open(_STATUS) as f:
        match = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"{field} not found in {_STATUS}")
    return int(match.group(1))


def child(variant: str, b: int, k: int, d: int, m: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)

    def stage(q: torch.Tensor, docs: torch.Tensor) -> None:
        _stage(variant, q, docs, m)

    gen = torch.Generator().manual_seed(0)
    warm_q = torch.randn(2 * m, d, generator=gen).requires_grad_()
    stage(warm_q, torch.randn(k, 2 * m, d, generator=gen).requires_grad_())
    q = torch.randn(b, d, generator=gen).requires_grad_()
    docs = torch.randn(k, b, d, generator=gen).requires_grad_()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _status_kib("VmRSS")
    start = time.perf_counter()
    stage(q, docs)
    seconds = time.perf_counter() - start
    peak = _status_kib("VmHWM")
    return {"peak_mib": (peak - base) / 1024.0, "seconds": seconds}


def _stage(variant: str, q: object, docs: object, m: int) -> None:
    from infonce_spec.adapters.torch import LossConfig, chunked_loss_and_grads, infonce_loss

    if variant == "uncached":
        infonce_loss(q, docs).backward()  # type: ignore[arg-type]
    else:
        chunked_loss_and_grads(q, docs, LossConfig(), m)  # type: ignore[arg-type]


def measure_cuda(variant: str, b: int, args: argparse.Namespace) -> dict:
    import torch

    gen = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(b, args.dim, device="cuda", generator=gen).requires_grad_()
    docs = torch.randn(args.k, b, args.dim, device="cuda", generator=gen).requires_grad_()
    _stage(variant, q[: 2 * args.mini_batch_size], docs[:, : 2 * args.mini_batch_size], args.mini_batch_size)
    q.grad = docs.grad = None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    start = time.perf_counter()
    _stage(variant, q, docs, args.mini_batch_size)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"peak_mib": (torch.cuda.max_memory_allocated() - base) / 2**20, "seconds": seconds}


def measure(variant: str, b: int, args: argparse.Namespace) -> dict:
    if args.device == "cuda":
        return measure_cuda(variant, b, args)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    cmd = [
        sys.executable,
        __file__,
        "--child",
        variant,
        str(b),
        str(args.k),
        str(args.dim),
        str(args.mini_batch_size),
    ]
    cmd += ["--threads", str(args.threads)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096, 8192])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=1, help="document columns (1 = positives only)")
    parser.add_argument("--mini-batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--child", nargs=5, metavar=("VARIANT", "B", "K", "D", "M"))
    args = parser.parse_args()
    if args.child:
        variant, b, k, d, m = args.child
        print(json.dumps(child(variant, int(b), int(k), int(d), int(m), args.threads)))
        return

    import torch

    if args.device == "cuda":
        where = f"{torch.cuda.get_device_name()}, peak = max_memory_allocated above the pre-stage allocation"
    else:
        where = (
            f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), {args.threads} thread(s), "
            "peak = VmHWM above the pre-stage VmRSS"
        )
    print(
        f"# loss-stage peak memory (MiB), float32, D={args.dim}, K={args.k}, mini_batch_size={args.mini_batch_size}, "
        f"directions=('query_to_doc',), torch {torch.__version__}, {where}"
    )
    rows = [(b, measure("uncached", b, args), measure("cached", b, args)) for b in args.sizes]
    b0, u0, c0 = rows[0]
    header = (
        f"{'B':>6} | {'uncached MiB':>12} {'x base':>7} {'s':>6} | {'cached MiB':>10} {'x base':>7} {'s':>6}"
    )
    print(header)
    print("-" * len(header))
    for b, u, c in rows:
        print(
            f"{b:>6} | {u['peak_mib']:>12.1f} {u['peak_mib'] / u0['peak_mib']:>7.2f} {u['seconds']:>6.2f} | "
            f"{c['peak_mib']:>10.1f} {c['peak_mib'] / c0['peak_mib']:>7.2f} {c['seconds']:>6.2f}"
        )
    print(
        f"# B ratio at the last row: {rows[-1][0] / b0:.0f}x (linear growth gives that ratio, quadratic its square)"
    )


if __name__ == "__main__":
    main()
