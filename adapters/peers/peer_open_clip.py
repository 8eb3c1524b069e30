"""Peer adapter: open_clip's ``ClipLoss`` (module ``open_clip.loss``).

``ClipLoss(...)(image_features, text_features, logit_scale)`` with queries = image features and
``docs[0]`` = text features: ``(CE(logits_per_image) + CE(logits_per_text)) / 2`` with
``logits = logit_scale * image @ text.T`` -- ``{query_to_doc, doc_to_query}``, ``per_direction``
(PART-3; ``clip_like()``), K = 1, ``dot`` (the model normalises the features before the loss, so
``cos`` is not the loss's to claim), scale = ``logit_scale`` (a tensor: dL/dscale, SCALE-2).

Data parallel (``world_size``, ``rank`` from the suite's process group), one adapter per option pair:

* ``clip_loss`` -- ``local_loss=False, gather_with_grad=False`` (open_clip's defaults): every rank
  computes the global logits, its own features kept live;
* ``clip_loss_local`` -- ``local_loss=True``: each rank scores its local rows against the gathered
  features (its own L_r, DP-2);
* ``clip_loss_gather_grad`` / ``clip_loss_local_gather_grad`` -- the same with
  ``gather_with_grad=True`` (``torch.distributed.nn.all_gather``).

Not claimed: the joint partition and one direction alone (the loss is always symmetric), ``cos``,
hard negatives, the encoder and cached levels (none). The loss module is imported without
open_clip's package ``__init__`` (models, transforms, torchvision).

Run: ``infonce-conformance run --adapter adapters/peers/peer_open_clip.py:clip_loss --world-sizes 1,2``
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from _peer_support import TORCH_DTYPES, grad_or_zero, import_module_only, tensor

from infonce_spec.conformance.protocol import Capabilities, EmbeddingCase, LossGrads, RankCase, clip_like

ClipLoss = import_module_only("open_clip", "loss").ClipLoss


class ClipLossAdapter:
    def __init__(self, *, local_loss: bool, gather_with_grad: bool, dtype: str = "float64") -> None:
        self.dtype = dtype
        self.options = {"local_loss": local_loss, "gather_with_grad": gather_with_grad}
        options = ", ".join(f"{k}={v}" for k, v in self.options.items())
        self.capabilities = Capabilities(
            name=f"open_clip ClipLoss({options}) ({dtype})",
            configurations=clip_like(),
            similarities=frozenset({"dot"}),
            max_k=1,
            dtype=dtype,
            grad_scale=True,
            data_parallel=True,
        )

    def _run(
        self, queries: np.ndarray, docs: np.ndarray, config: Any, rank: int, world_size: int, device: str
    ) -> LossGrads:
        image = tensor(queries, self.dtype, device, grad=True)
        text = tensor(docs[0], self.dtype, device, grad=True)
        scale_dtype = torch.promote_types(TORCH_DTYPES[self.dtype], torch.float32)  # a parameter's dtype
        logit_scale = torch.tensor(float(config.scale), dtype=scale_dtype, device=device, requires_grad=True)
        loss_fn = ClipLoss(rank=rank, world_size=world_size, **self.options)
        loss = loss_fn(image, text, logit_scale)
        loss.backward()
        return LossGrads(
            float(loss.detach()),
            grad_or_zero(image),
            grad_or_zero(text)[None],
            float(logit_scale.grad) if logit_scale.grad is not None else 0.0,
        )

    def embeddings(self, case: EmbeddingCase) -> LossGrads:
        return self._run(case.queries, case.docs, case.config, 0, 1, "cpu")

    def rank_embeddings(self, case: RankCase) -> LossGrads:
        return self._run(case.queries, case.docs, case.config, case.rank, case.world_size, case.device)


clip_loss = ClipLossAdapter(local_loss=False, gather_with_grad=False)
clip_loss_local = ClipLossAdapter(local_loss=True, gather_with_grad=False)
clip_loss_gather_grad = ClipLossAdapter(local_loss=False, gather_with_grad=True)
clip_loss_local_gather_grad = ClipLossAdapter(local_loss=True, gather_with_grad=True)
clip_loss_float32 = ClipLossAdapter(local_loss=False, gather_with_grad=False, dtype="float32")
