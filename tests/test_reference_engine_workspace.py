"""The engine's workspace (:mod:`infonce_spec.reference.engine.workspace`): working arrays kept from
one call to the next change memory use only. What a call finds in them never reaches its numbers,
the arrays it returns are never kept, the memory kept stays within its bound and goes with
``release()``, two calls at once share no array, and a forked child starts with nothing kept."""

from __future__ import annotations

import multiprocessing
import threading

import numpy as np
import pytest

from infonce_spec.reference import Config, engine, normative
from infonce_spec.reference.engine import workspace
from tests.oracles import LossCase, check_against, make_inputs

RESULT_FIELDS = ("per_query_loss", "grad_queries", "grad_docs")
ALL_FOUR = ("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc")


@pytest.fixture(autouse=True)
def keep_small_arrays(monkeypatch: pytest.MonkeyPatch) -> None:
    """The batches here are small: keep their arrays too (the engine keeps 1 MiB and more)."""
    monkeypatch.setattr(workspace, "SMALLEST_KEPT", 0)


def _poison_what_is_kept() -> int:
    """Fill every kept array with NaN (what a call must overwrite or clear before it reads);
    the number of arrays poisoned."""
    with workspace._lock:
        for array in workspace._kept:
            array[...] = np.nan
        return len(workspace._kept)


@pytest.mark.parametrize("similarity", ["cos", "dot"])
@pytest.mark.parametrize("products", ["held", "streamed"])
@pytest.mark.parametrize("threads", [1, 3])
def test_what_a_call_finds_in_its_arrays_never_reaches_its_numbers(
    similarity: str, products: str, threads: int
) -> None:
    """A call that reuses arrays full of NaN gives the very bits of a call on new arrays, and the
    normative numbers (every direction, hardness on, many chunks)."""
    q, docs = make_inputs(60, 3, 8, seed=21, spread=1.0)
    case = LossCase(ALL_FOUR, "joint", 20.0, similarity, "in_batch_negatives", 1.5)
    config = Config(**case.kwargs())
    workspace.release()
    first = engine.loss_and_grad(q, docs, config, chunk_size=7, products=products, threads=threads)
    assert _poison_what_is_kept() > 0
    again = engine.loss_and_grad(q, docs, config, chunk_size=7, products=products, threads=threads)
    assert again.loss == first.loss and again.grad_scale == first.grad_scale
    for field in RESULT_FIELDS:
        np.testing.assert_array_equal(getattr(again, field), getattr(first, field), err_msg=field)
    check_against(normative.loss_and_grad(q, docs, config), again, case, q, docs, "poisoned", rtol=1e-12)


def test_the_arrays_a_call_returns_are_never_kept() -> None:
    """The next call cannot write over a result: no kept array shares memory with one."""
    q, docs = make_inputs(50, 3, 6, seed=22, spread=1.0)
    for similarity in ("cos", "dot"):
        got = engine.loss_and_grad(q, docs, Config(directions=ALL_FOUR, similarity=similarity), chunk_size=9)
        with workspace._lock:
            kept = list(workspace._kept)
        assert kept
        for field in RESULT_FIELDS:
            assert not any(np.shares_memory(getattr(got, field), array) for array in kept), field


def test_the_memory_kept_stays_within_its_bound_and_release_frees_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """At most WORKSPACE_BYTES are kept, the latest call's arrays first; 0 keeps nothing."""
    q, docs = make_inputs(40, 4, 8, seed=23)
    config = Config(directions=ALL_FOUR)
    bound = workspace.WORKSPACE_BYTES
    workspace.release()
    engine.loss_and_grad(q, docs, config, chunk_size=5, threads=2)
    everything = workspace.kept_bytes()
    assert everything > 0
    monkeypatch.setattr(workspace, "WORKSPACE_BYTES", everything // 2)
    engine.loss_and_grad(q[:30], docs[:, :30], config, chunk_size=5, threads=2)  # other shapes
    assert 0 < workspace.kept_bytes() <= everything // 2
    monkeypatch.setattr(workspace, "WORKSPACE_BYTES", 0)
    engine.loss_and_grad(q, docs, config, chunk_size=5, threads=2)
    assert workspace.kept_bytes() == 0
    monkeypatch.setattr(workspace, "WORKSPACE_BYTES", bound)
    engine.loss_and_grad(q, docs, config, chunk_size=5, threads=2)
    assert workspace.kept_bytes() == everything
    workspace.release()
    assert workspace.kept_bytes() == 0


def test_two_calls_at_once_share_no_array() -> None:
    """Calls from four threads at once, each of its own batch, again and again: each gives its own
    numbers (the bits of the same call made alone)."""
    config = Config(directions=ALL_FOUR)
    batches = [make_inputs(40, 3, 6, seed=30 + i, spread=1.0) for i in range(4)]
    alone = [engine.loss_and_grad(q, docs, config, chunk_size=6, threads=2) for q, docs in batches]
    failures: list[str] = []

    def call(i: int) -> None:
        q, docs = batches[i]
        for _ in range(5):
            got = engine.loss_and_grad(q, docs, config, chunk_size=6, threads=2)
            if got.loss != alone[i].loss or not np.array_equal(got.grad_docs, alone[i].grad_docs):
                failures.append(f"batch {i}")

    callers = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(timeout=120)
    assert not any(caller.is_alive() for caller in callers)
    assert failures == []


def _kept_in_child(queue: multiprocessing.Queue) -> None:
    queue.put(workspace.kept_bytes())


def test_a_forked_child_starts_with_nothing_kept() -> None:
    q, docs = make_inputs(30, 3, 6, seed=24)
    engine.loss_and_grad(q, docs, Config(directions=ALL_FOUR), chunk_size=5)
    assert workspace.kept_bytes() > 0
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_kept_in_child, args=(queue,))
    child.start()
    try:
        assert queue.get(timeout=60) == 0
    finally:
        child.join(timeout=60)
        if child.is_alive():
            child.kill()
            child.join()


def test_only_arrays_of_a_mebibyte_or_more_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch whose chunks' logits take a few MiB keeps those, and no array under SMALLEST_KEPT."""
    monkeypatch.undo()  # the fixture's
    q, docs = make_inputs(256, 4, 32, seed=25)
    workspace.release()
    engine.loss_and_grad(q, docs, Config(directions=ALL_FOUR), threads=2)
    with workspace._lock:
        sizes = [workspace._nbytes(array) for array in workspace._kept]
    assert sizes and min(sizes) >= workspace.SMALLEST_KEPT, sizes


def test_a_call_that_fails_keeps_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """When a chunk fails the call raises while other workers may still write into its arrays: none
    of them is kept for the next call."""
    from infonce_spec.reference.engine import loss as engine_loss

    real_row_blocks = engine_loss.row_blocks

    def row_blocks(xp, products, start, stop, *args):
        if start == 0:
            raise RuntimeError("chunk at row 0 failed")
        return real_row_blocks(xp, products, start, stop, *args)

    q, docs = make_inputs(30, 2, 4, seed=26)
    workspace.release()
    monkeypatch.setattr(engine_loss, "row_blocks", row_blocks)
    with pytest.raises(RuntimeError, match="chunk at row 0 failed"):
        engine.loss_and_grad(q, docs, Config(directions=ALL_FOUR), chunk_size=3, threads=3)
    assert workspace.kept_bytes() == 0
    monkeypatch.setattr(engine_loss, "row_blocks", real_row_blocks)
    engine.loss_and_grad(q, docs, Config(directions=ALL_FOUR), chunk_size=3, threads=3)
    assert workspace.kept_bytes() > 0
