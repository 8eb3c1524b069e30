"""Peer adapter: info-nce-pytorch's ``InfoNCE`` (``from info_nce import InfoNCE``).

``InfoNCE(temperature)(query, positive_key)`` with no ``negative_keys`` scores every query against
every positive key (the others' positives are its negatives) with cosine similarity and averages the
cross-entropy: standard InfoNCE, ``query_to_doc`` alone, ``joint`` (QD-1, PART-2), ``cos`` (it
normalises every input itself), scale = 1/temperature, K = 1.

Not claimed, with the reason:

* hard negatives (K >= 2): its ``negative_keys`` are scored against each query *without* the other
  queries' positives (``[q.p_i, q.n_*]``), which is not the spec's query_to_doc row (QD-1 takes every
  document of the batch); K = 1 is the configuration where the two agree;
* ``dot``: the library always normalises;
* dL/dscale: ``temperature`` is a plain float;
* the encoder, cached and data-parallel levels: the library has none of them.

Run: ``infonce-conformance run --adapter adapters/peers/peer_info_nce.py:info_nce``
"""

from __future__ import annotations

from _peer_support import grad_or_zero, tensor
from info_nce import InfoNCE

from infonce_spec.conformance.protocol import Capabilities, EmbeddingCase, LossGrads, infonce


class InfoNCEAdapter:
    def __init__(self, dtype: str = "float64") -> None:
        self.dtype = dtype
        self.capabilities = Capabilities(
            name=f"info-nce-pytorch InfoNCE ({dtype})",
            configurations=infonce(),
            similarities=frozenset({"cos"}),
            max_k=1,
            dtype=dtype,
        )

    def embeddings(self, case: EmbeddingCase) -> LossGrads:
        q = tensor(case.queries, self.dtype, grad=True)
        p = tensor(case.docs[0], self.dtype, grad=True)
        loss = InfoNCE(temperature=1.0 / case.config.scale)(q, p)
        loss.backward()
        return LossGrads(float(loss.detach()), grad_or_zero(q), grad_or_zero(p)[None])


info_nce = InfoNCEAdapter("float64")
info_nce_float32 = InfoNCEAdapter("float32")
