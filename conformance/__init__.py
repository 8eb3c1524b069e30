"""The infonce-spec conformance suite: point it at an implementation, get a verdict per spec clause.

* :mod:`.protocol`    -- the adapter protocol (:class:`Capabilities`, the case and result types).
* :mod:`.strategies`  -- hypothesis strategies reaching the corners where bugs live (reusable).
* :mod:`.tolerances`  -- the per-dtype tolerance model derived from the arithmetic.
* :mod:`.compare`     -- worst-element comparison that names the clause.
* :mod:`.properties`  -- the properties, one module per spec chapter.
* :mod:`.runner`, :mod:`.report`, :mod:`.cli`, :mod:`.replay`, :mod:`.harnesses`, :mod:`.pytest_plugin`.

Run it: ``infonce-conformance run --adapter package.module:attribute`` (see ``docs/conformance.md``).
"""

from .protocol import (
    DTYPES,
    Capabilities,
    ConformanceAdapter,
    DropoutCase,
    EmbeddingCase,
    EncoderCase,
    EncoderGrads,
    EncoderStep,
    LossGrads,
    RankCase,
    RankEncoderCase,
    Rendezvous,
    load_adapter,
)

__all__ = [
    "DTYPES",
    "Capabilities",
    "ConformanceAdapter",
    "DropoutCase",
    "EmbeddingCase",
    "EncoderCase",
    "EncoderGrads",
    "EncoderStep",
    "LossGrads",
    "RankCase",
    "RankEncoderCase",
    "Rendezvous",
    "load_adapter",
]
