"""Peer adapter: lightly's ``NTXentLoss`` (SimCLR), module ``lightly.loss.ntx_ent_loss``.

``NTXentLoss(temperature, memory_bank_size=0)(out0, out1)`` with queries = ``out0`` and
``docs[0]`` = ``out1``: 2N anchors, each normalised (``cos``) and scored against every other vector
of the batch, its pair the target -- all four directions, ``per_anchor`` (PART-5, spec §14.1);
scale = 1/temperature; K = 1. ``gather_distributed=True`` gathers both views from every rank with
an autograd gather (levels: embeddings, data parallel).

Not claimed: ``dot`` (it always normalises), hard negatives, dL/dscale (``temperature`` is a float),
the memory bank (MoCo; out of the spec's scope, §1.1), encoder and cached levels (none).

The loss module is imported without lightly's package ``__init__`` (which imports torchvision and
its data and API layers, none of which the loss uses). Its memory bank module imports
``lightly.models.utils`` (which imports torchvision) for one function used only to enqueue into a
memory bank of size > 0; that module is replaced by a placeholder that raises if anything in it is
ever used (adapter limit: lightly's models need torchvision, which this environment does not have).

Run: ``infonce-conformance run --adapter adapters/peers/peer_lightly.py:nt_xent --world-sizes 1,2``
"""

from __future__ import annotations

import sys
import types
from typing import Any

import numpy as np
from _peer_support import grad_or_zero, import_module_only, tensor

from infonce_spec.conformance.protocol import Capabilities, EmbeddingCase, LossGrads, RankCase, nt_xent


def _models_utils_placeholder() -> None:
    """``lightly.models.utils`` without torchvision: any use raises (see the module docstring)."""

    class _Placeholder(types.ModuleType):
        def __getattr__(self, name: str) -> Any:
            if name.startswith("__"):
                raise AttributeError(name)
            raise ImportError(
                f"lightly.models.utils.{name} needs torchvision (not installed); the peer adapter "
                "uses NTXentLoss without a memory bank only"
            )

    sys.modules.setdefault("lightly.models.utils", _Placeholder("lightly.models.utils"))


import_module_only("lightly", "utils.dist")  # registers the package stubs first
_models_utils_placeholder()
NTXentLoss = import_module_only("lightly", "loss.ntx_ent_loss").NTXentLoss


class LightlyNTXentAdapter:
    def __init__(self, dtype: str = "float64") -> None:
        self.dtype = dtype
        self.capabilities = Capabilities(
            name=f"lightly NTXentLoss ({dtype})",
            configurations=nt_xent(),
            similarities=frozenset({"cos"}),
            max_k=1,
            dtype=dtype,
            data_parallel=True,
        )

    def _run(
        self, queries: np.ndarray, docs: np.ndarray, config: Any, gather: bool, device: str
    ) -> LossGrads:
        q = tensor(queries, self.dtype, device, grad=True)
        p = tensor(docs[0], self.dtype, device, grad=True)
        loss = NTXentLoss(temperature=1.0 / config.scale, gather_distributed=gather)(q, p)
        loss.backward()
        return LossGrads(float(loss.detach()), grad_or_zero(q), grad_or_zero(p)[None])

    def embeddings(self, case: EmbeddingCase) -> LossGrads:
        return self._run(case.queries, case.docs, case.config, False, "cpu")

    def rank_embeddings(self, case: RankCase) -> LossGrads:
        """``gather_distributed=True`` in the suite's process group (DP-1 .. DP-3)."""
        return self._run(case.queries, case.docs, case.config, True, case.device)


ntxent = LightlyNTXentAdapter("float64")
nt_xent_float32 = LightlyNTXentAdapter("float32")
