"""Per-call overhead of a jitted and a non-jitted JAX adapter (examples/jax_adapter.py), against the
exact reference on the same cases as the baseline measured in the same run.

Hypothesis draws a new shape for almost every example, and a jitted loss compiles once per shape and
configuration; a non-jitted one dispatches op by op (each op compiled once per shape, then cached).
So three figures per adapter, each the median milliseconds of one ``embeddings`` call over the same
cases, and its ratio to the reference's ``loss_and_grad`` on that case:

* ``new shape`` -- the first call of each of ``--cases`` distinct shapes (what a conformance run pays);
* ``same shape`` -- a second call on each shape (a training loop's steady state);
* ``worker`` -- a call through the suite's isolated worker (spawned: jax is loaded here) on a seen
  shape: the pipe and pickling on top.

Then one conformance property (``--property``, quick profile) end to end per adapter. Run it in the
JAX environment (``./run setup-frameworks jax``)::

    .venv-jax/bin/python benchmarks/bench_frameworks.py

Wall-clock; the machine and its load are printed first. Record the figures in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_fail_fast import machine  # the machine line every benchmark prints

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def cases(count: int) -> list[Any]:
    """``count`` embedding cases of distinct shapes (N 1..8, D 1..8, K 1..3), all four directions,
    joint, cos (float32-representable values, as the suite sends)."""
    from infonce_spec.conformance import EmbeddingCase
    from infonce_spec.reference import Config

    rng = np.random.default_rng(0)
    config = Config(directions=("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc"))
    shapes = [(n, d, k) for k in (1, 2, 3) for n in range(1, 9) for d in range(1, 9)]
    picked = [shapes[i] for i in rng.permutation(len(shapes))[:count]]
    out = []
    for n, d, k in picked:
        q = rng.standard_normal((n, d)).astype(np.float32).astype(np.float64)
        docs = rng.standard_normal((k, n, d)).astype(np.float32).astype(np.float64)
        out.append(EmbeddingCase(q, docs, config))
    return out


def timed(call: Any, case: Any) -> float:
    start = time.perf_counter()
    call(case)
    return (time.perf_counter() - start) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=30, help="distinct shapes (default 30)")
    parser.add_argument("--property", default="reference/query_to_doc", help="property run end to end")
    args = parser.parse_args()
    sys.path.insert(0, str(EXAMPLES))
    import jax_adapter

    from infonce_spec.conformance.harnesses.processes import end_of_run
    from infonce_spec.conformance.isolation import isolated
    from infonce_spec.conformance.protocol import load_adapter
    from infonce_spec.conformance.runner import run_adapter
    from infonce_spec.reference import loss_and_grad

    print(machine())
    print(f"jax {jax_adapter.jax.__version__}, {args.cases} shapes, medians in ms per call\n")
    batch = cases(args.cases)
    reference = statistics.median(
        timed(lambda c: loss_and_grad(c.queries, c.docs, c.config), c) for c in batch
    )
    print(f"{'baseline: reference loss_and_grad':38s} {reference:9.2f} ms   1.0 x")
    for name in ("adapter", "eager"):
        loaded = load_adapter(f"{EXAMPLES / 'jax_adapter.py'}:{name}")
        call = loaded.adapter.embeddings
        first = statistics.median(timed(call, c) for c in batch)
        again = statistics.median(timed(call, c) for c in batch)
        worker = isolated(loaded)
        worker.embeddings(batch[0])  # start it (a spawn: an interpreter and jax's import)
        for c in batch:
            worker.embeddings(c)  # every shape seen once in the worker
        through = statistics.median(timed(worker.embeddings, c) for c in batch)
        end_of_run()
        label = "jitted" if name == "adapter" else "not jitted"
        for what, ms in (("new shape", first), ("same shape", again), ("worker, same shape", through)):
            print(f"{label + ', ' + what:38s} {ms:9.2f} ms {ms / reference:6.1f} x")
        start = time.perf_counter()
        report = run_adapter(
            loaded, profile="quick", select=lambda p: p.name == args.property, reproducer_dir=None
        )
        (result,) = report.results
        seconds = time.perf_counter() - start
        print(f"{label + ', ' + args.property + ' (quick)':38s} {seconds:9.2f} s  {result.status}\n")


if __name__ == "__main__":
    main()
