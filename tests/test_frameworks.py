"""The suite with other frameworks, without torch: the JAX and TensorFlow examples (examples/) at
every level they claim, in their own environments (``./run setup-frameworks``: .venv-jax with
Python >= 3.12, jax and optax; .venv-tf with tensorflow-cpu; neither has torch).

Each test runs ``infonce-conformance run`` in that environment, as a user would, from a temporary
folder (nothing is written to the checkout), in a session of its own so that no process of the run
may outlive it. A missing environment is built by the fixture (``./run`` holds a lock, so two test
workers never build one at once); a test is skipped, with the reason, only where no suitable
Python interpreter exists. Those runs are marked ``slow`` (minutes: a jitted JAX loss compiles once
per shape hypothesis draws). The devices harness's own contract (one result per rank, a refusal as
every rank's, output faults) is checked here in process with adapters that compute nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from infonce_spec.conformance import Capabilities, LossGrads, RankCase
from infonce_spec.conformance.compare import AdapterFault
from infonce_spec.conformance.harnesses import RankError, check_level3, open_harness
from infonce_spec.conformance.harnesses.devices import DevicesHarness
from infonce_spec.conformance.harnesses.processes import end_of_run
from infonce_spec.conformance.protocol import LoadedAdapter
from infonce_spec.reference import Config
from tests.processes import command_line, session_left

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
#: ``./run``'s exit status when no interpreter of the version a framework needs exists.
NO_PYTHON = 3


def _environment(name: str) -> Path:
    """The framework environment ``name`` (built or updated by ``./run setup-frameworks``)."""
    done = subprocess.run(
        [str(ROOT / "run"), "setup-frameworks", name], capture_output=True, text=True, timeout=1800
    )
    if done.returncode == NO_PYTHON:
        pytest.skip(f"no interpreter for the {name} environment: {done.stderr.strip()}")
    assert done.returncode == 0, f"./run setup-frameworks {name} failed:\n{done.stderr[-3000:]}"
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def jax_env() -> Path:
    return _environment("jax")


@pytest.fixture(scope="module")
def tf_env() -> Path:
    return _environment("tf")


def in_session(
    argv: list[str], *, cwd: Path, timeout: float, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """``argv`` in a session of its own: (exit status, stdout, stderr); no process of the session may
    outlive it by more than 10 s."""
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    left = session_left(proc.pid, 10.0)
    assert not left, f"processes left behind by the run: {[command_line(p) for p in left]}"
    return proc.returncode, out, err


def conformance(
    env: Path, tmp: Path, adapter: str, *args: str, isolation: str | None = None
) -> tuple[int, dict[str, Any], str]:
    """``infonce-conformance run`` in ``env`` from ``tmp``: (exit status, the JSON report, stderr)."""
    environ = {k: v for k, v in os.environ.items() if k != "INFONCE_CONFORMANCE_ISOLATION"}
    environ["HYPOTHESIS_STORAGE_DIRECTORY"] = str(tmp / "hypothesis")
    if isolation is not None:
        environ["INFONCE_CONFORMANCE_ISOLATION"] = isolation
    tmp.mkdir(parents=True, exist_ok=True)
    report = tmp / "report.json"
    code, out, err = in_session(
        [
            str(env / "bin" / "infonce-conformance"),
            "run",
            "--adapter",
            adapter,
            "--no-progress",
            "--json",
            str(report),
            "--reproducers",
            str(tmp / "reproducers"),
            *args,
        ],
        cwd=tmp,
        env=environ,
        timeout=1200,
    )
    data = json.loads(report.read_text()) if report.exists() else {}
    return code, data, f"{out[-4000:]}\n{err[-4000:]}"


def level3(
    env: Path, tmp: Path, adapter: str, world_sizes: str, select: str = "data_parallel"
) -> tuple[int, dict[str, Any], str]:
    """:func:`conformance` of ``adapter``'s data-parallel properties (``select``) at ``world_sizes``,
    quick profile."""
    return conformance(
        env, tmp, adapter, "--profile", "quick", "--select", select, "--world-sizes", world_sizes
    )


def statuses(data: dict[str, Any]) -> dict[tuple[str, int | None], str]:
    """``{(property, world size): status}`` of the single adapter in the report."""
    (report,) = data["reports"]
    return {(p["property"], p["world_size"]): p["status"] for p in report["properties"]}


# -- JAX ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_jax_adapter_passes_every_level_without_torch(jax_env: Path, tmp_path: Path) -> None:
    """Levels 1, 2 and 3 (W = 1 .. 4, the devices form: shard_map over 4 host devices) of the plain
    JAX loss pass; only CACHE-5's meter, which reads torch's allocator, is not claimed."""
    code, data, output = conformance(
        jax_env, tmp_path, f"{EXAMPLES / 'jax_adapter.py'}:data_parallel", "--profile", "quick"
    )
    assert code == 0, output
    found = statuses(data)
    assert {s for (name, _), s in found.items() if name != "cached/loss_stage_memory"} == {"pass"}
    assert found[("cached/loss_stage_memory", None)] == "not claimed"
    for w in (1, 2, 3, 4):
        assert found[("data_parallel/embeddings", w)] == "pass"
        assert found[("data_parallel/encoder", w)] == "pass"
    assert all(found[("data_parallel/unequal_batch", w)] == "pass" for w in (2, 3, 4))  # DP-5
    assert data["reports"][0]["world_sizes"] == [1, 2, 3, 4]
    assert "W devices of one process" in data["reports"][0]["mode"]


@pytest.mark.slow
def test_jax_mutant_gathering_without_gradient_is_one_dp3_root(jax_env: Path, tmp_path: Path) -> None:
    """``stop_gradient`` around the all-gather (only the local block keeps its autodiff connection)
    is caught at W = 2 and diagnosed as exactly one root, DP-3."""
    code, data, output = level3(
        jax_env, tmp_path, f"{EXAMPLES / 'jax_adapter.py'}:gather_without_gradient", "1,2"
    )
    assert code == 1, output
    roots = data["reports"][0]["root_causes"]
    assert [r["clause"] for r in roots] == ["DP-3"], roots
    found = statuses(data)
    assert found[("data_parallel/embeddings", 1)] == "pass"  # one device: nothing to gather
    assert found[("data_parallel/embeddings", 2)] == "FAIL"


@pytest.mark.slow
def test_jax_one_process_per_rank_passes_level3_and_catches_the_gather_without_gradient(
    jax_env: Path, tmp_path: Path
) -> None:
    """The rendezvous form: W spawned ranks, ``jax.distributed`` started by the adapter's ``join``
    (CPU collectives over gloo), no torch. The plain loss passes DP-1 .. DP-5 at W = 1 .. 3; the
    ``stop_gradient`` mutant is exactly one root, DP-3, found at W = 2."""
    code, data, output = level3(
        jax_env, tmp_path / "plain", f"{EXAMPLES / 'jax_adapter.py'}:processes", "1,2,3"
    )
    assert code == 0, output
    found = statuses(data)
    for w in (1, 2, 3):
        assert found[("data_parallel/embeddings", w)] == "pass"
        assert found[("data_parallel/encoder", w)] == "pass"
    assert all(found[("data_parallel/unequal_batch", w)] == "pass" for w in (2, 3))  # DP-5
    assert "one spawned process per rank" in data["reports"][0]["mode"]
    code, data, output = level3(
        jax_env,
        tmp_path / "mutant",
        f"{EXAMPLES / 'jax_adapter.py'}:processes_gather_without_gradient",
        "2",
        select="data_parallel/embeddings",
    )
    assert code == 1, output
    assert [r["clause"] for r in data["reports"][0]["root_causes"]] == ["DP-3"], output


@pytest.mark.slow
def test_jax_rank_faults_are_about_the_rank_that_caused_them(jax_env: Path, tmp_path: Path) -> None:
    """Under a real ``jax.distributed`` runtime rank 1 raises, exits or hangs while rank 0 waits for
    it inside XLA (whose coordination service aborts a rank whose peer went, and which catches
    SIGTERM): the verdict names rank 1 each time, a raise or an exit within seconds, a hang within
    its time limit plus the stack dump, and the run leaves no process behind."""
    script = ROOT / "tests" / "jax_rank_faults.py"
    code, out, err = in_session([str(jax_env / "bin" / "python"), str(script)], cwd=tmp_path, timeout=600)
    assert code == 0, err[-3000:]
    found = {f["fault"]: f for f in map(json.loads, out.strip().splitlines())}
    assert (found["raises"]["kind"], found["raises"]["rank"]) == ("exception", 1)
    assert (
        found["raises"]["detail"]
        == "rank 1 raised RuntimeError: rank 1 cannot gather in rank_embeddings(case)"
    )
    assert "jax_rank_faults.py" in found["raises"]["frame"]
    assert (found["exits"]["kind"], found["exits"]["rank"]) == ("crash", 1)
    assert (found["hangs"]["kind"], found["hangs"]["rank"]) == ("timeout", 1)
    assert "jax_rank_faults.py" in found["hangs"]["frame"] and "in fault" in found["hangs"]["frame"]
    assert found["raises"]["seconds"] < 6 and found["exits"]["seconds"] < 6
    assert found["hangs"]["seconds"] < 3 * (8 + 2)


@pytest.mark.slow
def test_jax_adapter_that_computes_at_import_passes_with_default_settings(
    jax_env: Path, tmp_path: Path
) -> None:
    """The module runs a jitted warm-up at import, so XLA's threads run in the runner before any
    worker starts; the workers are spawned (nothing inherited) and the adapter passes."""
    code, data, output = conformance(
        jax_env,
        tmp_path,
        f"{EXAMPLES / 'jax_import_time.py'}:adapter",
        "--profile",
        "quick",
        "--select",
        "reference/query_to_doc",
    )
    assert code == 0, output
    assert set(statuses(data).values()) == {"pass"}


@pytest.mark.slow
def test_forced_fork_after_a_jax_import_names_the_setting(jax_env: Path, tmp_path: Path) -> None:
    """Forcing ``fork`` for that adapter deadlocks the worker (XLA's threads are not copied); the
    timeout says why and names the setting that avoids it."""
    code, data, output = conformance(
        jax_env,
        tmp_path,
        f"{EXAMPLES / 'jax_import_time.py'}:adapter",
        "--profile",
        "quick",
        "--select",
        "reference/query_to_doc",
        "--timeout",
        "3",
        isolation="fork",
    )
    assert code == 1, output
    (root,) = data["reports"][0]["root_causes"]
    assert root["kind"] == "adapter fault"
    assert "did not answer within 3 s" in root["explanation"]
    assert "jax was loaded in the runner before the fork" in root["explanation"]
    assert "INFONCE_CONFORMANCE_ISOLATION=spawn" in root["explanation"]


@pytest.mark.slow
def test_torch_form_of_level_3_without_torch_is_a_load_error(jax_env: Path, tmp_path: Path) -> None:
    """Claiming ``data_parallel`` in the torch form where torch is not installed: exit status 2 and a
    message naming what to install (or the devices form) -- not an adapter fault."""
    (tmp_path / "torch_form.py").write_text(
        textwrap.dedent(
            """
            from infonce_spec.conformance import Capabilities

            class TorchForm:
                capabilities = Capabilities(name="torch-form", data_parallel=True)

                def embeddings(self, case):
                    raise NotImplementedError

                def rank_embeddings(self, case):
                    raise NotImplementedError
            """
        )
    )
    code, _data, output = conformance(jax_env, tmp_path, "torch_form.py:TorchForm", "--profile", "quick")
    assert code == 2, output
    assert "collectives='torch'" in output
    assert "pip install torch" in output
    assert "collectives='devices'" in output
    assert "adapter fault" not in output


# -- TensorFlow ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_tensorflow_adapter_passes_every_level_without_torch(tf_env: Path, tmp_path: Path) -> None:
    """Levels 1 and 2 of the plain TensorFlow loss, and level 3 in the devices form (a
    MirroredStrategy over 4 logical CPU devices, W = 1 .. 4); only CACHE-5 is not claimed."""
    code, data, output = conformance(
        tf_env, tmp_path, f"{EXAMPLES / 'tf_adapter.py'}:data_parallel", "--profile", "quick"
    )
    assert code == 0, output
    found = statuses(data)
    assert {s for (name, _), s in found.items() if name != "cached/loss_stage_memory"} == {"pass"}
    assert found[("cached/loss_stage_memory", None)] == "not claimed"
    assert all(found[("data_parallel/embeddings", w)] == "pass" for w in (1, 2, 3, 4))
    assert all(found[("data_parallel/encoder", w)] == "pass" for w in (1, 2, 3, 4))
    assert len(found) >= 40  # levels 1 and 2 (29 properties) and level 3 at every world size


@pytest.mark.slow
def test_tensorflow_one_process_per_rank_passes_level3(tf_env: Path, tmp_path: Path) -> None:
    """The rendezvous form: W spawned workers, each starting a MultiWorkerMirroredStrategy from the
    ``TF_CONFIG`` its ``join`` writes (collectives over gRPC), no torch; DP-1 .. DP-5 at W = 1, 2."""
    code, data, output = level3(tf_env, tmp_path, f"{EXAMPLES / 'tf_adapter.py'}:processes", "1,2")
    assert code == 0, output
    found = statuses(data)
    assert all(
        found[(p, w)] == "pass" for p in ("data_parallel/embeddings", "data_parallel/encoder") for w in (1, 2)
    )
    assert found[("data_parallel/unequal_batch", 2)] == "pass"  # DP-5


# -- the devices harness itself (any environment; the adapters below compute nothing) ------------------------
class DevicesAdapter:
    """A ``collectives="devices"`` adapter whose one call does what ``behaviour`` says."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.capabilities = Capabilities(
            name=f"devices-{behaviour}", dtype="float32", data_parallel=True, collectives="devices"
        )

    def embeddings(self, case: Any) -> LossGrads:
        raise NotImplementedError

    def devices_embeddings(self, cases: Any) -> list[LossGrads]:
        if self.behaviour == "refuses":
            raise ValueError("[DP-5] the ranks' local batches differ")
        n = len(cases) - 1 if self.behaviour == "one_short" else len(cases)
        dtype = np.float16 if self.behaviour == "float16" else np.float32
        return [
            LossGrads(0.0, np.zeros(c.queries.shape, dtype), np.zeros(c.docs.shape, dtype)) for c in cases[:n]
        ]


def _rank_cases(w: int) -> list[RankCase]:
    return [RankCase(r, w, np.zeros((1, 2)), np.zeros((1, 1, 2)), Config()) for r in range(w)]


def _devices_run(behaviour: str, *, allow_errors: bool = False) -> list[Any]:
    adapter = DevicesAdapter(behaviour)
    harness = open_harness(LoadedAdapter(f"tests/test_frameworks.py:{behaviour}", adapter), 3, timeout=60)
    assert isinstance(harness, DevicesHarness)
    try:
        return harness.run("rank_embeddings", _rank_cases(3), allow_errors=allow_errors)
    finally:
        harness.close()
        end_of_run()


def test_devices_harness_returns_one_result_per_rank() -> None:
    outs = _devices_run("answers")
    assert len(outs) == 3
    assert [o.grad_queries.shape for o in outs] == [(1, 2)] * 3


def test_devices_harness_refusal_is_every_ranks_refusal_for_dp5() -> None:
    outs = _devices_run("refuses", allow_errors=True)
    assert [type(o) for o in outs] == [RankError] * 3
    assert all(o.value_or_type_error and "DP-5" in o.message for o in outs)
    with pytest.raises(AdapterFault) as info:  # not expected outside DP-5: one fault about the call
        _devices_run("refuses")
    assert info.value.kind == "exception"
    assert "devices_embeddings() raised ValueError" in info.value.detail


def test_devices_harness_output_faults_name_the_count_or_the_rank() -> None:
    with pytest.raises(AdapterFault) as info:
        _devices_run("one_short")
    assert info.value.kind == "output"
    assert "returned 2 results for W = 3 ranks" in info.value.detail
    with pytest.raises(AdapterFault) as info:
        _devices_run("float16")
    assert info.value.kind == "output"
    assert info.value.rank == 0
    assert "float16" in info.value.detail


def test_level3_forms_and_what_they_need() -> None:
    devices = Capabilities(name="d", data_parallel=True, collectives="devices")
    assert check_level3(devices) is None
    assert "without torchrun" in (check_level3(devices, torchrun=True) or "")
    assert check_level3(Capabilities(name="t", data_parallel=True)) is None  # torch is installed here
    assert check_level3(Capabilities(name="none")) is None
    with pytest.raises(ValueError, match="collectives"):
        Capabilities(name="x", collectives="mpi")
