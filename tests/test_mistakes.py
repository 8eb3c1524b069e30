"""The known mistakes (infonce_spec.conformance.mistakes): each computes what its faulty implementation
returns, and explain() names the right one and never a wrong one.

* the emulation with its default switches is the reference's function (within the float64 tolerance);
* every mistake that a catalogue mutant has reproduces that mutant's outputs (loss, both embedding
  gradients, dL/dscale; non-finite values at the same places) on random cases where it applies, and
  so does each mistake without a mutant against a torch implementation of it written here;
* the correct torch adapter is explained by no mistake on any case where the mistake's prediction
  differs from the reference (never a wrong explanation);
* on a mutant's failing cases, with its passing cases as controls, explain() returns that mistake
  alone. Two mistakes can coincide on one case (N equal to the number of groups makes loss_summed
  and a sum over groups the same function; D = 1 cosine rows whose positive logits average to 0); the
  cases drawn here are many and varied enough that no such coincidence survives all of them;
* a passing case where the mistake would differ from the reference rules it out (controls), and a
  cos floor of an unlisted value is fitted from the data;
* the data-parallel mistakes reproduce every rank's outputs of their mutants under a real gloo group
  of W = 2 (the conformance harness), the GradCache mistakes the cached encoder path of theirs, and
  neither names the correct adapter; a data-parallel mutant's run names its mistake on its root line.

Cases are drawn from seeded NumPy generators (deterministic); the whole file takes about 30 seconds.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")

import torch

from infonce_spec.conformance.harnesses import open_harness
from infonce_spec.conformance.mistakes import (
    MISTAKES,
    Emulation,
    EncoderObservation,
    MemoryObservation,
    Mistake,
    RankObservation,
    emulate,
    explain,
    outputs_agree,
)
from infonce_spec.conformance.mistakes.ranks import rank_outputs
from infonce_spec.conformance.mutants.adapter import TorchAdapter, adapter_for
from infonce_spec.conformance.mutants.base import InfoNCE, Options
from infonce_spec.conformance.mutants.catalogue import CATALOGUE
from infonce_spec.conformance.properties.cached import GROWTH, K_SCAN, N1, LossStageMemory
from infonce_spec.conformance.properties.memory import peak_bytes
from infonce_spec.conformance.protocol import (
    EmbeddingCase,
    EncoderCase,
    EncoderStep,
    LossGrads,
    RankCase,
    load_adapter,
)
from infonce_spec.conformance.runner import run_adapter
from infonce_spec.conformance.tolerances import embedding_bounds, round_to_dtype
from infonce_spec.reference import Config, SpecViolation, loss_and_grad, rank_expectations
from infonce_spec.vocabulary import DIRECTIONS, HARDNESS_MODES, PARTITION_MODES

Case = tuple[np.ndarray, np.ndarray, Config]

#: Catalogue mutants with no mistake: faults (an exception or a None output is no computation to
#: emulate); a fresh dropout mask (the framework's random draws) has no closed form.
WITHOUT_MISTAKE = {"hard_negatives_by_cat", "shape_crash_varying", "scale_grad_none"}
WITHOUT_CLOSED_FORM = {"cache_no_rng_replay"}

EMBEDDING_MISTAKES = sorted(m.id for m in MISTAKES.values() if m.kind == "embeddings")
RANK_MISTAKES = sorted(m.id for m in MISTAKES.values() if m.kind == "ranks")
CACHE_MISTAKES = sorted(m.id for m in MISTAKES.values() if m.kind == "encoder")
MEMORY_MISTAKES = sorted(m.id for m in MISTAKES.values() if m.kind == "memory")


def draw_case(
    rng: np.random.Generator, applies: Any = lambda c: True, n: int | None = None, k: int | None = None
) -> Case:
    """A random configuration under which ``applies`` holds, and a batch with the suite's corner rows
    (zero, below and just above the cos eps, large) and duplicates."""
    while True:
        directions = ("query_to_doc", *(d for d in DIRECTIONS[1:] if rng.random() < 0.5))
        mode = rng.choice([None, *HARDNESS_MODES])
        try:
            config = Config(
                directions=directions,
                partition_mode=str(rng.choice(PARTITION_MODES)),
                scale=float(rng.choice([0.05, 1.0, 20.0, 1000.0, rng.uniform(0.05, 50.0)])),
                similarity=str(rng.choice(["cos", "dot"])),
                hardness_mode=None if mode is None else str(mode),
                hardness_strength=float(rng.uniform(0.0, 10.0)) if mode is not None else 0.0,
            )
        except SpecViolation:
            continue
        if applies(config):
            break
    n = int(rng.integers(1, 6)) if n is None else n
    k = int(rng.integers(1, 4)) if k is None else k
    d = int(rng.integers(1, 9))
    x = (
        rng.normal(size=(n * (k + 1), d))
        if rng.random() < 0.7
        else rng.integers(-2, 3, (n * (k + 1), d)) * 1.0
    )
    for _ in range(int(rng.integers(0, 3))):
        x[rng.integers(len(x))] *= rng.choice([0.0, 1e-14, 1e-9, 1e3])
    if rng.random() < 0.2:
        x[rng.integers(len(x))] = x[rng.integers(len(x))]
    return x[:n].copy(), x[n:].reshape(k, n, d).copy(), config


def rng_for(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


def run(adapter: Any, case: Case) -> Any:
    return adapter.embeddings(EmbeddingCase(*case))


def reference_agrees(case: Case, outputs: Any) -> bool:
    return outputs_agree(loss_and_grad(*case), outputs, embedding_bounds(*case, "float64"))


# --------------------------------------------------------------------------- torch versions of the
# mistakes that no catalogue mutant has (written here, independently of the emulation)
class _PerDirectionLossesSummed(InfoNCE):
    def per_query_losses(self, q_all, d_all, rows, scale):  # type: ignore[no-untyped-def]
        if self.options.partition_mode != "per_direction":
            return super().per_query_losses(q_all, d_all, rows, scale)
        logits, positive = self.logits(q_all, d_all, rows, scale)
        return sum(self.logsumexp(z) - positive for z in logits.values())


class _NormFloor3e9(InfoNCE):
    def normalize(self, x):  # type: ignore[no-untyped-def]
        return torch.nn.functional.normalize(x, dim=-1, eps=3e-9)


class _PositiveProbabilityFloor(InfoNCE):
    def per_query_losses(self, q_all, d_all, rows, scale):  # type: ignore[no-untyped-def]
        logits, positive = self.logits(q_all, d_all, rows, scale)
        tiny = torch.finfo(torch.float64).tiny
        groups = {
            "joint": [list(logits)],
            "per_direction": [[name] for name in logits],
            "per_anchor": [[n for n in logits if n.startswith(side)] for side in ("query_", "doc_")],
        }[self.options.partition_mode]
        parts = [
            -torch.log(torch.exp(positive - self.logsumexp(torch.cat([logits[n] for n in g], 1))) + tiny)
            for g in groups
            if g
        ]
        return torch.stack(parts).mean(0)


#: Mistake id -> (torch adapter, the parameters of the mistake it implements).
OWN_IMPLEMENTATIONS: dict[str, tuple[Any, dict[str, float]]] = {
    "per_direction_sum_groups": (
        adapter_for("per_direction_sum_groups", loss_class=_PerDirectionLossesSummed),
        {},
    ),
    "cos_norm_floor": (adapter_for("norm_floor_3e9", loss_class=_NormFloor3e9), {"floor": 3e-9}),
    "positive_probability_floor": (
        adapter_for("positive_probability_floor", loss_class=_PositiveProbabilityFloor),
        {"positive_floor": float(np.finfo(np.float64).tiny)},
    ),
}


def implementation(mistake: Mistake) -> tuple[Any, dict[str, float]]:
    if mistake.mutant is not None:
        return CATALOGUE[mistake.mutant].adapter, {}
    return OWN_IMPLEMENTATIONS[mistake.id]


def cases_of(mistake: Mistake, count: int = 30) -> list[tuple[Case, Any]]:
    """``count`` cases where the mistake applies, with its implementation's outputs on them."""
    rng = rng_for(mistake.id)
    adapter, _ = implementation(mistake)
    cases = [draw_case(rng, mistake.applies) for _ in range(count)]
    if mistake.id == "positive_probability_floor":  # the cap shows once the positive's probability underflows
        cases = [(q * 1e3, d * 1e3, c.replace(scale=1000.0, similarity="dot")) for q, d, c in cases]
    return [(case, run(adapter, case)) for case in cases]


# --------------------------------------------------------------------------- tests
def test_every_mutant_with_a_closed_form_has_its_mistake_with_its_clause():
    with_mistake = {x for m in MISTAKES.values() for x in m.mutants}
    assert with_mistake <= set(CATALOGUE)
    assert set(CATALOGUE) - with_mistake == WITHOUT_MISTAKE | WITHOUT_CLOSED_FORM
    for m in MISTAKES.values():
        assert m.provenance and m.description and m.clause
        assert m.mutant == (m.mutants[0] if m.mutants else None)
        for x in m.mutants:
            assert m.clause == CATALOGUE[x].clause, m.id
            if CATALOGUE[x].reference:
                assert CATALOGUE[x].reference in m.provenance, m.id
    assert set(OWN_IMPLEMENTATIONS) == {m.id for m in MISTAKES.values() if m.mutant is None}
    # the mutants' levels: each kind of mistake is about its own level
    for m in MISTAKES.values():
        levels = {CATALOGUE[x].level for x in m.mutants}
        assert levels <= {
            {"embeddings": "embeddings", "ranks": "data_parallel", "encoder": "encoder", "memory": "encoder"}[
                m.kind
            ]
        }


def test_the_default_emulation_is_the_reference():
    rng = rng_for("reference")
    for _ in range(60):
        case = draw_case(rng)
        assert reference_agrees(case, emulate(*case, Emulation())), case[2]


@pytest.mark.parametrize("mistake_id", EMBEDDING_MISTAKES)
def test_the_mistake_computes_what_its_implementation_returns(mistake_id):
    mistake = MISTAKES[mistake_id]
    _, params = implementation(mistake)
    differing = 0
    for case, got in cases_of(mistake):
        predicted = mistake.outputs(*case, **params)
        assert outputs_agree(predicted, got, mistake.bounds(*case, "float64", **params)), (
            mistake_id,
            case[2],
        )
        differing += not reference_agrees(case, got)
    assert differing >= 3, f"{mistake_id}: only {differing} cases where the mistake shows"


@pytest.mark.parametrize("mistake_id", EMBEDDING_MISTAKES)
def test_the_correct_adapter_is_never_explained(mistake_id):
    mistake = MISTAKES[mistake_id]
    correct = TorchAdapter()
    rng = rng_for("correct " + mistake_id)
    shown = 0
    for _ in range(30):
        case = draw_case(rng, mistake.applies)
        for params in mistake.candidates([]):
            if reference_agrees(case, mistake.outputs(*case, **params)):
                continue  # the mistake does not show on this case: nothing to tell apart
            shown += 1
            assert explain([(*case, run(correct, case))], mistakes=[mistake]) == [], (
                mistake_id,
                params,
                case[2],
            )
    assert shown >= 3


@pytest.mark.parametrize("mistake_id", EMBEDDING_MISTAKES)
def test_explain_names_the_mistake_alone_on_its_failing_cases(mistake_id):
    mistake = MISTAKES[mistake_id]
    failing, passing = [], []
    for case, got in cases_of(mistake):
        (passing if reference_agrees(case, got) else failing).append((*case, got))
    matches = explain(failing, passing)
    assert [m.id for m in matches] == [mistake_id]
    match = matches[0]
    assert match.text == f"matches: {match.description} (known mistake `{mistake_id}`)"
    if mistake_id == "cos_norm_floor":  # fitted from the data, not one of the listed floors
        assert math.isclose(match.params["floor"], 3e-9, rel_tol=1e-6)
        assert "3e-09" in match.text


def test_overflow_is_predicted_as_the_faulty_code_returns_it():
    """logsumexp_unshifted: an inf loss and nan gradients exactly where the unshifted torch code has them."""
    q, d = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[[1.0, 0.0], [0.0, 1.0]]])
    case = (q, d, Config(scale=1000.0))
    got = run(CATALOGUE["logsumexp_unshifted"].adapter, case)
    predicted = MISTAKES["logsumexp_unshifted"].outputs(*case)
    assert math.isinf(predicted.loss) and np.isnan(predicted.grad_queries).any()
    assert outputs_agree(predicted, got, MISTAKES["logsumexp_unshifted"].bounds(*case, "float64"))
    assert [m.id for m in explain([(*case, got)])] == ["logsumexp_unshifted"]


def test_a_passing_case_where_the_mistake_would_show_rules_it_out():
    """loss_summed explains a failing case at N = 2, but not with a passing case at N = 3 as control."""
    rng = rng_for("controls")
    q, d = rng.normal(size=(2, 4)), rng.normal(size=(1, 2, 4))
    config = Config()
    failing = (q, d, config, run(CATALOGUE["loss_summed"].adapter, (q, d, config)))
    assert "loss_summed" in [m.id for m in explain([failing])]
    q3, d3 = rng.normal(size=(3, 4)), rng.normal(size=(1, 3, 4))
    control = (q3, d3, config, run(TorchAdapter(), (q3, d3, config)))
    assert "loss_summed" not in [m.id for m in explain([failing], [control])]


def test_only_the_outputs_an_adapter_returns_are_compared():
    """An adapter without dL/dscale: scale_detached_dq (which changes nothing else) cannot be told."""
    rng = rng_for("no grad_scale")
    q, d = rng.normal(size=(3, 4)), rng.normal(size=(1, 3, 4))
    case = (q, d, Config(directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction"))
    got = run(CATALOGUE["scale_detached_dq"].adapter, case)
    assert [m.id for m in explain([(*case, got)])] == ["scale_detached_dq"]
    no_scale = type(got)(got.loss, got.grad_queries, got.grad_docs, None)
    assert explain([(*case, no_scale)]) == []


def test_a_float32_implementation_is_explained_at_its_tolerance():
    """norm_floor_1e6 in float32 (tensorflow_similarity's l2_normalize floor), nt_xent's configuration."""
    config = Config(directions=DIRECTIONS, partition_mode="per_anchor", scale=20.0)
    loss_class = type(CATALOGUE["norm_floor_1e6"].adapter).loss_class
    rng = rng_for("float32")
    failing, passing = [], []
    for _ in range(12):
        n, d = int(rng.integers(1, 5)), int(rng.integers(1, 8))
        x = rng.normal(size=(2 * n, d))
        x[rng.integers(2 * n)] *= rng.choice([0.0, 1e-14, 1e-9, 1.0])
        x = round_to_dtype(x, "float32")
        q, docs = x[:n], x[n:].reshape(1, n, d)
        tensors = [torch.tensor(a, dtype=torch.float32, requires_grad=True) for a in (q, docs, 20.0)]
        options = Options.from_kwargs(EmbeddingCase(q, docs, config).loss_kwargs())
        loss = loss_class(options).loss(*tensors)
        loss.backward()
        grads = [t.grad.numpy().astype(np.float64) for t in tensors]
        got = LossGrads(float(loss.detach()), grads[0], grads[1], float(grads[2]))
        right = outputs_agree(
            loss_and_grad(q, docs, config), got, embedding_bounds(q, docs, config, "float32"), "float32"
        )
        (passing if right else failing).append((q, docs, config, got))
    assert failing
    assert [m.id for m in explain(failing, passing, dtype="float32")] == ["norm_floor_1e6"]


# --------------------------------------------------------------------------- data parallel (W = 2)
W = 2
RANK_CASES = 8


def rank_cases(name: str) -> list[tuple[np.ndarray, np.ndarray, Config]]:
    """Global batches of W equal local batches (B 1..3, K 1..3), configs and rows as :func:`draw_case`."""
    rng = rng_for("ranks " + name)
    return [
        draw_case(rng, n=W * int(rng.integers(1, 4)), k=int(rng.integers(1, 4))) for _ in range(RANK_CASES)
    ]


def ranks_of(spec: str, cases: list[tuple[np.ndarray, np.ndarray, Config]]) -> list[RankObservation]:
    """Every rank's ``rank_embeddings`` of the adapter ``spec`` on each case, under a gloo group of W."""
    harness = open_harness(load_adapter(spec), W, timeout=60.0)
    try:
        out = []
        for q, d, config in cases:
            b = q.shape[0] // W
            own = [slice(r * b, (r + 1) * b) for r in range(W)]
            local = [RankCase(r, W, q[s].copy(), d[:, s].copy(), config) for r, s in enumerate(own)]
            out.append(RankObservation(q, d, config, W, tuple(harness.run("rank_embeddings", local))))
        return out
    finally:
        harness.close()


def test_the_default_rank_emulation_is_the_reference():
    rng = rng_for("rank reference")
    for w in (1, 2, 3):
        for _ in range(10):
            q, d, config = draw_case(rng, n=w * int(rng.integers(1, 4)))
            bounds = embedding_bounds(q, d, config, "float64").scaled(w)  # W dL/d(local)
            b = q.shape[0] // w
            predicted = rank_outputs(q, d, config, w)
            for r, (got, want) in enumerate(zip(predicted, rank_expectations(q, d, config, w), strict=True)):
                own = slice(r * b, (r + 1) * b)
                mine = dataclasses.replace(
                    bounds, grad_queries=bounds.grad_queries[own], grad_docs=bounds.grad_docs[:, own]
                )
                assert outputs_agree(want, got, mine, "float64"), config


@pytest.mark.parametrize("mutant_id", sorted(x for m in RANK_MISTAKES for x in MISTAKES[m].mutants))
def test_the_rank_mistake_computes_what_its_mutant_returns_and_is_named_alone(mutant_id):
    (mistake,) = [m for m in MISTAKES.values() if mutant_id in m.mutants]
    assert_reproduced_and_named(mistake, ranks_of(CATALOGUE[mutant_id].spec, rank_cases(mutant_id)))


def assert_reproduced_and_named(mistake: Any, observations: list[Any]) -> None:
    """The mistake predicts its implementation's outputs on every case; on those where it shows (often
    enough), explain() names it alone."""
    failing = []
    for ob in observations:
        predicted, bounds = mistake.predict(ob, "float64")
        assert ob.agrees(predicted, bounds, "float64"), (mistake.id, ob.config)
        if mistake.applies(ob) and ob.shows(predicted, "float64"):
            failing.append(ob)
    assert len(failing) >= 2, f"{mistake.id}: only {len(failing)} cases where the mistake shows"
    assert [m.id for m in explain(failing)] == [mistake.id]


def assert_never_explained(observations: list[Any], mistake_ids: list[str]) -> None:
    """No mistake explains a correct adapter's outputs wherever the mistake would show (often enough)."""
    shown = 0
    for ob in observations:
        for mid in mistake_ids:
            mistake = MISTAKES[mid]
            if mistake.applies(ob) and ob.shows(mistake.predict(ob, "float64")[0], "float64"):
                shown += 1
                assert explain([ob], mistakes=[mistake]) == [], (mid, ob.config)
    assert shown >= 2 * len(mistake_ids)


def test_the_correct_data_parallel_adapter_is_never_explained():
    observations = ranks_of(TorchAdapter.__module__ + ":TorchAdapter", rank_cases("correct"))
    assert_never_explained(observations, RANK_MISTAKES)


def named_root(mutant: str, prop: str, **options: Any) -> Any:
    """The one root of a quick run of ``mutant`` with the property ``prop`` alone, after checking that
    it is the mutant's clause and that its line names the mutant's own mistake."""
    report = run_adapter(
        CATALOGUE[mutant].spec,
        profile="quick",
        select=lambda p: p.name == prop,
        reproducer_dir=None,
        **options,
    )
    (root,) = report.diagnosis.roots
    assert root.clause == CATALOGUE[mutant].clause
    assert root.matches == [f"matches: {MISTAKES[mutant].description} (known mistake `{mutant}`)"]
    return root


def test_a_data_parallel_mutant_run_names_its_mistake_on_its_root_line():
    """The plumbing: the data-parallel property keeps every rank's outputs on the failing case, the
    runner carries them into the failure, and the root's line names the mistake."""
    root = named_root("dp_loss_times_world", "data_parallel/embeddings", world_sizes=(W,))
    assert root.clause == "DP-2"
    assert "known mistake `dp_loss_times_world`" in root.line()
    assert isinstance(root.smallest.failure.observed, RankObservation)


# --------------------------------------------------------------------------- GradCache (encoder)
def encoder_cases(name: str, count: int = 12) -> list[tuple[np.ndarray, tuple[Any, ...], Config, int]]:
    """Linear-encoder cases: weight (D, F), one or two steps with upstreams from the cached properties'
    values, mini_batch_size 1 .. N + 1 (every other case one that does not divide N, where N allows)."""
    rng = rng_for("encoder " + name)
    out = []
    for _ in range(count):
        _, _, config = draw_case(rng)
        n, k, f, dim = (int(rng.integers(lo, hi)) for lo, hi in ((2, 6), (1, 4), (1, 5), (1, 5)))
        steps = tuple(
            (
                rng.normal(size=(n, f)),
                rng.normal(size=(k, n, f)),
                float(rng.choice([1.0, 2.0, -0.5, 0.0, 3.7])),
            )
            for _ in range(1 + len(out) // 2 % 2)  # one step or two (two forwards, then two backwards)
        )
        uneven = [m for m in range(2, n) if n % m]  # every other case: a short last chunk where N allows
        m = int(rng.choice(uneven)) if uneven and len(out) % 2 else int(rng.integers(1, n + 2))
        out.append((rng.normal(size=(dim, f)), steps, config, m))
    return out


def encoder_of(adapter: Any, name: str) -> list[EncoderObservation]:
    out = []
    for w, steps, config, m in encoder_cases(name):
        got = adapter.encoder(EncoderCase(w, tuple(EncoderStep(*s) for s in steps), config, m))
        out.append(EncoderObservation(w, steps, config, m, got))
    return out


@pytest.mark.parametrize("mistake_id", CACHE_MISTAKES)
def test_the_cache_mistake_computes_what_its_mutant_returns_and_is_named_alone(mistake_id):
    mistake = MISTAKES[mistake_id]
    assert_reproduced_and_named(mistake, encoder_of(CATALOGUE[mistake.mutant].adapter, mistake_id))


def test_the_correct_cached_adapter_is_never_explained():
    assert_never_explained(encoder_of(TorchAdapter(), "correct"), CACHE_MISTAKES)


# --------------------------------------------------------------------------- loss-stage memory (CACHE-5)
def memory_observation(adapter: Any) -> MemoryObservation:
    """The CACHE-5 property's three measurements on ``adapter`` (N1 and N2 at K = 1, N2 at K_SCAN),
    whatever its verdict."""
    prop = LossStageMemory()
    config = Config(
        directions=("query_to_doc", "doc_to_doc"), hardness_mode="all_negatives", hardness_strength=1.0
    )
    case = {"config": config, "mini_batch_size": 1, "seed": 0}
    points = ((N1, 1), (N1 * GROWTH, 1), (N1 * GROWTH, K_SCAN))
    peaks = tuple(peak_bytes(adapter, prop._case(case, n, "float64", k))[0] for n, k in points)
    return MemoryObservation((N1, N1 * GROWTH), K_SCAN, peaks)


@pytest.mark.parametrize("mistake_id", MEMORY_MISTAKES)
def test_the_memory_mistake_is_named_alone_on_its_mutant(mistake_id):
    """The growth in N says quadratic for both CACHE-5 mutants; the growth in K tells an N x N array
    (hardly any) from graphs kept alive (linear)."""
    observation = memory_observation(CATALOGUE[MISTAKES[mistake_id].mutant].adapter)
    assert [m.id for m in explain([observation])] == [mistake_id], observation.exponents


def test_the_correct_cached_adapters_memory_is_never_explained():
    observation = memory_observation(TorchAdapter())
    assert explain([observation]) == [], observation.exponents


def test_a_cache5_mutant_run_names_its_mistake_on_its_root_line():
    """The plumbing: the failing CACHE-5 property measures the K scan, the runner carries it into the
    failure, and the root's line names the mistake."""
    root = named_root("cache_full_mask", "cached/loss_stage_memory")
    assert isinstance(root.smallest.failure.observed, MemoryObservation)


def test_an_adapter_failing_the_extra_measurement_keeps_its_cache5_verdict():
    """The measurement at K_SCAN only explains: an adapter that fails there still fails CACHE-5, with
    no observation (and so no explanation)."""
    from types import SimpleNamespace

    from infonce_spec.conformance.compare import ConformanceFailure

    inner = CATALOGUE["cache_full_mask"].adapter

    class NoHardNegativesAfterAll:
        def encoder(self, case: EncoderCase) -> Any:
            if case.steps[0].x_docs.shape[0] > 1:
                raise RuntimeError("K > 1 is not supported after all")
            return inner.encoder(case)

    prop = LossStageMemory()
    caps = SimpleNamespace(max_k=None)
    ctx = SimpleNamespace(adapter=NoHardNegativesAfterAll(), caps=caps, dtype="float64", notes=[])
    config = Config(directions=("query_to_doc", "doc_to_doc"))
    with pytest.raises(ConformanceFailure) as failure:
        prop.check({"config": config, "mini_batch_size": 1, "seed": 0}, ctx)
    assert failure.value.clause == "CACHE-5"
    assert getattr(failure.value, "observed", None) is None


def test_a_memory_observation_without_peaks_is_explained_by_nothing():
    """A peak of 0 (nothing measured at one point) gives no exponent, and no mistake matches."""
    assert explain([MemoryObservation((32, 256), 3, (1000, 64000, 0))]) == []
