"""What a property is, the registry, and the context that calls the adapter.

A :class:`Property` has a name (``chapter/what``), the clauses it checks (the first is the one a
failure is filed under), a one-line summary, a level (``embeddings``, ``encoder``,
``data_parallel``), :meth:`Property.requires` (the capability it needs, or ``None``),
:meth:`Property.draw` (labelled hypothesis draws -> a case dict) and :meth:`Property.check` (case ->
pass, or :class:`~infonce_spec.conformance.compare.ConformanceFailure`). ``check`` is
deterministic given the case, which is what makes a stored case a reproducer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from infonce_spec.reference import Config

from ..compare import AdapterFault, check_close
from ..isolation import IsolatedAdapter, Returned, check_result_dtypes, isolated
from ..protocol import Capabilities, EmbeddingCase, LoadedAdapter
from ..tolerances import OUTPUT_ROUNDING, UNIT_ROUNDOFF, Bounds

__all__ = ["REGISTRY", "Context", "Outputs", "Property", "claims", "properties"]

REGISTRY: dict[str, type[Property]] = {}
#: The chapter modules, in report order.
CHAPTERS = (
    "reference",
    "hardness",
    "invariances",
    "masks",
    "numerics",
    "validation",
    "cached",
    "data_parallel",
)


class Property:
    """Base class; subclasses register themselves by ``name``."""

    name: ClassVar[str] = ""
    clauses: ClassVar[tuple[str, ...]] = ()
    summary: ClassVar[str] = ""
    level: ClassVar[str] = "embeddings"
    #: Multiplier of the profile's example budget (expensive properties use fewer).
    weight: ClassVar[float] = 1.0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            if cls.name in REGISTRY:
                raise ValueError(f"duplicate property {cls.name}")
            REGISTRY[cls.name] = cls

    @property
    def clause(self) -> str:
        return self.clauses[0]

    def requires(self, caps: Capabilities) -> str | None:
        """``None`` if ``caps`` claims what this property checks, else what is missing."""
        return None

    def checked_clauses(self, caps: Capabilities) -> tuple[str, ...]:
        """The clauses a run against ``caps`` actually exercises (default: all of :attr:`clauses`)."""
        return self.clauses

    def draw(self, data: Any, ctx: Context) -> dict[str, Any]:
        raise NotImplementedError

    def check(self, case: dict[str, Any], ctx: Context) -> None:
        raise NotImplementedError


def properties() -> list[Property]:
    """Every registered property, in registration (= chapter) order."""
    from . import (  # noqa: F401 - registration by import, in chapter order
        cached,
        data_parallel,
        hardness,
        invariances,
        masks,
        numerics,
        reference,
        validation,
    )

    order = [f"{__package__}.{m}" for m in CHAPTERS]
    ranked = sorted(
        REGISTRY.values(), key=lambda cls: order.index(cls.__module__) if cls.__module__ in order else 99
    )
    return [cls() for cls in ranked]


def claims(
    caps: Capabilities,
    *,
    directions: tuple[str, ...] = (),
    similarity: str | None = None,
    partition_mode: str | None = None,
    min_k: int = 1,
    fixed: dict[str, Any] | None = None,
) -> str | None:
    """The common ``requires``: the named directions, similarity, partition mode and K are claimed,
    and some claimed configuration (``Capabilities.shapes``) has the named directions among its own
    with that partition mode -- exactly the directions ``fixed["directions"]`` and the mode
    ``fixed["partition_mode"]`` when the property fixes them (its draws are :func:`draw_config`'s)."""
    missing = [d for d in directions if d not in caps.directions]
    if missing:
        return f"directions {missing}"
    if similarity is not None and similarity not in caps.similarities:
        return f"similarity {similarity!r}"
    if partition_mode is not None and partition_mode not in caps.partition_modes:
        return f"partition_mode {partition_mode!r}"
    exact = (fixed or {}).get("directions")
    mode = (fixed or {}).get("partition_mode", partition_mode)
    if not caps.find_shapes(including=directions, directions=exact, partition_mode=mode):
        dirs = "+".join(exact) if exact else "+".join(("query_to_doc", *directions)) + "(+...)"
        return f"a configuration {dirs}/{mode or 'any partition'}"
    if caps.max_k is not None and caps.max_k < min_k:
        return f"K >= {min_k} (max_k = {caps.max_k})"
    return None


@dataclass(frozen=True)
class Outputs:
    """An adapter's level-1 result as float64 arrays."""

    loss: float
    grad_queries: np.ndarray
    grad_docs: np.ndarray
    grad_scale: float | None


@dataclass
class Context:
    """The adapter under test plus what the properties need: dtype, DP harness, margin statistics."""

    loaded: LoadedAdapter
    harness: Any = None
    world_size: int = 1
    worst_ratio: float = 0.0
    comparisons: int = 0
    notes: list[str] = field(default_factory=list)
    _isolated: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def adapter(self) -> Any:
        """The adapter as the properties call it: behind its worker process, every call under the time
        limit (:func:`~infonce_spec.conformance.isolation.isolated`); in process when it cannot be
        re-imported by name."""
        if self._isolated is None:
            self._isolated = isolated(self.loaded)
        return self._isolated

    @property
    def caps(self) -> Capabilities:
        return self.loaded.capabilities

    @property
    def dtype(self) -> str:
        """The embeddings' precision: inputs are rounded to it; results are rounded in it."""
        return self.caps.dtype

    @property
    def compute_dtype(self) -> str:
        """The loss stage's precision (the tolerance model's unit roundoff)."""
        return self.caps.loss_dtype

    def close(
        self,
        computed: Any,
        expected: Any,
        bound: Any,
        *,
        quantity: str,
        clause: str,
        what: str = "reference",
        magnitude: Any = None,
    ) -> None:
        """:func:`check_close` that keeps the worst passing ratio (the margin shown in reports).

        Gradients come back rounded to the adapter's ``dtype`` (error at most ``u |g|``, beyond the loss
        stage's own error): for quantities named ``grad*`` the bound gets ``OUTPUT_ROUNDING u
        |magnitude|`` (``magnitude`` defaults to ``expected``; pass the sum of both sides' sizes when
        two rounded results are compared). Losses come from the loss stage, whose model covers them.
        """
        if "grad" in quantity:
            u = UNIT_ROUNDOFF[self.dtype]
            size = np.abs(np.asarray(expected if magnitude is None else magnitude, dtype=np.float64))
            with np.errstate(invalid="ignore"):
                extra = OUTPUT_ROUNDING * u * np.where(np.isfinite(size), size, 0.0)
            bound = np.asarray(bound, dtype=np.float64) + extra
        ratio = check_close(computed, expected, bound, quantity=quantity, clause=clause, what=what)
        self.comparisons += 1
        self.worst_ratio = max(self.worst_ratio, ratio)

    def embeddings(self, queries: np.ndarray, docs: np.ndarray, config: Config) -> Outputs:
        """Run the adapter at level 1 and read its result back as float64."""
        out = self.adapter.embeddings(EmbeddingCase(queries.copy(), docs.copy(), config))
        if not isinstance(self.adapter, IsolatedAdapter):  # the worker checks the dtypes where it runs
            check_result_dtypes(out, self.dtype, "embeddings")
        return to_outputs(out, queries.shape, docs.shape, self.caps.grad_scale)

    def compare(
        self,
        out: Outputs,
        expected: Any,
        bounds: Bounds,
        clause: str,
        *,
        what: str = "reference",
        scale_grad: bool = True,
        scale_clause: str = "SCALE-2",
    ) -> None:
        """Loss, dL/dqueries, dL/ddocs and (if claimed) dL/dscale against ``expected``.

        One output, one clause: dL/dscale is compared last, so its mismatch means the loss and the
        embedding gradients are right, and it is filed under ``scale_clause`` -- SCALE-2 (the rule
        for dL/dscale) unless the caller compares two spellings of one case and establishes SCALE-2
        on the canonical one itself (:func:`~.invariances._equals_canonical`)."""
        self.close(out.loss, expected.loss, bounds.loss, quantity="loss", clause=clause, what=what)
        self.close(
            out.grad_queries,
            expected.grad_queries,
            bounds.grad_queries,
            quantity="grad_queries",
            clause=clause,
            what=what,
        )
        self.close(
            out.grad_docs,
            expected.grad_docs,
            bounds.grad_docs,
            quantity="grad_docs",
            clause=clause,
            what=what,
        )
        if scale_grad and self.caps.grad_scale and out.grad_scale is not None:
            exp = getattr(expected, "grad_scale", None)
            if exp is not None:
                self.close(
                    out.grad_scale,
                    exp,
                    bounds.grad_scale,
                    quantity="grad_scale",
                    clause=scale_clause,
                    what=what,
                )


def output_array(value: Any, shape: tuple[int, ...], quantity: str, clause: str, call: str) -> np.ndarray:
    """One field of an adapter's result as a float64 array of ``shape``, or an ``output`` fault naming
    the output-contract clause (a gradient has the layout of its input: LAYOUT-1/LAYOUT-2; the loss
    is a scalar: LOSS-1; dL/dscale a scalar: SCALE-2)."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AdapterFault(
            "output",
            f"{call}() returned {quantity} = {type(value).__name__}, which is not a float array ({exc}) "
            f"[{clause}]",
            clause=clause,
            call=call,
        ) from None
    if arr.shape != tuple(shape):
        raise AdapterFault(
            "output",
            f"{call}() returned {quantity} of shape {arr.shape}; the output contract is shape "
            f"{tuple(shape)} [{clause}]",
            clause=clause,
            call=call,
        )
    return arr


def to_outputs(
    out: Any,
    q_shape: tuple[int, ...],
    d_shape: tuple[int, ...],
    want_scale: bool,
    *,
    call: str = "embeddings",
) -> Outputs:
    """Validate an adapter's :class:`LossGrads` against the input shapes.

    What is not a result is an ``output`` :class:`~infonce_spec.conformance.compare.AdapterFault`
    (one verdict, never shrunk): a missing field, a value that is not a float array, a wrong shape
    (filed under the output-contract clause: LOSS-1, LAYOUT-1, LAYOUT-2, SCALE-2). The dtype is
    checked where the result is produced (:func:`~infonce_spec.conformance.isolation.check_result_dtypes`).
    """
    for attr in ("loss", "grad_queries", "grad_docs"):
        if not hasattr(out, attr):
            name = out.type_name if isinstance(out, Returned) else type(out).__name__
            raise AdapterFault(
                "output",
                f"{call}() returned {name}, which has no {attr!r} (expected LossGrads)",
                call=call,
            )
    loss = output_array(out.loss, (), "loss", "LOSS-1", call)
    gq = output_array(out.grad_queries, tuple(q_shape), "grad_queries", "LAYOUT-1", call)
    gd = output_array(out.grad_docs, tuple(d_shape), "grad_docs", "LAYOUT-2", call)
    gs = getattr(out, "grad_scale", None)
    if want_scale and gs is None:
        raise AdapterFault(
            "output",
            f"{call}() returned grad_scale=None, but the adapter claims grad_scale [SCALE-2]",
            clause="SCALE-2",
            call=call,
        )
    scale = None if gs is None else float(output_array(gs, (), "grad_scale", "SCALE-2", call))
    return Outputs(float(loss), gq, gd, scale)
