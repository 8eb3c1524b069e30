"""Conformant torch implementations of the InfoNCE / GTE loss family (spec/infonce-spec.md).

* :func:`infonce_loss` -- the loss on embeddings; autograd gives the gradients.
* :class:`InfoNCELoss` -- an ``nn.Module`` around an encoder (uncached).
* :class:`CachedInfoNCELoss` -- the same loss with GradCache (CACHE-1 .. CACHE-5).
* :func:`chunked_loss_and_grads` -- the loss and embedding gradients in row chunks (CACHE-5).
* :func:`all_gather_with_grad` -- the column gather of the data-parallel layout (DP-1, DP-3).

This package is an independent implementation: it never imports the float64 reference (the oracle).
Precision: float16/bfloat16 embeddings are upcast to float32 for the whole loss stage; float32 and
float64 run in their own precision (see docs/torch.md).
"""

from .cached import CachedInfoNCELoss
from .chunked import ChunkedResult, chunked_loss_and_grads
from .config import ALL_DIRECTIONS, HARDNESS_MODES, PARTITION_MODES, SIMILARITIES, LossConfig
from .functional import infonce_loss, loss_from_config
from .gather import all_gather_with_grad, check_equal_local_batch, process_group_info
from .layout import compute_dtype
from .modules import InfoNCELoss

__all__ = [
    "ALL_DIRECTIONS",
    "HARDNESS_MODES",
    "PARTITION_MODES",
    "SIMILARITIES",
    "CachedInfoNCELoss",
    "ChunkedResult",
    "InfoNCELoss",
    "LossConfig",
    "all_gather_with_grad",
    "check_equal_local_batch",
    "chunked_loss_and_grads",
    "compute_dtype",
    "infonce_loss",
    "loss_from_config",
    "process_group_info",
]
