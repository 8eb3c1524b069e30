"""The exact reference of infonce-spec: NumPy float64 loss and closed-form gradients.

Written against the Array API (through array-api-compat): numpy, torch and array-api-strict
inputs all work and results come back in the input's namespace, always in float64. In any
mismatch between this code and ``spec/infonce-spec.md``, the spec is right.

One module per chapter of the spec, to be read side by side with it: :mod:`.layout` (§2),
:mod:`.similarity` (§3), :mod:`.rows` (§4), :mod:`.hardness` (§5), :mod:`.partition` (§6),
:mod:`.gradients` (§7), put together by :mod:`.normative`. :mod:`.engine` computes the same
function fast for large batches; :func:`loss_and_grad` picks by size.

>>> import numpy as np
>>> from infonce_spec.reference import Config, loss_and_grad
>>> rng = np.random.default_rng(0)
>>> q, d = rng.normal(size=(4, 8)), rng.normal(size=(2, 4, 8))
>>> r = loss_and_grad(q, d, Config(directions=("query_to_doc", "doc_to_query")))
>>> r.grad_docs.shape
(2, 4, 8)
"""

from infonce_spec.errors import SpecTypeError, SpecViolation

from . import api, engine, normative
from .api import Result, loss, loss_and_grad
from .config import DIRECTIONS, HARDNESS_MODES, PARTITION_MODES, PER_DIRECTION_ALLOWED, SIMILARITIES, Config
from .data_parallel import RankExpectation, rank_expectations
from .encoder import EncoderResult, linear_encoder_grad

__all__ = [
    "DIRECTIONS",
    "HARDNESS_MODES",
    "PARTITION_MODES",
    "PER_DIRECTION_ALLOWED",
    "SIMILARITIES",
    "Config",
    "EncoderResult",
    "RankExpectation",
    "Result",
    "SpecTypeError",
    "SpecViolation",
    "api",
    "engine",
    "linear_encoder_grad",
    "loss",
    "loss_and_grad",
    "normative",
    "rank_expectations",
]
