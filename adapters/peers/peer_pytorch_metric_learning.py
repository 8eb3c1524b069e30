"""Peer adapter: pytorch-metric-learning's ``NTXentLoss`` through its ``SelfSupervisedLoss`` pairing.

``SelfSupervisedLoss(NTXentLoss(temperature, distance=...), symmetric=...)(embeddings, ref_emb)``
with queries = ``embeddings`` and ``docs[0]`` = ``ref_emb`` (spec §14.1):

* ``symmetric=True`` (its default): 2N anchors, each against every other vector, its pair the
  target -- all four directions, ``per_anchor`` (PART-5, SimCLR's NT-Xent);
* ``symmetric=False``: only ``embeddings`` are anchors, against every ``ref_emb`` -- standard
  InfoNCE, ``query_to_doc`` alone, ``joint``.

So it claims exactly those two configurations (``nt_xent() | infonce()``), the adapter picking
``symmetric`` from the case. ``cos`` is its default distance ``CosineSimilarity()``, ``dot`` is
``DotProductSimilarity(normalize_embeddings=False)`` (its distances normalise by default); scale = 1/temperature; K = 1 (one reference per embedding).

Not claimed: hard negatives (K >= 2: no such input), dL/dscale (``temperature`` is a float), the
encoder and cached levels (none), data parallel (its ``DistributedLossWrapper`` is not wired here).

Run: ``infonce-conformance run --adapter adapters/peers/peer_pytorch_metric_learning.py:ntxent``
"""

from __future__ import annotations

from _peer_support import grad_or_zero, tensor
from pytorch_metric_learning.distances import CosineSimilarity, DotProductSimilarity
from pytorch_metric_learning.losses import NTXentLoss, SelfSupervisedLoss

from infonce_spec.conformance.protocol import (
    Capabilities,
    EmbeddingCase,
    LossGrads,
    infonce,
    nt_xent,
)

#: Its distances normalise the embeddings unless told not to (``normalize_embeddings=True`` is the
#: default of every distance, ``DotProductSimilarity`` included): ``dot`` is the un-normalised one.
DISTANCES = {
    "cos": lambda: CosineSimilarity(),
    "dot": lambda: DotProductSimilarity(normalize_embeddings=False),
}


class NTXentAdapter:
    def __init__(self, dtype: str = "float64") -> None:
        self.dtype = dtype
        self.capabilities = Capabilities(
            name=f"pytorch-metric-learning SelfSupervisedLoss(NTXentLoss) ({dtype})",
            configurations=nt_xent() | infonce(),
            similarities=frozenset(DISTANCES),
            max_k=1,
            dtype=dtype,
        )

    def embeddings(self, case: EmbeddingCase) -> LossGrads:
        config = case.config
        symmetric = config.partition_mode == "per_anchor"  # nt_xent(); infonce() is joint
        q = tensor(case.queries, self.dtype, grad=True)
        p = tensor(case.docs[0], self.dtype, grad=True)
        inner = NTXentLoss(temperature=1.0 / config.scale, distance=DISTANCES[config.similarity]())
        loss = SelfSupervisedLoss(inner, symmetric=symmetric)(q, p)
        loss.backward()
        return LossGrads(float(loss.detach()), grad_or_zero(q), grad_or_zero(p)[None])


ntxent = NTXentAdapter("float64")
nt_xent_float32 = NTXentAdapter("float32")
