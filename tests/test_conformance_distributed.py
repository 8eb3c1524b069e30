"""The data-parallel harness: gloo pools per world size, a crash or a hang is one adapter fault, no orphans."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from infonce_spec.adapters.bundled import TorchAdapter
from infonce_spec.conformance.harnesses import processes
from infonce_spec.conformance.harnesses.torchrun import in_torchrun
from infonce_spec.conformance.protocol import Capabilities, RankCase
from infonce_spec.conformance.runner import run_adapter
from tests.processes import forkserver_pid, helper_pids, live_processes

HERE = Path(__file__).resolve()
pytestmark = pytest.mark.distributed


class CrashingRank(TorchAdapter):
    """Rank 1 dies in the middle of a data-parallel step."""

    def __init__(self) -> None:
        super().__init__("crashing-rank", data_parallel=True)

    def rank_embeddings(self, case: RankCase):  # type: ignore[no-untyped-def]
        if case.rank == 1:
            os._exit(3)
        return super().rank_embeddings(case)


class HangingRank(CrashingRank):
    """Rank 1 never answers."""

    def rank_embeddings(self, case: RankCase):  # type: ignore[no-untyped-def]
        if case.rank == 1:
            time.sleep(3600)
        raise ValueError("rank 0 gives up")


def _children() -> set[int]:
    """Live child processes of this process, except the ones it keeps on purpose (the session's
    forkserver, multiprocessing's resource tracker)."""
    return set(live_processes(parent=os.getpid())) - helper_pids()


def _dp_only(prop) -> bool:  # type: ignore[no-untyped-def]
    return prop.name == "data_parallel/embeddings"


def test_pools_per_world_size_pass_and_leave_no_process_behind() -> None:
    before = _children()
    rep = run_adapter(
        "infonce_spec.adapters.bundled:data_parallel",
        profile="quick",
        world_sizes=(1, 3),
        reproducer_dir=None,
        select=lambda p: p.level == "data_parallel",
    )
    assert rep.ok, [(r.label, r.failure) for r in rep.results if r.status != "pass"]
    assert {r.label for r in rep.results} >= {
        "data_parallel/embeddings [W=1]",
        "data_parallel/embeddings [W=3]",
        "data_parallel/unequal_batch [W=3]",
    }
    assert _children() - before == set()


def test_a_crashing_worker_is_one_adapter_fault_not_a_clause_and_not_a_hang() -> None:
    before = _children()
    start = time.monotonic()
    rep = run_adapter(
        f"{HERE}:CrashingRank",
        profile="quick",
        world_sizes=(2,),
        reproducer_dir=None,
        select=_dp_only,
        timeout=30,
    )
    assert time.monotonic() - start < 90
    (result,) = rep.results
    assert result.status == "fault" and not rep.ok and result.examples == 1
    assert result.failure is not None and result.failure.clause is None  # not DP-1 (a layout clause)
    assert result.failure.message.startswith("rank 1 died (exit code 3) in rank_embeddings(case)")
    assert _children() - before == set()


def test_a_hung_worker_times_out_and_is_killed() -> None:
    before = _children()
    start = time.monotonic()
    rep = run_adapter(
        f"{HERE}:HangingRank",
        profile="quick",
        world_sizes=(2,),
        reproducer_dir=None,
        select=_dp_only,
        timeout=2,
    )
    assert time.monotonic() - start < 60
    (result,) = rep.results
    assert result.status == "fault" and result.failure is not None
    # rank 0 gave up with its own error while rank 1 hung: the verdict is rank 0's error, at once
    assert result.failure.message.startswith(
        "rank 0 raised ValueError: rank 0 gives up in rank_embeddings(case)"
    )
    assert _children() - before == set()


def test_runs_in_a_shared_block_reuse_one_forkserver_and_a_run_outside_stops_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for _ in range(2):
        rep = run_adapter(
            "infonce_spec.adapters.bundled:data_parallel",
            profile="quick",
            world_sizes=(2,),
            reproducer_dir=None,
            select=_dp_only,
        )
        assert rep.ok, [(r.label, r.failure) for r in rep.results]
        pid = forkserver_pid()
        assert pid is not None and Path(f"/proc/{pid}").exists()
        if _ == 0:
            first = pid
    assert pid == first, "the second run started a forkserver of its own"
    stopped: list[bool] = []
    monkeypatch.setattr(processes, "_SHARED", 0)
    monkeypatch.setattr(processes, "stop_forkserver", lambda: stopped.append(True))
    processes.end_of_run()
    assert stopped, "a run outside a shared_forkserver block must stop the forkserver"


def test_a_forkserver_without_the_adapters_module_is_started_again_while_it_has_no_worker() -> None:
    """One forkserver serves the runs of a shared block, but the ranks of an adapter whose module it
    did not preload would each import it (seconds for sentence-transformers): between pools, the
    forkserver is started again with that module; a second run of the same adapter reuses it."""
    from multiprocessing import forkserver

    def dp_run(spec: str) -> None:
        rep = run_adapter(spec, profile="quick", world_sizes=(1,), reproducer_dir=None, select=_dp_only)
        assert rep.ok, [(r.label, r.failure) for r in rep.results]

    mutants = "infonce_spec.conformance.mutants.catalogue"
    dp_run("infonce_spec.adapters.bundled:data_parallel")
    first = forkserver_pid()
    dp_run(f"{mutants}:variants.dp_global_loss_every_rank")
    second = forkserver_pid()
    assert second is not None and second != first
    assert mutants in forkserver._forkserver._preload_modules
    dp_run(f"{mutants}:variants.dp_global_loss_every_rank")
    assert forkserver_pid() == second


def test_torchrun_is_detected_from_its_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert not in_torchrun()
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert in_torchrun()


def test_data_parallel_not_claimed_is_reported_once_per_property() -> None:
    rep = run_adapter(
        "infonce_spec.adapters.bundled:uncached",
        profile="quick",
        world_sizes=(1, 2),
        reproducer_dir=None,
        select=lambda p: p.level == "data_parallel",
    )
    assert rep.ok
    assert [(r.property, r.status) for r in rep.results] == [
        ("data_parallel/embeddings", "not claimed"),
        ("data_parallel/encoder", "not claimed"),
        ("data_parallel/unequal_batch", "not claimed"),
    ]
    assert isinstance(rep.capabilities, Capabilities)


def test_a_layout_error_that_a_shrunk_case_hides_from_the_losses_is_dp1() -> None:
    """The mutant whose rank offset is ``r`` instead of ``r B``: under the quick profile the failing
    case has rows of zeros, on which every rank's loss is right and only the gradients are off.
    DP-3 presupposes DP-1 and DP-2: the rank losses on a generic batch of the same shapes show the
    layout, so the root is DP-1 (a premise check), not DP-3."""
    from infonce_spec.conformance.diagnosis import diagnose
    from infonce_spec.conformance.mutants.catalogue import CATALOGUE

    rep = run_adapter(
        CATALOGUE["dp_rank_offset"].spec,
        profile="quick",
        world_sizes=(2,),
        reproducer_dir=None,
        select=_dp_only,
    )
    (result,) = rep.results
    assert result.status == "premise" and result.failure is not None, (result.status, result.failure)
    assert result.failure.clause == "DP-1", result.failure.message
    assert "generic batch" in result.failure.message
    assert [root.clause for root in diagnose(rep.results).roots] == ["DP-1"]
