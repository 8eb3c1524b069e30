"""Capabilities: what is not claimed is reported as such; strategies reach the corners; the protocol checks itself."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import find, given, settings
from hypothesis.errors import Unsatisfiable

from infonce_spec.adapters.bundled import TorchAdapter
from infonce_spec.conformance import Capabilities, load_adapter
from infonce_spec.conformance.cases import load_case, save_case
from infonce_spec.conformance.properties.base import properties
from infonce_spec.conformance.protocol import (
    LoadedAdapter,
    clip_like,
    every_combination,
    infonce,
    nt_xent,
)
from infonce_spec.conformance.runner import run_adapter
from infonce_spec.conformance.strategies import batches, configs
from infonce_spec.reference import Config
from infonce_spec.vocabulary import (
    DIRECTIONS,
    HARDNESS_MODES,
    PARTITION_MODES,
    REQUIRED_DIRECTION,
    SIMILARITIES,
)


class PlainInfoNCE(TorchAdapter):
    """Claims only the classic loss: query_to_doc, joint, cos, no hardness, K = 1."""

    def __init__(self) -> None:
        super().__init__("plain")
        self.capabilities = Capabilities(
            name="plain",
            directions=frozenset({"query_to_doc"}),
            partition_modes=frozenset({"joint"}),
            similarities=frozenset({"cos"}),
            hardness_modes=frozenset(),
            max_k=1,
        )


def test_unclaimed_capabilities_are_reported_as_not_claimed() -> None:
    rep = run_adapter(
        LoadedAdapter("plain", PlainInfoNCE()), profile="quick", world_sizes=(2,), reproducer_dir=None
    )
    assert rep.ok
    verdicts = {c: v for c, _, v, _ in rep.clause_verdicts()}
    for clause in (
        "QQ-1",
        "MASK-QQ-1",
        "DQ-1",
        "DD-1",
        "MASK-DD-2",
        "HARD-2",
        "PART-3",
        "SCALE-2",
        "CACHE-1",
        "DP-3",
        "VAL-1",
        "GRAD-2",
        "SIM-2",
    ):
        assert verdicts[clause] == "not claimed", clause
    for clause in ("QD-1", "QD-2", "SIM-1", "LOSS-2", "DIR-2", "NUM-1", "GRAD-3"):
        assert verdicts[clause].startswith("pass"), clause
    assert verdicts["LAYOUT-5"] == "not checked"
    reasons = {r.property: r.reason for r in rep.results if r.status == "not claimed"}
    assert reasons["masks/query_to_query_self"] == "needs directions ['query_to_query']"
    assert reasons["invariance/hard_negative_order"] == "needs K >= 3 (max_k = 1)"
    assert reasons["data_parallel/embeddings"] == "needs data_parallel"
    assert not [r for r in rep.results if r.status == "pass" and r.examples == 0]


def test_capabilities_are_validated() -> None:
    with pytest.raises(ValueError, match="unknown names"):
        Capabilities(name="x", directions=frozenset({"query_to_doc", "doc_to_docs"}))
    with pytest.raises(ValueError, match="query_to_doc"):
        Capabilities(name="x", directions=frozenset({"doc_to_query"}))
    with pytest.raises(ValueError, match="encoder"):
        Capabilities(name="x", cached=True)
    with pytest.raises(ValueError, match="dtype"):
        Capabilities(name="x", dtype="float8")
    caps = Capabilities(name="x", similarities=frozenset({"cos"}))
    assert caps.claims_config(Config(similarity="dot")) == "similarity 'dot'"
    assert caps.claims_config(Config()) is None


def _every_config() -> list[Config]:
    """Every valid configuration the vocabulary spells (directions x partition x similarity x hardness)."""
    found = []
    for extra in itertools.product((False, True), repeat=len(DIRECTIONS) - 1):
        directions = (REQUIRED_DIRECTION, *(d for d, on in zip(DIRECTIONS[1:], extra, strict=True) if on))
        for mode, similarity, hardness in itertools.product(
            PARTITION_MODES, SIMILARITIES, (None, *HARDNESS_MODES)
        ):
            try:
                found.append(
                    Config(
                        directions=directions,
                        partition_mode=mode,
                        similarity=similarity,
                        hardness_mode=hardness,
                        hardness_strength=1.0 if hardness else 0.0,
                    )
                )
            except ValueError:  # per_direction with a direction it is not defined for (PART-4)
                pass
    return found


def test_nothing_is_claimed_by_default_beyond_the_minimal_configuration() -> None:
    """A name the spec adds is never claimed by an adapter written before it: without explicit claims,
    the one configuration claimed is the spec's default Config() (query_to_doc, joint, cos, no
    hardness), at any scale."""
    bare = Capabilities(name="bare")
    claimed = [c for c in _every_config() if bare.claims_config(c) is None]
    assert claimed == [Config()]
    assert bare.claims_config(Config(scale=1.0)) is None
    assert bare.claims_config(Config(hardness_mode="hard_negatives", hardness_strength=0.0)) is None  # HARD-6
    assert bare.claims_config(Config(similarity="dot")) == "similarity 'dot'"
    assert (
        bare.claims_config(Config(directions=("query_to_doc", "doc_to_query")))
        == "directions ['doc_to_query']"
    )
    unclaimed = {p.name for p in properties() if p.requires(bare) is not None}
    assert {"reference/doc_to_doc", "reference/per_direction", "reference/hardness"} <= unclaimed


@pytest.mark.parametrize(
    "spec",
    [
        "infonce_spec.adapters.bundled:uncached",
        "infonce_spec.adapters.bundled:cached_bfloat16",
        "infonce_spec.adapters.bundled:data_parallel",
        "infonce_spec.conformance.mutants.adapter:TorchAdapter",
    ],
)
def test_our_adapters_claim_every_name_explicitly(spec: str) -> None:
    """The bundled and mutant adapters implement every name of the spec and say so."""
    caps = load_adapter(spec).capabilities
    assert all(caps.claims_config(c) is None for c in _every_config())


def test_claimed_levels_need_their_methods() -> None:
    class NoEncoder:
        capabilities = Capabilities(name="x", encoder=True)

        def embeddings(self, case):  # type: ignore[no-untyped-def]
            raise NotImplementedError

    with pytest.raises(TypeError, match="claims encoder but has no encoder"):
        LoadedAdapter("x", NoEncoder())
    with pytest.raises(ValueError, match=r"package\.module:attribute"):
        load_adapter("no_colon")
    assert load_adapter("infonce_spec.adapters.bundled:cached").capabilities.cached


def test_strategies_reach_the_corners() -> None:
    quick = settings(max_examples=2000, database=None)
    q, d = find(batches(), lambda b: b[0].shape == (1, 1) and b[1].shape[0] == 1, settings=quick)
    assert q.shape == (1, 1) and d.shape == (1, 1, 1)
    q, d = find(batches(), lambda b: bool(np.any(np.linalg.norm(b[0], axis=1) == 0)), settings=quick)
    q, d = find(
        batches(),
        lambda b: bool(np.any((np.linalg.norm(b[1], axis=-1) > 0) & (np.linalg.norm(b[1], axis=-1) < 1e-12))),
        settings=quick,
    )
    q, d = find(
        batches(),
        lambda b: (
            len(b[0]) > 1
            and bool(np.any(np.all(b[0][:1] == b[1][0, 1:], axis=1)) & (np.abs(b[0][0]).sum() > 0))
        ),
        settings=quick,
    )
    c = find(configs(), lambda c: c.scale >= 999.0 and c.hardness_active, settings=quick)
    assert c.scale <= 1e3


def test_reproducers_round_trip_exactly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from infonce_spec.conformance.cases import config_with_directions

    config = config_with_directions(
        Config(directions=("query_to_doc", "doc_to_query")), ("doc_to_query", "query_to_doc")
    )
    case = {
        "queries": np.array([[1.0, 2.0]]),
        "docs": np.zeros((1, 1, 2)),
        "config": config,
        "p": 0.5,
        "mini_batch_size": None,
        "given": ("a", "b"),
    }
    path = save_case(tmp_path / "c.npz", case, {"property": "x"})
    back, meta = load_case(path)
    assert meta == {"property": "x"}
    assert back["config"].directions == ("doc_to_query", "query_to_doc")
    assert back["p"] == 0.5 and back["mini_batch_size"] is None and back["given"] == ("a", "b")
    np.testing.assert_array_equal(back["queries"], case["queries"])


# -- exact claims: Capabilities.configurations -------------------------------------------------------------


def test_exact_claims_are_validated_against_the_spec() -> None:
    """Each claimed pair is a configuration of the spec, named in its words (DIR-1, PART-1, PART-4,
    PART-6); directions and partition_modes are derived and may not say otherwise."""
    qd = ("query_to_doc",)
    with pytest.raises(ValueError, match="unknown directions"):
        Capabilities(name="x", configurations=frozenset({(("query_to_doc", "doc_to_docs"), "joint")}))
    with pytest.raises(ValueError, match=r"DIR-1"):
        Capabilities(name="x", configurations=frozenset({(("doc_to_query",), "joint")}))
    with pytest.raises(ValueError, match=r"PART-1"):
        Capabilities(name="x", configurations=frozenset({(qd, "grouped")}))
    with pytest.raises(ValueError, match=r"PART-4"):
        Capabilities(
            name="x", configurations=frozenset({(("query_to_doc", "query_to_query"), "per_direction")})
        )
    with pytest.raises(ValueError, match=r"PART-6"):
        Capabilities(name="x", configurations=frozenset({(("query_to_doc", "doc_to_doc"), "per_anchor")}))
    with pytest.raises(ValueError, match="empty"):
        Capabilities(name="x", configurations=frozenset())
    with pytest.raises(TypeError, match="string"):
        Capabilities(name="x", configurations=frozenset({("query_to_doc", "joint")}))
    with pytest.raises(ValueError, match="contradicts configurations"):
        Capabilities(
            name="x",
            directions=frozenset({"query_to_doc", "query_to_query"}),
            configurations=clip_like(),
        )
    caps = Capabilities(name="x", configurations=[(["doc_to_query", "query_to_doc"], "per_direction")])
    assert caps.configurations == clip_like()  # any iterable, any order: canonical pairs
    assert caps.directions == {"query_to_doc", "doc_to_query"}
    assert caps.partition_modes == {"per_direction"}


def _claimed(caps: Capabilities) -> set[tuple[frozenset[str], str]]:
    """The (directions, partition_mode) pairs of every valid configuration that ``caps`` claims."""
    return {
        (frozenset(c.directions), c.partition_mode) for c in _every_config() if caps.claims_config(c) is None
    }


def test_exact_claims_claim_exactly_their_pairs() -> None:
    """What directions x partition_modes cannot say: per_direction {qd, dq} and {qd} alone, but not
    joint {qd, dq} (a CLIP loss; MultipleNegativesSymmetricRankingLoss); joint only for {qd}."""
    qd, qd_dq = frozenset({"query_to_doc"}), frozenset({"query_to_doc", "doc_to_query"})
    clip = Capabilities(name="clip", configurations=clip_like() | infonce())
    assert _claimed(clip) == {(qd_dq, "per_direction"), (qd, "joint")}
    reason = clip.claims_config(Config(directions=("doc_to_query", "query_to_doc")))
    assert reason is not None and reason.startswith("configuration query_to_doc+doc_to_query/joint")
    only_clip = Capabilities(name="clip", configurations=clip_like())
    assert only_clip.claims_config(Config()) is not None  # not even the minimal configuration
    simclr = Capabilities(name="simclr", configurations=nt_xent())
    assert _claimed(simclr) == {(frozenset(DIRECTIONS), "per_anchor")}
    # Similarity and hardness stay claims of their own, on top of the pair.
    assert clip.claims_config(Config(similarity="dot")) == "similarity 'dot'"


def test_without_exact_claims_the_pairs_are_every_valid_combination() -> None:
    caps = Capabilities(
        name="x", directions=frozenset(DIRECTIONS), partition_modes=frozenset(PARTITION_MODES)
    )
    assert set(caps.shapes()) == every_combination(DIRECTIONS, PARTITION_MODES)
    assert caps.unclaimed_shapes() == ()
    assert len(caps.shapes()) == 16  # 8 joint, 2 per_direction (PART-4), 6 per_anchor (PART-6)
    assert caps.shapes()[0] == (("query_to_doc",), "joint")  # simplest first: shrinking reaches it
    bare = Capabilities(name="bare")
    assert bare.shapes() == ((("query_to_doc",), "joint"),)
    assert len(bare.unclaimed_shapes()) == 15
    assert Capabilities(name="x", configurations=bare.shapes()).claims_config(Config()) is None


@pytest.mark.parametrize(
    "pairs", [clip_like(), nt_xent(), clip_like() | infonce(), every_combination(DIRECTIONS, ("joint",))]
)
def test_the_strategies_draw_only_claimed_pairs_and_reach_each(pairs: frozenset) -> None:  # type: ignore[type-arg]
    caps = Capabilities(name="x", configurations=pairs)
    seen: set[tuple[tuple[str, ...], str]] = set()

    @settings(max_examples=60, database=None, derandomize=True)
    @given(configs(caps))
    def drawn(config: Config) -> None:
        assert caps.claims_config(config) is None, config
        seen.add((config.directions, config.partition_mode))

    drawn()
    assert seen == set(caps.shapes())
    with pytest.raises(Unsatisfiable):  # a fixed pair that is not claimed is never drawn
        find(configs(caps, directions=("query_to_doc", "query_to_query"), partition_mode="per_anchor"), bool)


def test_properties_that_fix_a_configuration_are_not_claimed_without_it() -> None:
    """requires() of a property that fixes directions or a partition asks the exact claim (claims())."""
    clip = Capabilities(name="clip", configurations=clip_like(), max_k=1)
    reasons = {p.name: p.requires(clip) for p in properties()}
    assert reasons["reference/query_to_doc"] == "a configuration query_to_doc/joint"
    assert reasons["reference/per_direction"] is None
    assert reasons["reference/doc_to_query"] is None  # drawn as the claimed per_direction pair
    assert reasons["reference/all_options"] is None
    assert reasons["masks/doc_to_doc_own_positive"] is not None
    simclr = Capabilities(name="simclr", configurations=nt_xent(), max_k=1)
    reasons = {p.name: p.requires(simclr) for p in properties()}
    assert reasons["reference/per_anchor"] is None
    assert reasons["reference/query_to_query"] == "a configuration query_to_doc+query_to_query/joint"
    assert reasons["reference/per_direction"] == "partition_mode 'per_direction'"


class ClipOnly(TorchAdapter):
    """Claims exactly CLIP's symmetric loss (per_direction {qd, dq}, K = 1) and refuses any other
    configuration, so that a call outside the claim fails the run."""

    def __init__(self) -> None:
        super().__init__("clip-only")
        self.capabilities = Capabilities(
            name="clip-only", configurations=clip_like(), similarities=frozenset({"cos", "dot"}), max_k=1
        )

    def embeddings(self, case):  # type: ignore[no-untyped-def]
        reason = self.capabilities.claims_config(case.config)
        if reason is not None:
            raise AssertionError(f"called outside the claim: {reason}")
        return super().embeddings(case)


class ClipJoint(ClipOnly):
    """Claims the per_direction pair but computes joint: PART-3 is the root, found without ever
    calling the unclaimed joint rung of the premise ladder."""

    def embeddings(self, case):  # type: ignore[no-untyped-def]
        from dataclasses import replace

        from infonce_spec.conformance.protocol import EmbeddingCase

        wrong = replace(case.config, partition_mode="joint")
        if self.capabilities.claims_config(case.config) is not None:
            raise AssertionError("called outside the claim")
        return TorchAdapter.embeddings(self, EmbeddingCase(case.queries, case.docs, wrong))


def test_a_run_draws_only_claimed_configurations_and_reports_the_others(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from infonce_spec.conformance.report import to_json, to_markdown

    rep = run_adapter(LoadedAdapter("clip", ClipOnly()), profile="quick", world_sizes=(), reproducer_dir=None)
    assert rep.ok, [r.failure for r in rep.results if r.failure]
    status = {r.property: r.status for r in rep.results}
    assert status["reference/per_direction"] == "pass"
    assert status["reference/query_to_doc"] == "not claimed"
    caps_json = to_json([rep])["reports"][0]["capabilities"]
    assert caps_json["configurations"] == [[["query_to_doc", "doc_to_query"], "per_direction"]]
    assert [["query_to_doc"], "joint"] in caps_json["unclaimed_configurations"]
    assert len(caps_json["unclaimed_configurations"]) == 15
    md = to_markdown([rep])
    assert (
        "configurations exactly query_to_doc+doc_to_query/per_direction; not claimed: query_to_doc/joint"
        in md
    )

    bad = run_adapter(
        LoadedAdapter("clip-joint", ClipJoint()), profile="quick", world_sizes=(), reproducer_dir=None
    )
    assert not bad.ok
    assert [c.clause for c in bad.diagnosis.roots] == ["PART-3"]
    assert not [r for r in bad.results if r.status == "adapter fault"]  # no call outside the claim
