"""The sentence-transformers 6.2.0 conformance adapters (infonce_spec.adapters.sentence_transformers).

* the four adapters load through the plug-in protocol and claim exactly what the library supports;
* level 1 (``compute_loss_from_embeddings``; cached: the GradCache ``forward`` over a pass-through
  model) equals the reference within the suite's float64/float32 tolerance model, hard negatives and
  every hardness mode included;
* level 2 (the real ``forward(sentence_features, labels)`` over the tiny linear stand-in model)
  equals :func:`~infonce_spec.reference.linear_encoder_grad`, cached for mini-batch sizes 1 .. N+2;
* cached == uncached with dropout under one seed (CACHE-3) and for two forwards then two backwards
  (CACHE-4);
* end to end: ``infonce-conformance run --profile quick`` (the command line's ``main``, in this
  process) exits 0 for ``mnrl`` and ``cached_mnrl`` (data-parallel world sizes 1 and 2 included) with
  exactly the expected "not claimed" properties.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("sentence_transformers")

from infonce_spec.conformance.properties.base import Context
from infonce_spec.conformance.protocol import (
    ConformanceAdapter,
    DropoutCase,
    EmbeddingCase,
    EncoderCase,
    EncoderStep,
    load_adapter,
)
from infonce_spec.conformance.tolerances import embedding_bounds, encoder_bounds, round_to_dtype
from infonce_spec.reference import Config, linear_encoder_grad, loss_and_grad

pytestmark = pytest.mark.peers

MODULE = "infonce_spec.adapters.sentence_transformers"
ADAPTERS = {
    "mnrl": ("float64", False),
    "mnrl_float32": ("float32", False),
    "mnrl_bfloat16": ("bfloat16", False),
    "cached_mnrl": ("float64", True),
    "cached_mnrl_float32": ("float32", True),
    "cached_mnrl_bfloat16": ("bfloat16", True),
}
ALL_DIRECTIONS = ("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc")
#: (N, K, D, config): pairs, hard negatives, every hardness mode, per_direction, dot.
CASES = [
    (5, 1, 4, Config()),
    (4, 3, 5, Config(directions=ALL_DIRECTIONS, hardness_mode="all_negatives", hardness_strength=3.0)),
    (
        5,
        2,
        3,
        Config(
            directions=("query_to_doc", "doc_to_query"),
            partition_mode="per_direction",
            similarity="dot",
            scale=1.5,
            hardness_mode="hard_negatives",
            hardness_strength=5.0,
        ),
    ),
    (
        3,
        3,
        4,
        Config(
            directions=("query_to_doc", "doc_to_doc"),
            scale=50.0,
            hardness_mode="in_batch_negatives",
            hardness_strength=9.0,
        ),
    ),
    (1, 2, 2, Config(directions=ALL_DIRECTIONS, similarity="dot", scale=0.5)),
]
IDS = [
    f"N{n}-K{k}-{'+'.join(c.directions)}-{c.partition_mode}-{c.similarity}-{c.hardness_mode}"
    for n, k, _, c in CASES
]


def adapter(name: str) -> Any:
    return load_adapter(f"{MODULE}:{name}").adapter


def context(name: str) -> Context:
    """The suite's comparison context: its tolerance model, worst-element messages and clause IDs."""
    return Context(load_adapter(f"{MODULE}:{name}"))


def inputs(n: int, k: int, d: int, dtype: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return round_to_dtype(rng.normal(size=(n, d)), dtype), round_to_dtype(rng.normal(size=(k, n, d)), dtype)


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_adapters_load_and_claim_what_the_library_supports(name: str) -> None:
    loaded = load_adapter(f"{MODULE}:{name}")
    caps = loaded.capabilities
    dtype, cached = ADAPTERS[name]
    assert isinstance(loaded.adapter, ConformanceAdapter)
    assert caps.dtype == dtype and caps.cached is cached
    assert caps.directions == frozenset(ALL_DIRECTIONS)
    assert caps.partition_modes == {"joint", "per_direction"}
    assert caps.similarities == {"cos", "dot"}
    assert caps.hardness_modes == {"in_batch_negatives", "hard_negatives", "all_negatives"}
    assert caps.max_k is None
    assert (caps.encoder, caps.dropout, caps.data_parallel) == (True, True, True)
    assert caps.compute_dtype is None, "bfloat16: gradients are summed in bfloat16 (see the finding below)"
    assert not caps.grad_scale, "the library's scale is a float, not a parameter (SCALE-2 not claimed)"
    assert not caps.validates_inputs, (
        "the library accepts NaN/inf embeddings and scale=inf (VAL-1 not claimed)"
    )


@pytest.mark.parametrize("name", sorted(ADAPTERS))
@pytest.mark.parametrize(("n", "k", "d", "config"), CASES, ids=IDS)
def test_embeddings_equal_the_reference(name: str, n: int, k: int, d: int, config: Config) -> None:
    """LOSS-1, GRAD-1 at level 1, within the suite's tolerance model for the adapter's dtype."""
    ctx = context(name)
    q, docs = inputs(n, k, d, ctx.dtype)
    out = ctx.adapter.embeddings(EmbeddingCase(q, docs, config))
    ref = loss_and_grad(q, docs, config)
    b = embedding_bounds(q, docs, config, ctx.compute_dtype)
    ctx.close(out.loss, ref.loss, b.loss, quantity=f"{name} loss", clause="LOSS-1")
    ctx.close(
        out.grad_queries, ref.grad_queries, b.grad_queries, quantity=f"{name} grad_queries", clause="GRAD-1"
    )
    ctx.close(out.grad_docs, ref.grad_docs, b.grad_docs, quantity=f"{name} grad_docs", clause="GRAD-1")
    assert out.grad_scale is None


def test_finding_bfloat16_gradients_are_summed_in_bfloat16() -> None:
    """Finding 1 of docs/sentence-transformers.md, asserted exactly: ``util.cos_sim`` upcasts bfloat16
    embeddings to float32 per call, but autograd sums the calls' gradients in bfloat16. Zero queries
    under cos (GRAD-3: 1/eps) make the per-direction contributions ~1e10 cancel to ~3.6e6, so the
    result misses the float32-loss-stage bound (mixed precision) yet meets the bfloat16 one (claimed)."""
    from infonce_spec.conformance.compare import ConformanceFailure

    q = np.zeros((3, 1))
    docs = np.array([[[0.0], [0.0], [-1.0]], [[0.0], [1.0], [1.0]]])
    config = Config(directions=ALL_DIRECTIONS, scale=0.05)
    ref = loss_and_grad(q, docs, config)
    got = adapter("mnrl_bfloat16").embeddings(EmbeddingCase(q, docs, config))
    np.testing.assert_allclose(
        ref.grad_queries[:, 0], [-3.62441956e06, -3.62441956e06, 1.66666667e10], rtol=1e-8
    )
    np.testing.assert_array_equal(got.grad_queries[:2, 0], [-(2.0**23), -(2.0**23)])
    claimed = context("mnrl_bfloat16")
    claimed.close(
        got.grad_queries,
        ref.grad_queries,
        embedding_bounds(q, docs, config, claimed.compute_dtype).grad_queries,
        quantity="grad_queries",
        clause="GRAD-1",
    )
    mixed = Context(load_adapter(f"{MODULE}:mnrl_bfloat16"))
    mixed.loaded.capabilities = mixed.caps.with_(compute_dtype="float32")
    with pytest.raises(ConformanceFailure, match=r"grad_queries: 2 of 3 elements out of tolerance"):
        mixed.close(
            got.grad_queries,
            ref.grad_queries,
            embedding_bounds(q, docs, config, mixed.compute_dtype).grad_queries,
            quantity="grad_queries",
            clause="GRAD-1",
        )
    f32 = adapter("mnrl_float32").embeddings(EmbeddingCase(q, docs, config))  # float32 throughout: fine
    np.testing.assert_allclose(f32.grad_queries, ref.grad_queries, rtol=1e-3)


DOC = Path(__file__).resolve().parents[1] / "docs" / "sentence-transformers.md"
DOC_BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S) if DOC.is_file() else []


def test_the_findings_document_has_its_reproducers() -> None:
    """A renamed or emptied document fails here instead of collecting no reproducer below."""
    assert DOC.is_file(), f"{DOC} is missing: its reproducers cannot run"
    assert DOC_BLOCKS, f"{DOC} has no ```python reproducer"


@pytest.mark.parametrize("number", range(len(DOC_BLOCKS)))
def test_documented_findings_reproduce(number: int) -> None:
    """The reproducers of docs/sentence-transformers.md run as written and their asserts hold."""
    code = DOC_BLOCKS[number]
    exec(
        compile(code, f"docs/sentence-transformers.md example {number}", "exec"), {"__name__": f"doc{number}"}
    )


def test_direction_order_and_repeats_are_passed_through_unchanged() -> None:
    """DIR-2: the library receives the directions as the suite gives them (any order, repeats)."""
    from infonce_spec.conformance.cases import config_with_directions

    q, docs = inputs(4, 2, 3, "float64")
    config = Config(directions=ALL_DIRECTIONS, hardness_mode="all_negatives", hardness_strength=2.0)
    shuffled = config_with_directions(
        config, ("doc_to_doc", "query_to_doc", "doc_to_query", "query_to_query", "doc_to_doc")
    )
    loss_fn = adapter("mnrl").make_loss(None, shuffled)
    assert loss_fn.directions == shuffled.directions
    a = adapter("mnrl").embeddings(EmbeddingCase(q, docs, shuffled))
    assert (
        abs(a.loss - loss_and_grad(q, docs, config).loss) <= embedding_bounds(q, docs, config, "float64").loss
    )


def _encoder_case(
    n: int, k: int, d: int, config: Config, dtype: str, m: int | None, steps: int = 1
) -> EncoderCase:
    rng = np.random.default_rng(n * 100 + k * 10 + d)
    f = 5
    weight = round_to_dtype(rng.normal(size=(d, f)), dtype)
    upstreams = (1.0, -0.5, 2.0)[:steps]
    return EncoderCase(
        weight=weight,
        steps=tuple(
            EncoderStep(
                round_to_dtype(rng.normal(size=(n, f)), dtype),
                round_to_dtype(rng.normal(size=(k, n, f)), dtype),
                c,
            )
            for c in upstreams
        ),
        config=config,
        mini_batch_size=m,
    )


@pytest.mark.parametrize("name", ["mnrl", "cached_mnrl", "cached_mnrl_float32", "cached_mnrl_bfloat16"])
@pytest.mark.parametrize(("n", "k", "d", "config"), CASES[:4], ids=IDS[:4])
def test_encoder_equals_the_closed_form(name: str, n: int, k: int, d: int, config: Config) -> None:
    """GRAD-1 through ``forward(sentence_features, labels)``; CACHE-1 for m = 1 .. N+2 (cached)."""
    ctx = context(name)
    sizes = [None, 1, 2, n, n + 2] if ctx.caps.cached else [None]
    for m in sizes:
        case = _encoder_case(n, k, d, config, ctx.dtype, m)
        (step,) = case.steps
        out = ctx.adapter.encoder(case)
        exp = linear_encoder_grad(step.x_queries, step.x_docs, case.weight, config)
        bounds, g_bound = encoder_bounds(
            step.x_queries, step.x_docs, case.weight, config, ctx.compute_dtype, encoder_dtype=ctx.dtype
        )
        clause = "CACHE-1" if m is not None else "GRAD-1"
        ctx.close(out.losses[0], exp.loss, bounds.loss, quantity=f"{name} m={m} loss", clause=clause)
        ctx.close(
            out.grad_weight, exp.grad_weight, g_bound, quantity=f"{name} m={m} grad_weight", clause=clause
        )


@pytest.mark.parametrize("m", [1, 2, 3, 7])
def test_cached_is_reentrant_and_linear_in_the_upstream(m: int) -> None:
    """CACHE-2, CACHE-4: forwards of three steps, then their backwards, with upstreams 1, -0.5, 2."""
    config = CASES[1][3]
    cached = adapter("cached_mnrl").encoder(_encoder_case(5, 2, 4, config, "float64", m, steps=3))
    uncached = adapter("mnrl").encoder(_encoder_case(5, 2, 4, config, "float64", None, steps=3))
    np.testing.assert_allclose(cached.losses, uncached.losses, rtol=1e-12, err_msg=f"[CACHE-4] losses, m={m}")
    scale = np.abs(uncached.grad_weight).max()
    np.testing.assert_allclose(
        cached.grad_weight,
        uncached.grad_weight,
        atol=1e-12 * scale,
        rtol=0,
        err_msg=f"[CACHE-4] grad_weight, m={m}",
    )


def _dropout(name: str, m: int | None, seed: int) -> tuple[float, np.ndarray]:
    rng = np.random.default_rng(3)
    config = Config(
        directions=("query_to_doc", "doc_to_query"), hardness_mode="in_batch_negatives", hardness_strength=2.0
    )
    case = DropoutCase(
        weight=rng.normal(size=(4, 6)),
        x_queries=rng.normal(size=(5, 6)),
        x_docs=rng.normal(size=(2, 5, 6)),
        config=config,
        p=0.5,
        seed=seed,
        mini_batch_size=m,
    )
    out = adapter(name).dropout_encoder(case)
    return out.losses[0], np.asarray(out.grad_weight)


@pytest.mark.parametrize("m", [1, 2, 4, 6])
def test_dropout_is_replayed_by_the_cached_loss(m: int) -> None:
    """CACHE-3: RandContext makes the gradient forward draw the first forward's masks."""
    loss_u, grad_u = _dropout("cached_mnrl", None, seed=11)
    loss_c, grad_c = _dropout("cached_mnrl", m, seed=11)
    assert abs(loss_c - loss_u) <= 1e-12 * abs(loss_u), (
        f"[CACHE-3] m={m}: loss {loss_c!r} vs uncached {loss_u!r}"
    )
    np.testing.assert_allclose(
        grad_c, grad_u, atol=1e-12 * np.abs(grad_u).max(), rtol=0, err_msg=f"[CACHE-3] m={m}"
    )


def test_dropout_is_active() -> None:
    """The CACHE-3 check has teeth: another seed draws other masks (and mnrl runs the same path)."""
    loss_a, grad_a = _dropout("cached_mnrl", 2, seed=11)
    loss_b, _ = _dropout("cached_mnrl", 2, seed=12)
    assert abs(loss_a - loss_b) > 1e-3
    loss_u, grad_u = _dropout("mnrl", None, seed=11)
    assert abs(loss_u - loss_a) <= 1e-12 * abs(loss_u)
    np.testing.assert_allclose(grad_a, grad_u, atol=1e-12 * np.abs(grad_u).max(), rtol=0)


def test_stand_in_model_is_called_once_per_column_in_order() -> None:
    """The DropoutCase contract (queries, then each document column) holds for the library's
    ``embed_columns``: features without ``input_ids`` are never merged across columns."""
    import torch

    from infonce_spec.adapters.sentence_transformers import LinearEmbedding, TinySentenceEncoder

    seen: list[float] = []
    layer = LinearEmbedding(torch.eye(2, dtype=torch.float64))
    layer.register_forward_pre_hook(lambda _m, args: seen.append(float(args[0]["x"][0, 0])))
    loss_fn = adapter("mnrl").make_loss(TinySentenceEncoder(layer), Config())
    cols = [
        torch.full((3, 2), float(i), dtype=torch.float64) + torch.eye(3, 2, dtype=torch.float64)
        for i in range(4)
    ]
    loss_fn([{"x": c} for c in cols], None)
    assert seen == [1.0, 2.0, 3.0, 4.0]


# ------------------------------------------------------------------------------------------- end to end


E2E = ("mnrl", "cached_mnrl")


@pytest.fixture(scope="module")
def suite_report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One ``infonce-conformance run --adapter ...:mnrl --adapter ...:cached_mnrl --profile quick
    --world-sizes 1,2``: the command line's ``main``, called in this process, which has imported
    sentence-transformers already (a new process would import it again, seconds of CPU), inside the
    session's ``shared_forkserver`` block; what the run computes and checks is unchanged."""
    from infonce_spec.conformance import cli

    tmp = tmp_path_factory.mktemp("st-conformance")
    out = tmp / "report.json"
    args = ["run", *(a for name in E2E for a in ("--adapter", f"{MODULE}:{name}"))]
    args += ["--profile", "quick", "--world-sizes", "1,2", "--no-progress", "--json", str(out)]
    args += ["--reproducers", str(tmp / "failures")]
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        returncode = cli.main(args)
    report = json.loads(out.read_text()) if out.exists() else {}
    report["returncode"], report["output"] = (
        returncode,
        f"{stdout.getvalue()[-4000:]}\n{stderr.getvalue()[-2000:]}",
    )
    return report


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("name", E2E)
def test_conformance_suite_passes_end_to_end(name: str, suite_report: dict) -> None:
    """``infonce-conformance run --adapter ...:<name> --profile quick`` exits 0; what is skipped is
    exactly what is not claimed (dL/dscale, input validation, the per_anchor partition of PART-5,
    which sentence-transformers 6.2.0 does not have; caching for mnrl)."""
    assert suite_report["returncode"] == 0, f"infonce-conformance run failed:\n{suite_report['output']}"
    (entry,) = [r for r in suite_report["reports"] if r["adapter"] == f"{MODULE}:{name}"]
    assert entry["ok"] is True
    status = {(r["property"], r["world_size"]): r["status"] for r in entry["properties"]}
    assert all(s in ("pass", "not claimed") for s in status.values()), status
    unclaimed = {"grad_scale", "validates_inputs", "partition_mode 'per_anchor'"}
    unclaimed |= {"cached"} if name == "mnrl" else set()
    reasons = {r["property"]: r["reason"] for r in entry["properties"] if r["status"] == "not claimed"}
    for prop, reason in reasons.items():
        pattern = rf"needs ({'|'.join(map(re.escape, unclaimed))})(?!\w)"
        assert re.match(pattern, reason), f"{prop} skipped for {reason!r}"
    assert {"reference/grad_scale", "validation/invalid_inputs", "reference/per_anchor"} <= set(reasons)
    assert ("cached/rng_replay" in reasons) is (name == "mnrl")
    assert {w for (p, w), s in status.items() if p.startswith("data_parallel/") and s == "pass"} == {1, 2}
