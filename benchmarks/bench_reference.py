"""Benchmark of the reference's engine (``infonce_spec.reference.engine``), which
:func:`infonce_spec.reference.loss_and_grad` runs for large batches.

One run measures, on the same inputs and in fresh subprocesses (so each peak RSS is its own):

* ``engine``: :func:`infonce_spec.reference.engine.loss_and_grad` (float64, chunked rows; at this
  size the N x N square products are held whole, each similarity formed and back-propagated once);
  ``loss_and_grad`` picks it at this size;
* ``engine-streamed``: the same with ``products="streamed"`` (every product per chunk, as for large N);
* ``normative``: :func:`infonce_spec.reference.normative.loss_and_grad`, the plain chapter-by-chapter
  reference on full (N, width) matrices (for information: it is not meant to be fast);
* ``floor``: the matmul floor — the same similarity products and their backward products
  (``S = A B^T``, ``G B``, ``G^T A`` per direction block) in numpy float64, nothing else;
* ``st-autograd``: torch float64 autograd of sentence-transformers' MultipleNegativesRankingLoss
  (``compute_loss_from_embeddings`` + ``backward``) — skipped when it is not installed.

and prints the times, the ratios against the floor and the peak RSS of each. Targets (B=1024,
K=8, D=256, all four directions, joint): engine <= 1.5x floor, >= 2.5x faster than st-autograd.
``--large`` adds N=16384, K=8, D=256 for the engine alone (target: peak RSS <= 4 GB; the
direct approach would hold N x K*N float64 logits, 17 GB per matrix).

    python benchmarks/bench_reference.py [--repeats 5] [--threads 1] [--large]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

DIRECTIONS = ("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc")

_CHILD = r"""
import json, resource, sys, time, warnings
import numpy as np
warnings.filterwarnings("ignore")
kind, n, k, d, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rng = np.random.default_rng(0)
q = rng.normal(size=(n, d)); docs = rng.normal(size=(k, n, d))
DIRS = ("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc")
if kind in ("engine", "engine-streamed", "normative"):
    from infonce_spec.reference import Config, engine, normative
    cfg = Config(directions=DIRS, partition_mode="joint", scale=20.0, similarity="cos")
    products = "streamed" if kind == "engine-streamed" else "auto"
    if kind == "normative":
        run = lambda: normative.loss_and_grad(q, docs, cfg)
    else:
        run = lambda: engine.loss_and_grad(q, docs, cfg, products=products)
elif kind == "floor":
    def run():
        uq = q / np.linalg.norm(q, axis=1, keepdims=True)
        ud = docs.reshape(k * n, d)
        ud = ud / np.linalg.norm(ud, axis=1, keepdims=True)
        gq = np.zeros_like(uq); gd = np.zeros_like(ud)
        step = max(1, (1 << 22) // (2 * k * n + 2 * n))  # the engine's CHUNK_ELEMENTS
        for s in range(0, n, step):
            e = min(s + step, n)
            for a, b, ga, gb in ((uq, ud, gq, gd), (uq, uq, gq, gq), (ud, uq, gd, gq), (ud, ud, gd, gd)):
                sim = a[s:e] @ b.T
                ga[s:e] += sim @ b
                gb += sim.T @ a[s:e]
        return gq, gd
else:
    import torch
    from sentence_transformers.sentence_transformer.losses.multiple_negatives_ranking import MultipleNegativesRankingLoss
    loss_fn = MultipleNegativesRankingLoss(torch.nn.Identity(), scale=20.0, directions=DIRS, partition_mode="joint")
    tq = torch.tensor(q); td = torch.tensor(docs)
    def run():
        a = tq.clone().requires_grad_(True); b = td.clone().requires_grad_(True)
        loss = loss_fn.compute_loss_from_embeddings([a, *b.unbind(0)], None)
        loss.backward()
        return a.grad, b.grad
run()
times = []
for _ in range(repeats):
    t = time.perf_counter(); run(); times.append(time.perf_counter() - t)
print(json.dumps({"kind": kind, "best_s": min(times), "median_s": sorted(times)[len(times) // 2],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(kind: str, n: int, k: int, d: int, repeats: int, threads: int) -> dict | None:
    # The same BLAS/OpenMP thread count for every variant (numpy's OpenBLAS and torch alike);
    # one thread by default, which keeps the ratios stable on a shared 2-core machine.
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, kind, str(n), str(k), str(d), str(repeats)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        print(f"  {kind}: failed ({tail[0]})", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads for every variant")
    parser.add_argument("--large", action="store_true", help="also run N=16384 (minutes; peak RSS check)")
    args = parser.parse_args()
    n, k, d = args.batch, 8, 256
    print(
        f"reference engine, N={n} K={k} D={d}, directions=all four, joint, cos; best of {args.repeats}, "
        f"{args.threads} thread(s)"
    )
    rows = {
        kind: measure(kind, n, k, d, args.repeats, args.threads)
        for kind in ("floor", "engine", "engine-streamed", "normative", "st-autograd")
    }
    floor = rows["floor"]
    print(f"{'variant':<15} {'best s':>9} {'median s':>9} {'vs floor':>9} {'peak RSS MB':>12}")
    for kind, row in rows.items():
        if row is None:
            continue
        ratio = row["best_s"] / floor["best_s"] if floor else float("nan")
        print(
            f"{kind:<15} {row['best_s']:9.3f} {row['median_s']:9.3f} {ratio:9.2f} {row['peak_rss_mb']:12.0f}"
        )
    ref, st = rows["engine"], rows["st-autograd"]
    if ref and floor:
        print(f"engine / floor = {ref['best_s'] / floor['best_s']:.2f} (target <= 1.5)")
    if ref and st:
        print(f"st-autograd / engine = {st['best_s'] / ref['best_s']:.2f} (target >= 2.5)")
    streamed = rows["engine-streamed"]
    if streamed and st:
        print(f"st-autograd / engine-streamed = {st['best_s'] / streamed['best_s']:.2f} (for information)")
    if args.large:
        big = measure("engine", 16384, k, d, 1, args.threads)
        if big:
            print(
                f"N=16384 K={k} D={d}: engine {big['best_s']:.1f} s, peak RSS {big['peak_rss_mb']:.0f} MB "
                f"(target <= 4096 MB; one dense N x K*N float64 matrix would be {16384 * 16384 * k * 8 / 2**30:.0f} GiB)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
