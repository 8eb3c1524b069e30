"""Known mistakes: what a faulty implementation computes instead of the spec's loss, as hypotheses.

A failing case says *which* clause an implementation breaks; a known mistake says *what it computes
instead*. Each :class:`Mistake` is one bug that real implementations have (a mutant of the
catalogue, :mod:`.mutants.catalogue`, or a deviation of a published library, docs/peers.md), written
as a float64 NumPy variant of the reference: for a case ``(queries, docs, config)`` it gives the
loss, dL/dqueries (N, D), dL/ddocs (K, N, D) and dL/dscale that the faulty implementation returns.
:func:`explain` tries every applicable mistake on the failing cases of a root cause and keeps those
that reproduce the adapter's outputs to the tolerance on every failing case without contradicting
the cases the adapter got right.

How a variant is computed: :mod:`.emulation` (the spec's loss with one switch per way of getting it
wrong, exact to float64 rounding); the mistakes themselves: :mod:`.catalogue`; the matching:
:mod:`.explain`. Above one process' embeddings: :mod:`.ranks` (what every rank of a faulty
data-parallel implementation returns, from the emulation of the global batch) and :mod:`.cached`
(what a faulty GradCache returns for a linear encoder, through the chain rule); :mod:`.memory` (how
a faulty GradCache's peak memory grows, CACHE-5: exponents, no values). The catalogue is described
in docs/mutants.md ("Known mistakes").

No torch here: the module runs wherever the suite runs.
"""

from __future__ import annotations

from .cached import CacheMistake, EncoderObservation
from .catalogue import MISTAKES, Mistake, Observation
from .emulation import Emulation, Outputs, emulate
from .explain import Match, explain, outputs_agree
from .memory import MemoryMistake, MemoryObservation
from .ranks import RankMistake, RankObservation

__all__ = [
    "MISTAKES",
    "CacheMistake",
    "Emulation",
    "EncoderObservation",
    "Match",
    "MemoryMistake",
    "MemoryObservation",
    "Mistake",
    "Observation",
    "Outputs",
    "RankMistake",
    "RankObservation",
    "emulate",
    "explain",
    "outputs_agree",
]
