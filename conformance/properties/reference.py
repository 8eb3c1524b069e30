"""Chapter "reference equality": loss and every gradient equal the exact reference within the tolerance model.

One property per feature, so that a failure lands on the clause that owns it: the plain
``query_to_doc`` loss (QD-*, SIM-*, SCALE-1, LOSS-1, GRAD-1), each extra direction with its mask
(QQ-1/MASK-QQ-1, DQ-1, DD-1/MASK-DD-*), per-direction partitioning (PART-3), hardness (HARD-2 ..
HARD-5), dL/dscale (SCALE-2), and every claimed option at once (PART-2, DIR-1).
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..protocol import Capabilities
from .base import Context, Property, claims
from .checks import draw_embedding_case, reference_check

__all__ = [
    "AllOptions",
    "DocToDoc",
    "DocToQuery",
    "GradScale",
    "Hardness",
    "PerAnchor",
    "PerDirection",
    "QueryToDoc",
    "QueryToQuery",
]


class _ReferenceEquality(Property):
    """Reference equality on a family of configs fixed by ``fixed``."""

    fixed: ClassVar[dict[str, Any]] = {}
    needs_directions: ClassVar[tuple[str, ...]] = ()
    needs_partition: ClassVar[str | None] = None
    needs_hardness: ClassVar[bool] = False
    min_k: ClassVar[int] = 1
    #: The features of the premise ladder (:mod:`.checks`) this property checks itself: a case wrong
    #: already in a simpler variant with another feature is that feature's failure, not this one's.
    owns: ClassVar[tuple[str, ...]] = ()

    def requires(self, caps: Capabilities) -> str | None:
        if self.needs_hardness and not caps.hardness_modes:
            return "a hardness mode"
        return claims(
            caps,
            directions=self.needs_directions,
            partition_mode=self.needs_partition,
            min_k=self.min_k,
            fixed=self.fixed,
        )

    def draw(self, data: Any, ctx: Context) -> dict[str, Any]:
        return draw_embedding_case(data, ctx, config=dict(self.fixed), min_k=self.min_k)

    def check(self, case: dict[str, Any], ctx: Context) -> None:
        reference_check(case, ctx, self.clause, owns=self.owns)


class QueryToDoc(_ReferenceEquality):
    name = "reference/query_to_doc"
    clauses = ("QD-1", "QD-2", "SIM-1", "SIM-2", "SCALE-1", "LOSS-1", "GRAD-1")
    summary = "query_to_doc loss and gradients (both similarities, any scale) equal the reference"
    owns = ("query_to_doc",)
    fixed: ClassVar[dict[str, Any]] = {
        "directions": ("query_to_doc",),
        "partition_mode": "joint",
        "hardness": False,
    }

    def checked_clauses(self, caps: Capabilities) -> tuple[str, ...]:
        """SIM-1 / SIM-2 only where cos / dot is claimed (the configs are drawn from the claims)."""
        needs = {"SIM-1": "cos", "SIM-2": "dot"}
        return tuple(c for c in self.clauses if c not in needs or needs[c] in caps.similarities)


class QueryToQuery(_ReferenceEquality):
    name = "reference/query_to_query"
    clauses = ("QQ-1", "MASK-QQ-1", "PART-2")
    summary = "query_to_query rows (self excluded) equal the reference"
    owns = ("query_to_query",)
    fixed: ClassVar[dict[str, Any]] = {
        "directions": ("query_to_doc", "query_to_query"),
        "partition_mode": "joint",
        "hardness": False,
    }
    needs_directions = ("query_to_query",)


class DocToQuery(_ReferenceEquality):
    name = "reference/doc_to_query"
    clauses = ("DQ-1",)
    summary = "doc_to_query rows (own query kept) equal the reference, joint and per_direction"
    owns = ("doc_to_query",)
    fixed: ClassVar[dict[str, Any]] = {"directions": ("query_to_doc", "doc_to_query"), "hardness": False}
    needs_directions = ("doc_to_query",)


class DocToDoc(_ReferenceEquality):
    name = "reference/doc_to_doc"
    clauses = ("DD-1", "MASK-DD-1", "MASK-DD-2", "ROW-1")
    summary = "doc_to_doc rows (all own documents excluded, hard negatives never rows) equal the reference"
    owns = ("doc_to_doc",)
    fixed: ClassVar[dict[str, Any]] = {
        "directions": ("query_to_doc", "doc_to_doc"),
        "partition_mode": "joint",
        "hardness": False,
    }
    needs_directions = ("doc_to_doc",)


class PerDirection(_ReferenceEquality):
    name = "reference/per_direction"
    clauses = ("PART-3", "PART-4")
    summary = "per_direction partitioning (mean of per-direction log-partitions) equals the reference"
    owns = ("per_direction",)
    fixed: ClassVar[dict[str, Any]] = {"partition_mode": "per_direction"}
    needs_partition = "per_direction"

    def draw(self, data: Any, ctx: Context) -> dict[str, Any]:
        from hypothesis import strategies as st

        options = [("query_to_doc",)]
        if "doc_to_query" in ctx.caps.directions:
            options.append(("query_to_doc", "doc_to_query"))
        options = [o for o in options if ctx.caps.find_shapes(directions=o, partition_mode="per_direction")]
        directions = data.draw(st.sampled_from(options), label="directions")
        return draw_embedding_case(
            data, ctx, config={"partition_mode": "per_direction", "directions": directions}
        )


class PerAnchor(_ReferenceEquality):
    name = "reference/per_anchor"
    clauses = ("PART-5", "PART-6")
    summary = (
        "per_anchor partitioning (one log-partition per row vector, SimCLR NT-Xent) equals the reference"
    )
    owns = ("per_anchor",)
    fixed: ClassVar[dict[str, Any]] = {"partition_mode": "per_anchor"}
    needs_partition = "per_anchor"

    def draw(self, data: Any, ctx: Context) -> dict[str, Any]:
        """A claimed direction set that PART-6 allows (doc_to_doc only with doc_to_query)."""
        from itertools import combinations

        from hypothesis import strategies as st

        from infonce_spec.vocabulary import DIRECTIONS, groups_without_positive

        extra = [d for d in DIRECTIONS[1:] if d in ctx.caps.directions]
        options = [
            ("query_to_doc", *rest)
            for r in range(len(extra) + 1)
            for rest in combinations(extra, r)
            if not groups_without_positive("per_anchor", ("query_to_doc", *rest))
            and ctx.caps.find_shapes(directions=("query_to_doc", *rest), partition_mode="per_anchor")
        ]
        directions = data.draw(st.sampled_from(options), label="directions")
        return draw_embedding_case(
            data, ctx, config={"partition_mode": "per_anchor", "directions": directions}
        )


class Hardness(_ReferenceEquality):
    name = "reference/hardness"
    clauses = ("HARD-2", "HARD-3", "HARD-4", "HARD-5")
    summary = (
        "hardness-weighted logits (alpha*s, unscaled, stop-gradient, positive exempt) equal the reference"
    )
    fixed: ClassVar[dict[str, Any]] = {"hardness": True}
    needs_hardness = True

    def check(self, case: dict[str, Any], ctx: Context) -> None:
        """Loss wrong: HARD-2 unless the probes of :func:`.hardness.diagnose` name HARD-3 / HARD-4;
        loss right and a gradient wrong: HARD-5."""
        from .hardness import hardness_check

        hardness_check(case, ctx, self.clause)


class AllOptions(_ReferenceEquality):
    name = "reference/all_options"
    clauses = ("PART-2", "LOSS-1", "GRAD-1")
    summary = "every claimed combination of directions, partition, similarity, hardness equals the reference"
    owns = ("combination",)

    def checked_clauses(self, caps: Capabilities) -> tuple[str, ...]:
        """The clauses of every claimed configuration (rows, masks, partition, similarity, hardness),
        as a golden vector of that configuration lists them: ``run`` and ``verify`` agree."""
        from ..evidence import configuration_clauses

        return tuple(dict.fromkeys((*self.clauses, *configuration_clauses(caps))))


class GradScale(_ReferenceEquality):
    name = "reference/grad_scale"
    clauses = ("SCALE-2",)
    summary = "dL/dscale equals the reference"

    def requires(self, caps: Capabilities) -> str | None:
        return None if caps.grad_scale else "grad_scale (dL/dscale)"

    def check(self, case: dict[str, Any], ctx: Context) -> None:
        reference_check(case, ctx, self.clause, scale_grad=True)
