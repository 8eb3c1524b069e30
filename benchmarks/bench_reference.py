"""Benchmark of the reference's engine (``infonce_spec.reference.engine``), which
:func:`infonce_spec.reference.loss_and_grad` runs for large batches, against the machine's limit.

B = N = 1024, K = 8, D = 256, all four directions, joint, cos. Every variant runs in a fresh
subprocess (so each peak RSS is its own), at 1 thread, 2 threads and the machine's core count,
in ``--rounds`` interleaved rounds (every variant at every thread count once per round); each
figure is the median over the rounds of the median of ``--repeats`` timed calls:

* ``limit``: the time the engine's multiply-adds take at the machine's float64 matrix-multiply
  rate, measured in the same run at the engine's own shapes: one chunk's hard-negative products
  (the bulk of the work) -- ``S = A B^T``, ``G B`` and ``A^T G`` with ``A`` the chunk's stacked
  row vectors (2 r x D, r the rows of a chunk at that thread count), ``B`` the (K-1) N hard
  negatives, ``G`` (2 r x (K-1) N) -- run (a) by BLAS with the thread count, one chunk after
  another, and (b) on as many Python threads as the thread count, one chunk each, with
  single-threaded BLAS (how the engine runs them). The rate is the better of the two; the engine's
  count is ``6 K N^2 D`` multiply-adds here (48 N^2 D at K = 8: ``3 (K-1) N^2 D`` per row side
  for the hard negatives, ``6 N^2 D`` for the held N x N products, each formed and sent back once);
* ``engine``: :func:`infonce_spec.reference.engine.loss_and_grad`, ``threads`` left to its default
  (numpy's BLAS thread count, pinned to the thread count through ``OPENBLAS_NUM_THREADS``). The
  timed calls follow one untimed call, as for every variant; they find that call's working arrays
  in the engine's workspace (``engine.workspace``), as repeated calls do. The first call of the
  process (thread pool, BLAS buffers and working arrays all new) is printed apart;
* ``floor``: the matmul floor -- the four direction blocks' similarity products and their backward
  products (``S = A B^T``, ``G B``, ``G^T A`` per block, 54 N^2 D at K = 8) in numpy float64 in the
  engine's row chunks, one after another, nothing else;
* ``st-autograd``: torch float64 autograd of sentence-transformers' MultipleNegativesRankingLoss
  (``compute_loss_from_embeddings`` + ``backward``), torch's threads set to the thread count --
  skipped when it is not installed.

Targets: engine <= 1.25x the limit, >= 2.5x faster than st-autograd, at 1 and 2 threads.
``--extra`` adds ``engine-streamed`` (``products="streamed"``, as for large N) and ``normative``
(the plain normative reference, not meant to be fast). ``--large`` adds N = 16384, K = 8, D = 256
for the engine alone at the core count (target: peak RSS <= 4 GB; one dense N x K*N float64
logit matrix would be 16 GiB). ``OPENBLAS_CORETYPE`` and the like are passed through as set.

    python benchmarks/bench_reference.py [--rounds 3] [--repeats 3] [--threads 1,2] [--extra] [--large]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

_CHILD = r"""
import json, resource, statistics, sys, time, warnings
import numpy as np
warnings.filterwarnings("ignore")
kind, n, k, d, repeats, threads = sys.argv[1], *map(int, sys.argv[2:7])
rng = np.random.default_rng(0)
q = rng.normal(size=(n, d)); docs = rng.normal(size=(k, n, d))
DIRS = ("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc")
extra = {}
if kind in ("engine", "engine-streamed", "normative", "limit", "floor"):
    from infonce_spec.reference import Config, engine, normative
    cfg = Config(directions=DIRS, partition_mode="joint", scale=20.0, similarity="cos")
    bounds = engine.chunk_bounds(cfg, n, k, threads=threads)
if kind == "normative":
    run = lambda: normative.loss_and_grad(q, docs, cfg)
elif kind in ("engine", "engine-streamed"):
    products = "streamed" if kind == "engine-streamed" else "auto"
    run = lambda: engine.loss_and_grad(q, docs, cfg, products=products)
elif kind == "limit":
    from concurrent.futures import ThreadPoolExecutor
    from threadpoolctl import threadpool_limits
    r = bounds[0][1] - bounds[0][0]
    b = rng.normal(size=((k - 1) * n, d))
    chunks = [(rng.normal(size=(2 * r, d)), rng.normal(size=(2 * r, (k - 1) * n))) for _ in range(threads)]
    def products(chunk):
        a, g = chunk
        a @ b.T; g @ b; a.T @ g
    flops = threads * 3 * 2 * (2 * r) * d * (k - 1) * n
    pool = ThreadPoolExecutor(threads)
    def blas():
        for chunk in chunks:
            products(chunk)
    def workers():
        with threadpool_limits(1, "blas"):
            list(pool.map(products, chunks))
    rates = {}
    for name, f in (("blas", blas), ("workers", workers)):
        f()
        times = []
        for _ in range(max(3, repeats)):
            t = time.perf_counter(); f(); times.append(time.perf_counter() - t)
        rates[name] = flops / statistics.median(times)
    rate = max(rates.values())
    macs = 6 * k * n * n * d  # the engine's count at this configuration (held square products)
    extra = {"chunk_rows": r, "gflops_blas": rates["blas"] / 1e9, "gflops_workers": rates["workers"] / 1e9}
    print(json.dumps({"kind": kind, "median_s": 2 * macs / rate, "best_s": 2 * macs / rate,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **extra}))
    sys.exit(0)
elif kind == "floor":
    def run():
        uq = q / np.linalg.norm(q, axis=1, keepdims=True)
        ud = docs.reshape(k * n, d)
        ud = ud / np.linalg.norm(ud, axis=1, keepdims=True)
        gq = np.zeros_like(uq); gd = np.zeros_like(ud)
        for s, e in engine.chunk_bounds(cfg, n, k, threads=1):
            for a, b, ga, gb in ((uq, ud, gq, gd), (uq, uq, gq, gq), (ud, uq, gd, gq), (ud, ud, gd, gd)):
                sim = a[s:e] @ b.T
                ga[s:e] += sim @ b
                gb += sim.T @ a[s:e]
        return gq, gd
else:
    import torch
    from sentence_transformers.sentence_transformer.losses.multiple_negatives_ranking import MultipleNegativesRankingLoss
    torch.set_num_threads(threads)
    loss_fn = MultipleNegativesRankingLoss(torch.nn.Identity(), scale=20.0, directions=DIRS, partition_mode="joint")
    tq = torch.tensor(q); td = torch.tensor(docs)
    def run():
        a = tq.clone().requires_grad_(True); b = td.clone().requires_grad_(True)
        loss = loss_fn.compute_loss_from_embeddings([a, *b.unbind(0)], None)
        loss.backward()
        return a.grad, b.grad
t = time.perf_counter(); run(); first = time.perf_counter() - t
times = []
for _ in range(repeats):
    t = time.perf_counter(); run(); times.append(time.perf_counter() - t)
print(json.dumps({"kind": kind, "best_s": min(times), "median_s": statistics.median(times), "first_s": first,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(kind: str, n: int, k: int, d: int, repeats: int, threads: int) -> dict | None:
    """One fresh subprocess; numpy's BLAS, OpenMP and torch all use ``threads`` threads."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, kind, str(n), str(k), str(d), str(repeats), str(threads)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        print(f"  {kind} ({threads} threads): failed ({tail[0]})", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _load() -> str:
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[0]
    except OSError:
        return "?"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians are reported)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per subprocess")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument(
        "--threads", default=None, help="comma-separated thread counts (default: 1, 2 and the core count)"
    )
    parser.add_argument("--extra", action="store_true", help="also engine-streamed and normative")
    parser.add_argument("--large", action="store_true", help="also N=16384 (minutes; peak RSS check)")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    counts = sorted({int(t) for t in args.threads.split(",")} if args.threads else {1, 2, cores})
    n, k, d = args.batch, 8, 256
    kinds = ["limit", "engine", "floor", "st-autograd"] + (
        ["engine-streamed", "normative"] if args.extra else []
    )
    pinned = {v: os.environ[v] for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if v in os.environ}
    print(
        f"reference engine, N={n} K={k} D={d}, all four directions, joint, cos; {cores} cores; "
        f"threads {counts}; {args.rounds} rounds x {args.repeats} calls (medians); "
        f"{pinned or 'no OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE'}"
    )
    runs: dict[tuple[str, int], list[dict]] = {}
    for round_ in range(args.rounds):
        print(f"round {round_ + 1}: load {_load()}", end="", flush=True)
        for threads in counts:
            rows = {kind: measure(kind, n, k, d, args.repeats, threads) for kind in kinds}
            for kind, row in rows.items():
                if row is not None:
                    runs.setdefault((kind, threads), []).append(row)
            limit, eng, st = (
                rows[kind]["median_s"] if rows[kind] else None for kind in ("limit", "engine", "st-autograd")
            )
            print(
                f"; {threads} thread(s): engine/limit {eng / limit if eng and limit else float('nan'):.2f}, "
                f"st/engine {st / eng if st and eng else float('nan'):.2f}",
                end="",
                flush=True,
            )
        print(f" (load {_load()})")
    print(f"load at the end: {_load()}")

    def median(kind: str, threads: int, field: str = "median_s") -> float | None:
        rows = runs.get((kind, threads))
        return statistics.median(r[field] for r in rows) if rows else None

    print(
        f"{'threads':>7} {'limit s':>8} {'engine s':>9} {'floor s':>8} {'st s':>7} "
        f"{'engine/limit':>12} {'engine/floor':>12} {'st/engine':>9}  limit GFLOP/s (BLAS, workers)  "
        f"peak RSS MB (engine, st)  engine first call s"
    )
    for threads in counts:
        limit, eng = median("limit", threads), median("engine", threads)
        floor, st = median("floor", threads), median("st-autograd", threads)

        def ratio(a: float | None, b: float | None) -> str:
            return f"{a / b:.2f}" if a and b else "-"

        def secs(x: float | None) -> str:
            return f"{x:.3f}" if x else "-"

        rates = (
            f"{median('limit', threads, 'gflops_blas'):.1f}, {median('limit', threads, 'gflops_workers'):.1f}"
            if limit
            else "-"
        )
        rss = f"{median('engine', threads, 'peak_rss_mb') or 0:.0f}, {median('st-autograd', threads, 'peak_rss_mb') or 0:.0f}"
        print(
            f"{threads:>7} {secs(limit):>8} {secs(eng):>9} {secs(floor):>8} {secs(st):>7} "
            f"{ratio(eng, limit):>12} {ratio(eng, floor):>12} {ratio(st, eng):>9}  {rates:>29}  {rss:>24}  "
            f"{secs(median('engine', threads, 'first_s'))}"
        )
        for kind in kinds[4:]:
            print(f"{'':>7} {kind}: {secs(median(kind, threads))} s")
    for threads in counts:
        limit, eng, st = median("limit", threads), median("engine", threads), median("st-autograd", threads)
        if threads in (1, 2) and limit and eng:
            print(f"{threads} thread(s): engine / limit = {eng / limit:.2f} (target <= 1.25)")
        if threads in (1, 2) and eng and st:
            print(f"{threads} thread(s): st-autograd / engine = {st / eng:.2f} (target >= 2.5)")
    if args.large:
        big = measure("engine", 16384, k, d, 1, cores)
        if big:
            print(
                f"N=16384 K={k} D={d}, {cores} threads: engine {big['best_s']:.1f} s, peak RSS "
                f"{big['peak_rss_mb']:.0f} MB (target <= 4096 MB; one dense N x K*N float64 matrix would be "
                f"{16384 * 16384 * k * 8 / 2**30:.0f} GiB)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
