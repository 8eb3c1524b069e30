"""The ``rendezvous`` form of level 3 (:mod:`infonce_spec.conformance.harnesses.rendezvous`): one
spawned process per rank, no torch, the adapter's own runtime joining the ranks.

The harness's contract is checked with the standard-library adapters of
``tests/rendezvous_adapters.py`` (the ranks meet through ``multiprocessing.connection``): every rank
gets its :class:`Rendezvous`, the results come back in rank order, and a fault is one verdict about
the rank that caused it -- never about the peer that waits for it or loses its connection to it.
A real runtime (``jax.distributed``) is run through it in tests/test_frameworks.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from infonce_spec.conformance.compare import AdapterFault
from infonce_spec.conformance.harnesses import RankError, check_level3, open_harness
from infonce_spec.conformance.harnesses.processes import close_pools
from infonce_spec.conformance.harnesses.rendezvous import RendezvousHarness, free_ports
from infonce_spec.conformance.protocol import Capabilities, RankCase, load_adapter
from infonce_spec.reference import Config
from tests.processes import helper_pids, live_processes

pytestmark = pytest.mark.distributed

ADAPTERS = Path(__file__).resolve().parent / "rendezvous_adapters.py"
#: A healthy call answers in milliseconds once the ranks are up; a spawned rank starts in about a second.
TIMEOUT = 3


def spec(name: str) -> str:
    return f"{ADAPTERS}:{name}"


@pytest.fixture(autouse=True)
def _no_rank_left() -> Iterator[None]:
    yield
    close_pools()
    helpers = helper_pids()
    left = [pid for pid in live_processes(parent=os.getpid()) if pid not in helpers]
    assert left == [], f"ranks left by this test: {left}"


def _cases(w: int) -> list[RankCase]:
    rng = np.random.default_rng(0)
    q, d = rng.normal(size=(2 * w, 3)), rng.normal(size=(1, 2 * w, 3))
    return [RankCase(r, w, q[2 * r : 2 * r + 2], d[:, 2 * r : 2 * r + 2], Config()) for r in range(w)]


def test_free_ports_are_distinct() -> None:
    ports = free_ports(5)
    assert len(set(ports)) == 5 and all(0 < p < 65536 for p in ports)


@pytest.mark.parametrize("w", [1, 3])
def test_every_rank_joins_at_its_rendezvous_without_torch_and_answers_in_rank_order(w: int) -> None:
    harness = RendezvousHarness(spec("Meets"), w, timeout=TIMEOUT)
    try:
        for _ in range(2):  # the pool serves call after call
            outs = harness.run("rank_embeddings", _cases(w))
            assert [o.loss for o in outs] == list(range(w))
            assert all(o.grad_scale == w for o in outs)
            ports = {int(o.grad_queries[0, 0]) for o in outs}
            assert len(ports) == 1, "every rank got the same coordinator"
            assert all(o.grad_queries[0, 1] == 0.0 for o in outs), "a rank imported torch"
        assert harness.restarts == 0
    finally:
        harness.close()


FAULTS = [
    ("HangAtRank1", "timeout", f"rank 1 did not answer within {TIMEOUT} s in rank_embeddings(case)"),
    ("ExitAtRank1", "crash", "rank 1 died (exit code 3) in rank_embeddings(case)"),
    ("KilledAtRank1", "crash", "rank 1 died (killed by signal SIGKILL) in rank_embeddings(case)"),
    (
        "RaiseAtRank1",
        "exception",
        "rank 1 raised RuntimeError: rank 1 cannot gather in rank_embeddings(case)",
    ),
]


@pytest.mark.parametrize(("name", "kind", "message"), FAULTS, ids=[f[0] for f in FAULTS])
def test_a_rank_fault_is_one_verdict_about_that_rank_not_its_waiting_peer(
    name: str, kind: str, message: str
) -> None:
    """Rank 0 waits for rank 1 in the barrier (standard-library frames, as a runtime's collective) or
    loses its connection to it (EOFError): the verdict is rank 1's, and the next call gets a fresh pool."""
    harness = RendezvousHarness(spec(name), 2, timeout=TIMEOUT)
    try:
        harness.start()
        start = time.monotonic()
        with pytest.raises(AdapterFault) as info:
            harness.run("rank_embeddings", _cases(2))
        fault = info.value
        assert (fault.kind, fault.rank, fault.detail) == (kind, 1, message)
        assert time.monotonic() - start < (3 * (TIMEOUT + 2) if kind == "timeout" else 6)
        if kind in ("timeout", "exception"):
            assert fault.frame is not None and "rendezvous_adapters.py" in fault.frame
            assert "in before_barrier" in fault.frame
        assert harness.restarts == 1 and harness._procs == []
    finally:
        harness.close()


def test_a_join_that_raises_is_one_load_fault_about_that_rank() -> None:
    harness = RendezvousHarness(spec("JoinFailsAtRank1"), 2, timeout=TIMEOUT)
    try:
        with pytest.raises(AdapterFault) as info:
            harness.run("rank_embeddings", _cases(2))
        fault = info.value
        assert (fault.kind, fault.rank) == ("load", 1)
        assert fault.detail == (
            "rank 1 could not join the others (its join(rendezvous) raised): "
            "RuntimeError: no coordinator reachable"
        )
        assert fault.frame is not None and "rendezvous_adapters.py" in fault.frame
    finally:
        harness.close()


def test_a_refusal_on_every_rank_comes_back_to_the_property_for_dp5() -> None:
    harness = RendezvousHarness(spec("AllRefuse"), 2, timeout=TIMEOUT)
    try:
        outs = harness.run("rank_embeddings", _cases(2), allow_errors=True)
        assert all(isinstance(o, RankError) and o.value_or_type_error for o in outs)
        assert [o.rank for o in outs] == [0, 1]
        with pytest.raises(AdapterFault) as info:
            harness.run("rank_embeddings", _cases(2))
        assert (info.value.kind, info.value.rank) == ("exception", 0)
    finally:
        harness.close()


def test_the_rendezvous_form_is_chosen_by_the_claim_and_needs_no_torchrun() -> None:
    loaded = load_adapter(spec("Meets"))
    harness = open_harness(loaded, 2, timeout=TIMEOUT)
    try:
        assert isinstance(harness, RendezvousHarness)
        assert harness.device == "one process per rank (the adapter's runtime)"
    finally:
        harness.close()
    caps = Capabilities(name="r", data_parallel=True, collectives="rendezvous")
    assert check_level3(caps) is None
    assert "run it without torchrun" in (check_level3(caps, torchrun=True) or "")


def test_a_rendezvous_claim_without_join_is_refused_at_load() -> None:
    class NoJoin:
        capabilities = Capabilities(name="no-join", data_parallel=True, collectives="rendezvous")

        def embeddings(self, case: object) -> None: ...

        def rank_embeddings(self, case: object) -> None: ...

    from infonce_spec.conformance.protocol import LoadedAdapter

    with pytest.raises(TypeError, match=r"collectives='rendezvous'\) but has no join\(rendezvous\) method"):
        LoadedAdapter("no-join", NoJoin())
