"""Capabilities: what is not claimed is reported as such; strategies reach the corners; the protocol checks itself."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import find, settings

from infonce_spec.adapters.bundled import TorchAdapter
from infonce_spec.conformance import Capabilities, load_adapter
from infonce_spec.conformance.cases import load_case, save_case
from infonce_spec.conformance.properties.base import properties
from infonce_spec.conformance.protocol import LoadedAdapter
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
