"""The engine's ``threads=`` knob (:mod:`infonce_spec.reference.engine.threads`): row chunks on a
pool of workers with one BLAS thread each. It changes speed only: the numbers equal the normative
reference's to rounding at every thread count, are the same at every run of a call, the default
is numpy's BLAS thread count, the BLAS thread counts are restored afterwards, and a chunk that
fails ends the call with its error instead of leaving the other workers waiting."""

from __future__ import annotations

import multiprocessing
import os
import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from threadpoolctl import threadpool_info, threadpool_limits

from infonce_spec.reference import Config, engine, normative
from infonce_spec.reference.engine import loss as engine_loss
from infonce_spec.reference.engine import padding, workspace
from infonce_spec.reference.engine import products as products_module
from infonce_spec.reference.engine import threads as engine_threads
from tests.oracles import LossCase, check_against, loss_cases, make_inputs, reference_settings

RESULT_FIELDS = ("per_query_loss", "grad_queries", "grad_docs")


def _blas_threads() -> list[int]:
    """The thread counts of numpy's BLAS (the one the engine calls; other libraries loaded later,
    scipy's own OpenBLAS for one, are not the engine's)."""
    blas = [info for info in threadpool_info() if info["user_api"] == "blas"]
    numpy_blas = [info for info in blas if "numpy" in info["filepath"]] or blas
    return [info["num_threads"] for info in numpy_blas]


@pytest.mark.parametrize("threads", [0, -1, 1.5, "2", True])
def test_threads_must_be_a_positive_integer(threads: object) -> None:
    q, docs = make_inputs(4, 2, 3, seed=1)
    with pytest.raises(ValueError, match="threads must be a positive integer or None"):
        engine.loss_and_grad(q, docs, Config(), threads=threads)


@reference_settings(max_examples=25)
@given(
    case=loss_cases(),
    n=st.integers(1, 40),
    k=st.integers(1, 3),
    seed=st.integers(0, 2**16),
    threads=st.integers(2, 5),
    chunk_size=st.integers(1, 9),
    products=st.sampled_from(("held", "streamed")),
)
def test_every_thread_count_gives_the_normative_numbers(
    case: LossCase, n: int, k: int, seed: int, threads: int, chunk_size: int, products: str
) -> None:
    """Many chunks on several workers: the normative reference's numbers to 1e-12 (the oracle
    families' bound), in every configuration."""
    q, docs = make_inputs(n, k, 5, seed=seed, spread=1.0)
    config = Config(**case.kwargs())
    got = engine.loss_and_grad(q, docs, config, chunk_size=chunk_size, products=products, threads=threads)
    replay = (
        f"replay: {case!r}, N={n}, K={k}, seed={seed}, threads={threads}, chunk_size={chunk_size}, {products}"
    )
    check_against(normative.loss_and_grad(q, docs, config), got, case, q, docs, replay, rtol=1e-12)


@pytest.mark.parametrize("similarity", ["cos", "dot"])
def test_a_batch_with_many_chunks_gives_the_normative_numbers(similarity: str) -> None:
    """N = 300 in chunks of 37 rows on 1 to 3 workers, every direction, hardness on: the normative
    numbers to 1e-12 relative, the per-query losses included."""
    q, docs = make_inputs(300, 3, 16, seed=11, spread=0.5)
    case = LossCase(
        ("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc"),
        "joint",
        20.0,
        similarity,
        "in_batch_negatives",
        1.5,
    )
    config = Config(**case.kwargs())
    expected = normative.loss_and_grad(q, docs, config)
    for threads in (1, 2, 3):
        for products in ("held", "streamed"):
            got = engine.loss_and_grad(q, docs, config, chunk_size=37, products=products, threads=threads)
            check_against(expected, got, case, q, docs, f"threads={threads}, {products}", rtol=1e-12)


def test_the_same_numbers_at_every_run() -> None:
    """Each worker takes a fixed run of chunks and sums their column gradients in row order, and the
    workers' sums are added in worker order, whichever worker finishes first: ten runs of a call on
    three workers agree to the last bit."""
    q, docs = make_inputs(64, 3, 6, seed=5, spread=1.0)
    config = Config(directions=("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc"))
    first = engine.loss_and_grad(q, docs, config, chunk_size=3, threads=3)
    for run in range(10):
        again = engine.loss_and_grad(q, docs, config, chunk_size=3, threads=3)
        assert again.loss == first.loss and again.grad_scale == first.grad_scale, f"run {run}"
        for field in RESULT_FIELDS:
            np.testing.assert_array_equal(getattr(again, field), getattr(first, field), err_msg=f"run {run}")


@pytest.mark.parametrize("blas_threads", [1, 3])
def test_the_default_is_numpy_blas_thread_count(monkeypatch: pytest.MonkeyPatch, blas_threads: int) -> None:
    """``threads=None`` runs as many workers as numpy's BLAS has threads (1: no pool at all)."""
    pools: list[int] = []
    real_pool = engine_threads._pool
    monkeypatch.setattr(engine_threads, "_pool", lambda workers: pools.append(workers) or real_pool(workers))
    q, docs = make_inputs(12, 2, 4, seed=3)
    with threadpool_limits(blas_threads, user_api="blas"):
        assert engine_threads.resolve_threads(None) == blas_threads
        engine.loss_and_grad(q, docs, Config(), chunk_size=2)
    assert set(pools) == (set() if blas_threads == 1 else {blas_threads})


def test_workers_call_blas_single_threaded_and_the_counts_are_restored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Inside the chunks BLAS has one thread; outside them ``threads``; afterwards what it had."""
    seen: list[tuple[str, list[int]]] = []
    real_partition = engine_loss.partition

    def partition(*args, **kwargs):
        seen.append((threading.current_thread().name, _blas_threads()))
        return real_partition(*args, **kwargs)

    monkeypatch.setattr(engine_loss, "partition", partition)
    before = _blas_threads()
    q, docs = make_inputs(20, 2, 4, seed=4)
    engine.loss_and_grad(q, docs, Config(), chunk_size=2, threads=3)
    assert len(seen) == len(engine.chunk_bounds(Config(), 20, 2, chunk_size=2, threads=3)) == 12
    assert all(counts == [1] * len(before) for _, counts in seen), seen
    assert all(name.startswith("infonce-engine") for name, _ in seen), seen
    seen.clear()
    engine.loss_and_grad(q[:1], docs[:, :1], Config(), threads=3)  # one chunk: in the calling thread
    assert seen == [(threading.current_thread().name, [3] * len(before))]
    assert _blas_threads() == before


@pytest.mark.parametrize("failing_start", [0, 15])
def test_a_failing_chunk_ends_the_call_with_its_error(
    monkeypatch: pytest.MonkeyPatch, failing_start: int
) -> None:
    """A chunk fails (the first, or one in the middle); the other workers go on, and the call raises
    the error promptly (never hangs)."""
    real_row_blocks = engine_loss.row_blocks

    def row_blocks(xp, products, start, stop, *args):
        if start == failing_start:
            raise RuntimeError(f"chunk at row {start} failed")
        return real_row_blocks(xp, products, start, stop, *args)

    monkeypatch.setattr(engine_loss, "row_blocks", row_blocks)
    q, docs = make_inputs(30, 2, 4, seed=6)
    outcome: list[BaseException | None] = []

    def call() -> None:
        try:
            engine.loss_and_grad(q, docs, Config(), chunk_size=3, threads=3)
            outcome.append(None)
        except BaseException as error:
            outcome.append(error)

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    caller.join(timeout=60)
    assert not caller.is_alive(), "the call hangs after a chunk failed"
    assert len(outcome) == 1 and isinstance(outcome[0], RuntimeError), outcome
    assert str(outcome[0]) == f"chunk at row {failing_start} failed"


def _call_in_forked_child(q: np.ndarray, docs: np.ndarray, expected_loss: float) -> None:
    result = engine.loss_and_grad(q, docs, Config(), chunk_size=3, threads=2)
    os._exit(0 if result.loss == expected_loss else 3)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_gets_its_own_workers() -> None:
    """The pool's threads stay in the parent at a fork: the child starts its own instead of
    waiting forever for threads it does not have."""
    q, docs = make_inputs(12, 2, 4, seed=8)
    expected = engine.loss_and_grad(q, docs, Config(), chunk_size=3, threads=2).loss  # the pool exists
    child = multiprocessing.get_context("fork").Process(
        target=_call_in_forked_child, args=(q, docs, expected)
    )
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        child.join()
        pytest.fail("the engine hangs in a forked child")
    assert child.exitcode == 0


@pytest.mark.parametrize(("n", "parts"), [(1, 4), (2, 4), (5, 4), (10, 4), (37, 6), (1024, 4)])
def test_the_symmetric_products_parts_cover_the_upper_triangle_once(n: int, parts: int) -> None:
    """The held symmetric products are formed in parts of equal work (one diagonal block each and a
    share of the blocks right of the diagonal): every entry on or above the diagonal belongs to
    exactly one part, and the parts' off-diagonal shares differ by at most one column of a block."""
    plan = products_module._symmetric_plan(n, parts)
    count = np.zeros((n, n), dtype=int)
    shares = []
    for (s, e), share in plan:
        count[s:e, s:e] += np.triu(np.ones((e - s, e - s), dtype=int))
        shares.append(sum((e2 - s2) * (c1 - c0) for s2, e2, c0, c1 in share))
        for s2, e2, c0, c1 in share:
            count[s2:e2, c0:c1] += 1
    np.testing.assert_array_equal(count, np.triu(np.ones((n, n), dtype=int)))
    rows = max(e - s for (s, e), _ in plan)
    assert max(shares) - min(shares) <= 2 * rows, shares


@pytest.mark.parametrize("similarity", ["cos", "dot"])
@pytest.mark.parametrize("products", ["held", "streamed"])
def test_the_inputs_are_left_as_they_were(similarity: str, products: str) -> None:
    """The engine writes its gradients over arrays of its own (for cos, over the unit rows it made),
    never over the caller's inputs, and returns arrays that share no memory with them."""
    q, docs = make_inputs(40, 3, 6, seed=9, spread=1.0)
    q_before, docs_before = q.copy(), docs.copy()
    case = LossCase(("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc"), similarity=similarity)
    config = Config(**case.kwargs())
    got = engine.loss_and_grad(q, docs, config, chunk_size=7, products=products, threads=2)
    np.testing.assert_array_equal(q, q_before)
    np.testing.assert_array_equal(docs, docs_before)
    for grad in (got.grad_queries, got.grad_docs):
        assert not np.shares_memory(grad, q) and not np.shares_memory(grad, docs)
    check_against(normative.loss_and_grad(q, docs, config), got, case, q, docs, f"{products}", rtol=1e-12)


@pytest.mark.parametrize("width", [1, 5, 8, 9, 16, 64, 1000, 1024, 7168])
def test_padded_rows_start_in_different_cache_sets(width: int) -> None:
    """The matrices the engine reads transposed have rows an odd number of 64-byte lines apart
    (never a power of two of bytes beyond one line), with room for every column; their rows' flat
    views reach entry (r, c) at r * stride + c."""
    stride = padding.stride(width)
    assert stride >= width and stride % padding.LINE == 0 and (stride // padding.LINE) % 2 == 1
    assert stride < width + 2 * padding.LINE
    matrix = padding.padded(workspace.Workspace(np), 3, width, np.zeros(1))
    matrix.matrix[...] = np.arange(3 * width, dtype=np.float64).reshape(3, width)
    flat = matrix.flat_rows(1, 3)
    assert flat[stride + width - 1] == matrix.matrix[2, width - 1]
    assert matrix.base.flags.c_contiguous and matrix.base.shape == (3, stride)
