"""The adapter protocol: how any implementation plugs into the conformance suite.

An *adapter* is a small object, named ``package.module:attribute`` (so that spawned data-parallel
workers can import it), that runs **its own** implementation in its own framework and dtype. The
suite hands it float64 NumPy inputs (already rounded to the adapter's dtype, so the reference sees
exactly what the implementation sees) and a reference :class:`~infonce_spec.reference.Config`; the
adapter hands back NumPy results (any floating dtype; the suite converts to float64).

Three levels, each optional beyond the first, each declared in :class:`Capabilities`:

1. **embeddings** -- :meth:`ConformanceAdapter.embeddings`: loss and gradients with respect to the
   query and document embeddings (and, if claimed, ``scale``).
2. **encoder** -- :meth:`ConformanceAdapter.encoder`: a bias-free linear encoder
   ``embeddings = x @ weight.T`` (weight ``(D, F)``, the ``torch.nn.Linear(F, D, bias=False)``
   convention) whose weight gradient the reference knows in closed form. This is how cached
   (GradCache) implementations are checked end to end (CACHE-1 .. CACHE-4): the case carries the
   mini-batch size, an upstream gradient multiplier per step and possibly several steps whose
   forwards all run before their backwards (re-entrancy). :meth:`ConformanceAdapter.dropout_encoder`
   adds dropout in front of the linear layer for the metamorphic RNG-replay check (CACHE-3).
3. **data parallel**, in one of two forms (``Capabilities.collectives``):

   * ``"torch"`` -- :meth:`ConformanceAdapter.rank_embeddings` / :meth:`ConformanceAdapter.rank_encoder`:
     called inside a worker process where the suite has already initialised the default
     ``torch.distributed`` process group (gloo on CPU, or whatever ``torchrun`` set up); the adapter
     only computes with its all-gather enabled, for its own rank's local slice.
   * ``"devices"`` -- ``devices_embeddings(cases)`` / ``devices_encoder(cases)``: one process, W
     devices, any framework. The suite hands over the W local batches of one global batch at once
     (a tuple of :class:`RankCase` / :class:`RankEncoderCase`, in rank order) and takes back the W
     per-rank results, in rank order; the adapter runs them with its framework's own collectives
     (JAX ``shard_map`` over host devices, TF ``MirroredStrategy``). Same properties and verdicts
     (DP-1 .. DP-5); a ``ValueError``/``TypeError`` raised by the call is every rank's refusal
     (DP-5).
   * ``"rendezvous"`` -- one process per rank, any framework: the suite starts W worker processes
     (nothing inherited, no torch) and calls ``join(rendezvous)`` once in each with a
     :class:`Rendezvous` (its rank, the world size, a coordinator address and one free address per
     rank); the adapter initialises its own runtime with it (``jax.distributed.initialize``, TF's
     ``TF_CONFIG``), then :meth:`ConformanceAdapter.rank_embeddings` /
     :meth:`ConformanceAdapter.rank_encoder` compute each rank's own case as in the torch form.

A minimal adapter (the whole thing)::

    import numpy as np, torch
    from infonce_spec.conformance import Capabilities, LossGrads

    class MyAdapter:
        capabilities = Capabilities(  # query_to_doc, joint, cos, no hardness: the minimal claim
            name="mylib", dtype="float32", similarities=frozenset({"cos", "dot"}), grad_scale=True
        )

        def embeddings(self, case):
            q = torch.tensor(case.queries, dtype=torch.float32, requires_grad=True)
            d = torch.tensor(case.docs, dtype=torch.float32, requires_grad=True)
            s = torch.tensor(case.config.scale, dtype=torch.float32, requires_grad=True)
            loss = mylib.infonce(q, d, **{**case.loss_kwargs(), "scale": s})
            loss.backward()
            return LossGrads(loss.item(), q.grad.numpy(), d.grad.numpy(), s.grad.item())

    adapter = MyAdapter()      # run it: infonce-conformance run --adapter mymodule:adapter

Whatever an adapter does not claim is skipped and reported as ``not claimed`` -- never as a pass.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from infonce_spec.reference import Config
from infonce_spec.vocabulary import (
    DIRECTIONS,
    HARDNESS_MODES,
    PARTITION_MODES,
    REQUIRED_DIRECTION,
    SIMILARITIES,
    groups_without_positive,
)

__all__ = [
    "COLLECTIVES",
    "DTYPES",
    "AdapterLoadError",
    "Capabilities",
    "ConformanceAdapter",
    "DropoutCase",
    "EmbeddingCase",
    "EncoderCase",
    "EncoderGrads",
    "EncoderStep",
    "LoadedAdapter",
    "LossGrads",
    "RankCase",
    "RankEncoderCase",
    "Rendezvous",
    "Shape",
    "clip_like",
    "every_combination",
    "infonce",
    "load_adapter",
    "nt_xent",
    "shape_text",
]

#: The dtypes the tolerance model knows (:mod:`infonce_spec.conformance.tolerances`).
DTYPES: tuple[str, ...] = ("float64", "float32", "bfloat16", "float16")

#: The forms of level 3 (``Capabilities.collectives``): one process per rank in a torch process
#: group the suite sets up; one process whose adapter runs the W ranks on W devices itself; one
#: process per rank whose adapter joins the others with its own runtime at a rendezvous.
COLLECTIVES: tuple[str, ...] = ("torch", "devices", "rendezvous")


#: One claimed configuration shape: the directions (canonical order, DIR-2) and the partition mode.
Shape = tuple[tuple[str, ...], str]


def _shape(directions: Iterable[str], partition_mode: str) -> Shape:
    """``(directions, partition_mode)`` checked against the vocabulary and the spec's rules: known
    names, ``query_to_doc`` included (DIR-1), every group holding the positive pair (PART-4, PART-6);
    directions in canonical order."""
    if isinstance(directions, str):
        raise TypeError(
            f"a configuration's directions are a collection of names, got the string {directions!r}"
        )
    given = frozenset(directions)
    unknown = sorted(given - set(DIRECTIONS))
    if unknown:
        raise ValueError(
            f"Capabilities.configurations: unknown directions {unknown}; valid: {list(DIRECTIONS)}"
        )
    if REQUIRED_DIRECTION not in given:
        raise ValueError(f"Capabilities.configurations: {sorted(given)} lacks {REQUIRED_DIRECTION!r} (DIR-1)")
    if partition_mode not in PARTITION_MODES:
        raise ValueError(
            f"Capabilities.configurations: unknown partition_mode {partition_mode!r}; "
            f"valid: {list(PARTITION_MODES)} (PART-1)"
        )
    ordered = tuple(d for d in DIRECTIONS if d in given)
    empty = groups_without_positive(partition_mode, ordered)
    if empty:
        clause = "PART-4" if partition_mode == "per_direction" else "PART-6"
        raise ValueError(
            f"Capabilities.configurations: {'+'.join(ordered)} with {partition_mode!r} is not a "
            f"configuration of the spec: the groups {[list(g) for g in empty]} hold no positive pair ({clause})"
        )
    return ordered, partition_mode


def shape_text(shape: Shape) -> str:
    """``query_to_doc+doc_to_query/per_direction``: a shape as reports print it."""
    return f"{'+'.join(shape[0])}/{shape[1]}"


def _shape_order(shape: Shape) -> tuple[int, tuple[int, ...], int]:
    """Simplest first: fewer directions, then the canonical direction order, then the mode's order."""
    return len(shape[0]), tuple(DIRECTIONS.index(d) for d in shape[0]), PARTITION_MODES.index(shape[1])


def every_combination(directions: Iterable[str], partition_modes: Iterable[str]) -> frozenset[Shape]:
    """Every configuration made of ``query_to_doc`` plus any subset of ``directions`` with any of
    ``partition_modes``, leaving out what the spec does not define (PART-4, PART-6): what
    ``directions`` and ``partition_modes`` claim together when ``configurations`` is not given."""
    from itertools import combinations

    dirs = frozenset(directions) | {REQUIRED_DIRECTION}
    others = [d for d in DIRECTIONS if d in dirs and d != REQUIRED_DIRECTION]
    modes = list(partition_modes)
    out = set()
    for r in range(len(others) + 1):
        for rest in combinations(others, r):
            for mode in modes:
                chosen = (REQUIRED_DIRECTION, *rest)
                if not groups_without_positive(mode, chosen):
                    out.add(_shape(chosen, mode))
    return frozenset(out)


def infonce() -> frozenset[Shape]:
    """Standard InfoNCE: ``query_to_doc`` alone, ``joint`` (QD-1, PART-2)."""
    return frozenset({_shape(("query_to_doc",), "joint")})


def clip_like() -> frozenset[Shape]:
    """CLIP's symmetric cross-entropy ``(CE(logits) + CE(logits.T)) / 2``: exactly
    ``{query_to_doc, doc_to_query}``, ``per_direction`` (PART-3; spec §14.1). A loss that also
    offers one direction alone adds :func:`infonce`."""
    return frozenset({_shape(("query_to_doc", "doc_to_query"), "per_direction")})


def nt_xent() -> frozenset[Shape]:
    """SimCLR's NT-Xent over 2N anchors: all four directions, ``per_anchor`` (PART-5; spec §14.1)."""
    return frozenset({_shape(DIRECTIONS, "per_anchor")})


@dataclass(frozen=True)
class Capabilities:
    """What an adapter claims. Every property the suite has checks a claim; unclaimed ones are skipped
    and reported as ``not claimed`` (with the missing capability named).

    Nothing is claimed by default beyond the minimal configuration, the spec's default ``Config()``:
    directions ``{"query_to_doc"}`` (DIR-1: every implementation has it), partition mode
    ``{"joint"}`` (PART-1: defined for every direction set), similarity ``{"cos"}`` (SIM-3 lets an
    implementation offer either name; ``cos`` is the default of ``Config`` and of
    sentence-transformers' loss, and one similarity is the least a loss has), no hardness mode
    (HARD-6). Every further name is claimed by listing it, so a name the spec adds later is never
    claimed by an adapter written before it.

    * ``directions`` -- the directions the implementation supports; a config is claimed when all of
      its directions are in this set (``query_to_doc`` is always required, DIR-1).
    * ``partition_modes``, ``similarities`` -- subsets of the spec's names.
    * ``configurations`` -- the exact claim, when ``directions`` x ``partition_modes`` says too much:
      the set of ``(directions, partition_mode)`` pairs the implementation implements, e.g.
      ``clip_like() | infonce()`` or ``{(("query_to_doc", "doc_to_query"), "per_direction")}``
      (helpers: :func:`infonce`, :func:`clip_like`, :func:`nt_xent`, :func:`every_combination`).
      Each pair is checked against the spec (DIR-1, PART-1, PART-4, PART-6); ``directions`` and
      ``partition_modes`` are then derived from it (their union) and must not say otherwise. The
      suite draws only these pairs; the report lists the spec's other pairs as not claimed.
      ``None`` (the default): every valid pair of :func:`every_combination` (directions,
      partition_modes).
    * ``hardness_modes`` -- supported hardness modes besides ``None`` (which is always supported).
    * ``max_k`` -- the largest number of document columns ``K`` (``None``: no limit; ``1``: no hard negatives).
    * ``dtype`` -- the precision of the embeddings and of the returned gradients (``float64``,
      ``float32``, ``bfloat16``, ``float16``); the suite rounds every input to it, and it is the
      precision of the encoder (level 2).
    * ``compute_dtype`` -- the precision of the loss stage (similarities, logsumexp, softmax) when it
      differs from ``dtype`` (mixed precision, e.g. bfloat16 embeddings upcast to float32); ``None``
      means ``dtype``. The tolerance model uses it for the loss stage and ``dtype`` for the
      rounding of the results.
    * ``grad_scale`` -- :meth:`ConformanceAdapter.embeddings` returns dL/d(scale) (SCALE-2).
    * ``encoder`` -- :meth:`ConformanceAdapter.encoder` is implemented (level 2).
    * ``cached`` -- the encoder path is a cached (GradCache) implementation honouring
      ``mini_batch_size`` (CACHE-1 .. CACHE-4). A cached adapter must also run its uncached path
      when ``mini_batch_size`` is ``None``.
    * ``dropout`` -- :meth:`ConformanceAdapter.dropout_encoder` is implemented (CACHE-3).
    * ``data_parallel`` -- level 3 is implemented, in the form ``collectives`` names;
      ``max_world_size`` caps W.
    * ``collectives`` -- ``"torch"`` (the default): one process per rank in a ``torch.distributed``
      group the suite sets up; :meth:`ConformanceAdapter.rank_embeddings` (and, with ``encoder``,
      :meth:`ConformanceAdapter.rank_encoder`). ``"devices"``: one process running the W ranks on
      W devices with the adapter's own collectives, no torch anywhere; ``devices_embeddings`` (and,
      with ``encoder``, ``devices_encoder``), each taking the W cases and returning W results.
      ``"rendezvous"``: one process per rank, no torch anywhere; ``join(rendezvous)`` initialises
      the adapter's runtime once per rank process, then ``rank_embeddings`` (and ``rank_encoder``).
    * ``validates_inputs`` -- invalid inputs raise ``ValueError``/``TypeError`` (VAL-1, DP-5).
    * ``torch_memory`` -- the implementation allocates its tensors through torch (on the calling
      thread), so the suite's peak-memory meter sees them: with ``cached``, CACHE-5 is checked
      (``cached/loss_stage_memory``). Leave it ``False`` for implementations in other frameworks.
    """

    name: str
    directions: frozenset[str] = frozenset({REQUIRED_DIRECTION})
    partition_modes: frozenset[str] = frozenset({"joint"})
    similarities: frozenset[str] = frozenset({"cos"})
    hardness_modes: frozenset[str] = frozenset()
    max_k: int | None = None
    dtype: str = "float64"
    compute_dtype: str | None = None
    grad_scale: bool = False
    encoder: bool = False
    cached: bool = False
    dropout: bool = False
    data_parallel: bool = False
    max_world_size: int = 4
    collectives: str = "torch"
    validates_inputs: bool = False
    torch_memory: bool = False
    configurations: frozenset[Shape] | None = None

    def __post_init__(self) -> None:
        if self.configurations is not None:
            self._derive_from_configurations()
        for name, allowed in (
            ("directions", DIRECTIONS),
            ("partition_modes", PARTITION_MODES),
            ("similarities", SIMILARITIES),
            ("hardness_modes", HARDNESS_MODES),
        ):
            value = frozenset(getattr(self, name))
            unknown = sorted(value - set(allowed))
            if unknown:
                raise ValueError(f"Capabilities.{name}: unknown names {unknown}; valid: {list(allowed)}")
            object.__setattr__(self, name, value)
        if REQUIRED_DIRECTION not in self.directions:
            raise ValueError(f"Capabilities.directions must contain {REQUIRED_DIRECTION!r} (DIR-1)")
        if self.dtype not in DTYPES:
            raise ValueError(f"Capabilities.dtype must be one of {list(DTYPES)}, got {self.dtype!r}")
        if self.compute_dtype is not None and self.compute_dtype not in DTYPES:
            raise ValueError(f"Capabilities.compute_dtype must be None or one of {list(DTYPES)}")
        if self.max_k is not None and self.max_k < 1:
            raise ValueError("Capabilities.max_k must be None or >= 1")
        if self.cached and not self.encoder:
            raise ValueError(
                "Capabilities.cached needs encoder=True (caching is checked through the encoder)"
            )
        if self.dropout and not self.encoder:
            raise ValueError("Capabilities.dropout needs encoder=True")
        if self.collectives not in COLLECTIVES:
            raise ValueError(
                f"Capabilities.collectives must be one of {list(COLLECTIVES)}, got {self.collectives!r}"
            )

    def _derive_from_configurations(self) -> None:
        """Normalise ``configurations`` (checked pairs, canonical order) and derive ``directions`` and
        ``partition_modes`` from it; a different explicit value of either is an error."""
        configs = self.configurations
        if isinstance(configs, (str, bytes)) or not isinstance(configs, Iterable):
            raise TypeError("Capabilities.configurations must be a set of (directions, partition_mode) pairs")
        pairs = []
        for pair in configs:
            if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not isinstance(pair[1], str):
                raise TypeError(
                    f"Capabilities.configurations: {pair!r} is not a (directions, partition_mode) pair"
                )
            pairs.append(_shape(pair[0], pair[1]))
        if not pairs:
            raise ValueError(
                "Capabilities.configurations is empty: an adapter claims at least one configuration"
            )
        shapes = frozenset(pairs)
        union_dirs = frozenset(d for dirs, _ in shapes for d in dirs)
        union_modes = frozenset(mode for _, mode in shapes)
        for name, derived, default in (
            ("directions", union_dirs, frozenset({REQUIRED_DIRECTION})),
            ("partition_modes", union_modes, frozenset({"joint"})),
        ):
            given = frozenset(getattr(self, name))
            if given not in (default, derived):
                raise ValueError(
                    f"Capabilities.{name}={sorted(given)} contradicts configurations (which claim "
                    f"{sorted(derived)}); leave {name} out: it is derived from configurations"
                )
            object.__setattr__(self, name, derived)
        object.__setattr__(self, "configurations", shapes)

    def shapes(self) -> tuple[Shape, ...]:
        """The claimed ``(directions, partition_mode)`` pairs, simplest first: ``configurations``, or
        every valid pair of ``directions`` x ``partition_modes``."""
        claimed = (
            self.configurations
            if self.configurations is not None
            else every_combination(self.directions, self.partition_modes)
        )
        return tuple(sorted(claimed, key=_shape_order))

    def unclaimed_shapes(self) -> tuple[Shape, ...]:
        """The spec's valid pairs (every direction set, every partition mode) that are not claimed."""
        claimed = set(self.shapes())
        every = every_combination(DIRECTIONS, PARTITION_MODES)
        return tuple(sorted((s for s in every if s not in claimed), key=_shape_order))

    def find_shapes(
        self,
        *,
        including: Iterable[str] = (),
        directions: Iterable[str] | None = None,
        partition_mode: str | None = None,
    ) -> tuple[Shape, ...]:
        """The claimed pairs whose directions include ``including`` (and are exactly ``directions``
        when given, in any order) with ``partition_mode`` (any when ``None``), simplest first."""
        want = set(including)
        exact = None if directions is None else set(directions)
        return tuple(
            s
            for s in self.shapes()
            if want <= set(s[0])
            and (exact is None or exact == set(s[0]))
            and (partition_mode is None or s[1] == partition_mode)
        )

    def claims_config(self, config: Config) -> str | None:
        """``None`` if ``config`` is claimed, else the reason it is not."""
        missing = sorted(set(config.directions) - self.directions)
        if missing:
            return f"directions {missing}"
        if config.partition_mode not in self.partition_modes:
            return f"partition_mode {config.partition_mode!r}"
        if self.configurations is not None and not self.find_shapes(
            directions=config.directions, partition_mode=config.partition_mode
        ):
            dirs = tuple(d for d in DIRECTIONS if d in set(config.directions))
            claimed = ", ".join(shape_text(s) for s in self.shapes())
            return f"configuration {shape_text((dirs, config.partition_mode))} (claimed: {claimed})"
        if config.similarity not in self.similarities:
            return f"similarity {config.similarity!r}"
        if config.hardness_active and config.hardness_mode not in self.hardness_modes:
            return f"hardness_mode {config.hardness_mode!r}"
        return None

    @property
    def loss_dtype(self) -> str:
        """The precision of the loss stage: ``compute_dtype`` or, if unset, ``dtype``."""
        return self.compute_dtype or self.dtype

    def with_(self, **changes: Any) -> Capabilities:
        """A copy with ``changes`` applied (e.g. ``caps.with_(dtype="float32")``)."""
        return replace(self, **changes)


def _loss_kwargs(config: Config) -> dict[str, Any]:
    return {
        "directions": tuple(config.directions),
        "partition_mode": config.partition_mode,
        "scale": config.scale,
        "similarity": config.similarity,
        "hardness_mode": config.hardness_mode,
        "hardness_strength": config.hardness_strength,
    }


@dataclass(frozen=True)
class EmbeddingCase:
    """Level 1 input: ``queries`` (N, D) and ``docs`` (K, N, D) float64 (exactly representable in the
    adapter's dtype) and the ``config``.

    ``config.directions`` may arrive in any order and with repeats (the DIR-2 property does this on
    purpose): pass it through as given. :meth:`loss_kwargs` spells the config as keyword arguments
    with the spec's (= sentence-transformers') names.
    """

    queries: np.ndarray
    docs: np.ndarray
    config: Config

    def loss_kwargs(self) -> dict[str, Any]:
        return _loss_kwargs(self.config)


@dataclass(frozen=True)
class LossGrads:
    """Level 1 / rank output: ``loss`` and dL/d(queries) (N, D), dL/d(docs) (K, N, D), and optionally
    dL/d(scale). Arrays may be of any floating dtype (or anything ``numpy.asarray`` accepts)."""

    loss: float
    grad_queries: Any
    grad_docs: Any
    grad_scale: float | None = None


@dataclass(frozen=True)
class EncoderStep:
    """One training step of an :class:`EncoderCase`: inputs ``x_queries`` (N, F), ``x_docs`` (K, N, F),
    and the upstream multiplier ``upstream`` (``(loss * upstream).backward()``, CACHE-2)."""

    x_queries: np.ndarray
    x_docs: np.ndarray
    upstream: float = 1.0


@dataclass(frozen=True)
class EncoderCase:
    """Level 2 input: a bias-free linear encoder with ``weight`` (D, F) shared by queries and documents.

    Run **every** step's forward first, in order, then ``(loss_i * upstream_i).backward()`` for each
    step in order, accumulating into one weight gradient (two forwards then two backwards is the
    re-entrancy of CACHE-4; with one step this is an ordinary training step). ``mini_batch_size`` is
    ``None`` for the uncached path and an integer >= 1 (possibly not dividing N, possibly > N) for a
    cached implementation (CACHE-1).
    """

    weight: np.ndarray
    steps: tuple[EncoderStep, ...]
    config: Config
    mini_batch_size: int | None = None

    def loss_kwargs(self) -> dict[str, Any]:
        return _loss_kwargs(self.config)


@dataclass(frozen=True)
class EncoderGrads:
    """Level 2 / rank output: one loss per step and the accumulated dL/d(weight) (D, F)."""

    losses: Sequence[float]
    grad_weight: Any


@dataclass(frozen=True)
class DropoutCase:
    """CACHE-3 input: encoder ``x -> dropout(x, p) @ weight.T`` with the framework's dropout (inverted
    scaling ``1/(1-p)``), applied to queries and then each document column, in that order.

    Seed the framework's RNG with ``seed`` right before the loss call; run the uncached path when
    ``mini_batch_size`` is ``None``. The suite checks cached == uncached under the same seed, which
    holds when the second (gradient) forward of a cached implementation replays the RNG of the first.
    """

    weight: np.ndarray
    x_queries: np.ndarray
    x_docs: np.ndarray
    config: Config
    p: float
    seed: int
    mini_batch_size: int | None = None
    upstream: float = 1.0

    def loss_kwargs(self) -> dict[str, Any]:
        return _loss_kwargs(self.config)


@dataclass(frozen=True)
class RankCase:
    """Level 3 input for one rank: its **local** ``queries`` (B, D) and ``docs`` (K, B, D).

    Compute with the all-gather enabled (``gather_across_devices=True`` in sentence-transformers'
    words) and return this rank's loss ``L_r`` and the gradients with respect to the local inputs
    (DP-2, DP-3). With ``collectives="torch"`` the default process group is up
    (``torch.distributed``) and ``device`` is a hint (``"cpu"`` under the gloo harness,
    ``"cuda:<local_rank>"`` under torchrun with NCCL); with ``collectives="devices"`` the W cases
    arrive together, in rank order, in one ``devices_embeddings`` call, which places them itself;
    with ``collectives="rendezvous"`` the adapter's ``join`` has set up its runtime in this rank's
    process.
    """

    rank: int
    world_size: int
    queries: np.ndarray
    docs: np.ndarray
    config: Config
    device: str = "cpu"

    def loss_kwargs(self) -> dict[str, Any]:
        return _loss_kwargs(self.config)


@dataclass(frozen=True)
class RankEncoderCase:
    """Level 3 encoder input for one rank: local ``x_queries`` (B, F), ``x_docs`` (K, B, F), the shared
    ``weight`` and ``mini_batch_size`` (``None`` uncached). Return the loss and *this rank's* weight
    gradient; the suite averages them over ranks (DP-4)."""

    rank: int
    world_size: int
    weight: np.ndarray
    x_queries: np.ndarray
    x_docs: np.ndarray
    config: Config
    mini_batch_size: int | None = None
    device: str = "cpu"

    def loss_kwargs(self) -> dict[str, Any]:
        return _loss_kwargs(self.config)


@dataclass(frozen=True)
class Rendezvous:
    """Where the ranks of ``collectives="rendezvous"`` meet; handed to ``join`` once per rank process.

    ``coordinator`` (``"127.0.0.1:port"``) is for runtimes with one coordinating service
    (``jax.distributed.initialize(coordinator_address=..., num_processes=world_size,
    process_id=rank)``); ``addresses`` holds one address per rank, rank order, for runtimes where each
    rank serves on its own (TF's ``TF_CONFIG`` cluster: rank r listens on ``addresses[r]``). The ports
    were free when the suite picked them (bound to port 0, then released); a rank that fails to
    join is one ``load`` fault about that rank. ``timeout`` (seconds) is how long the suite waits for
    the ranks to join; use it as the runtime's own initialisation timeout.
    """

    rank: int
    world_size: int
    coordinator: str
    addresses: tuple[str, ...]
    timeout: float


@runtime_checkable
class ConformanceAdapter(Protocol):
    """The plug-in interface. Only ``capabilities`` and :meth:`embeddings` are required; implement the
    other methods for the capabilities you claim."""

    capabilities: Capabilities

    def embeddings(self, case: EmbeddingCase) -> LossGrads:
        """Level 1 (always)."""
        ...

    # Optional methods (checked with hasattr against the claimed capabilities):
    #   encoder(self, case: EncoderCase) -> EncoderGrads                 if capabilities.encoder
    #   dropout_encoder(self, case: DropoutCase) -> EncoderGrads         if capabilities.dropout
    #   rank_embeddings(self, case: RankCase) -> LossGrads               if capabilities.data_parallel
    #   rank_encoder(self, case: RankEncoderCase) -> EncoderGrads        if data_parallel and encoder
    # with collectives="devices" instead of the two rank_* methods (all W ranks in one call):
    #   devices_embeddings(self, cases: tuple[RankCase, ...]) -> Sequence[LossGrads]
    #   devices_encoder(self, cases: tuple[RankEncoderCase, ...]) -> Sequence[EncoderGrads]  (with encoder)
    # with collectives="rendezvous", join(self, rendezvous: Rendezvous) -> None besides the rank_* methods
    # (once per rank process, before any case; optional leave(self) -> None when the pool closes).


_REQUIRED_METHODS = {
    "encoder": ("encoder",),
    "dropout": ("dropout_encoder",),
}

#: The level-3 methods of each form of ``collectives``: (always, with ``encoder``).
LEVEL3_METHODS: dict[str, tuple[str, str]] = {
    "torch": ("rank_embeddings", "rank_encoder"),
    "devices": ("devices_embeddings", "devices_encoder"),
    "rendezvous": ("rank_embeddings", "rank_encoder"),
}


@dataclass
class LoadedAdapter:
    """An adapter with its import name (for reproducers and spawned workers)."""

    spec: str
    adapter: Any
    capabilities: Capabilities = field(init=False)

    def __post_init__(self) -> None:
        caps = getattr(self.adapter, "capabilities", None)
        if not isinstance(caps, Capabilities):
            raise TypeError(f"adapter {self.spec!r} has no `capabilities` of type Capabilities")
        if not callable(getattr(self.adapter, "embeddings", None)):
            raise TypeError(f"adapter {self.spec!r} has no embeddings(case) method")
        for flag, methods in _REQUIRED_METHODS.items():
            for method in methods:
                if getattr(caps, flag) and not callable(getattr(self.adapter, method, None)):
                    raise TypeError(f"adapter {self.spec!r} claims {flag} but has no {method}() method")
        embeddings, encoder = LEVEL3_METHODS[caps.collectives]
        form = f"data_parallel (collectives={caps.collectives!r})"
        if caps.data_parallel and not callable(getattr(self.adapter, embeddings, None)):
            raise TypeError(f"adapter {self.spec!r} claims {form} but has no {embeddings}() method")
        if caps.data_parallel and caps.encoder and not callable(getattr(self.adapter, encoder, None)):
            raise TypeError(f"adapter {self.spec!r} claims {form} and encoder but has no {encoder}()")
        if (
            caps.data_parallel
            and caps.collectives == "rendezvous"
            and not callable(getattr(self.adapter, "join", None))
        ):
            raise TypeError(f"adapter {self.spec!r} claims {form} but has no join(rendezvous) method")
        self.capabilities = caps


#: How ``load_adapter`` names an adapter (quoted in its errors).
ADAPTER_NAME_FORMS = "'package.module:attribute' or 'path/to/file.py:attribute'"


class AdapterLoadError(ValueError):
    """The adapter named on the command line cannot be loaded: a missing file, module or attribute,
    a module that raises on import, a constructor that raises, or an object that is not an adapter.

    Its message is one line (what was asked, what went wrong, and where in the user's code), meant
    to be printed as it stands: the command line exits 2 with it, the pytest plugin turns it into
    one collection error.
    """


def _where(exc: BaseException) -> str:
    """`` (file.py, line N)`` of the innermost frame outside the import machinery, or ``""``."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f" ({Path(exc.filename).name}, line {exc.lineno})"
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith("<") and Path(f.filename).resolve() != Path(__file__).resolve()
    ]
    return f" ({Path(frames[-1].filename).name}, line {frames[-1].lineno})" if frames else ""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _importable(*folders: Path) -> None:
    """Make ``folders`` importable, the way pytest makes a test file's folder importable (prepend)."""
    for folder in reversed(folders):
        entry = str(folder)
        if entry not in sys.path:
            sys.path.insert(0, entry)


def _import_file(path: Path) -> Any:
    """Import a ``.py`` file under a stable private module name (the same in every worker); its folder
    and the current folder are importable first, so it can import its sibling modules."""
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    name = f"_infonce_adapter_{path.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    _importable(path.parent, Path.cwd())
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import adapter file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _import_module(module_name: str, spec: str) -> Any:
    """Import ``module_name`` with the current folder importable (``adapter:Cls`` next to the user)."""
    _importable(Path.cwd())
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(
            exc.name + "."
        ):  # the adapter's own module
            raise AdapterLoadError(
                f"cannot load adapter {spec!r}: no module named {exc.name!r} (looked in the current "
                f"folder {Path.cwd()} and on sys.path; a file is named 'path/to/file.py:attribute')"
            ) from None
        raise


def _candidates(module: Any) -> list[str]:
    """Names in ``module`` that look like adapters (they carry ``capabilities`` and ``embeddings``)."""
    return sorted(
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and hasattr(value, "capabilities") and hasattr(value, "embeddings")
    )


def load_adapter(spec: str) -> LoadedAdapter:
    """Import ``package.module:attribute`` (or ``path/to/file.py:attribute``); a class is instantiated
    with no arguments. A file path is made absolute, so the returned ``spec`` works in any worker.

    Modules load the way pytest loads test files: an adapter file's folder and the current folder
    are importable, so ``./adapter.py:MyAdapter`` may import its sibling modules and
    ``adapter:MyAdapter`` finds ``adapter.py`` in the current folder. Whatever goes wrong raises
    :class:`AdapterLoadError` with a one-line message.
    """
    if ":" not in spec:
        raise AdapterLoadError(f"adapter must be named {ADAPTER_NAME_FORMS}, got {spec!r}")
    asked = spec  # the name as given, for the messages
    module_name, _, attr = spec.rpartition(":")
    if not module_name or not attr:
        raise AdapterLoadError(f"adapter must be named {ADAPTER_NAME_FORMS}, got {spec!r}")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name).resolve()
            if not path.is_file():
                raise AdapterLoadError(f"cannot load adapter {asked!r}: no such file {path}")
            module: Any = _import_file(path)
            spec = f"{path}:{attr}"
        else:
            module = _import_module(module_name, spec)
    except AdapterLoadError:
        raise
    except Exception as exc:
        raise AdapterLoadError(
            f"cannot load adapter {asked!r}: importing {module_name} raised {_one_line(exc)}{_where(exc)}"
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            found = _candidates(module)
            hint = f"; adapters it defines: {', '.join(found)}" if found else ""
            raise AdapterLoadError(
                f"cannot load adapter {asked!r}: {module_name} has no attribute {part!r}{hint}"
            )
        obj = getattr(obj, part)
    if isinstance(obj, type):
        try:
            obj = obj()
        except Exception as exc:
            raise AdapterLoadError(
                f"cannot load adapter {asked!r}: {attr}() raised {_one_line(exc)}{_where(exc)}"
            ) from exc
    try:
        loaded = LoadedAdapter(spec=spec, adapter=obj)
    except TypeError as exc:
        raise AdapterLoadError(f"cannot load adapter {asked!r}: {exc}") from exc
    from .harnesses import check_level3

    missing = check_level3(loaded.capabilities)
    if missing is not None:  # the suite's harness cannot run here: not the adapter's fault
        raise AdapterLoadError(f"cannot load adapter {asked!r}: {missing}")
    return loaded
