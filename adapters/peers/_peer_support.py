"""Shared helpers of the peer adapters (``adapters/peers/``): tensors in and out, and importing one
module of a library without running its package's ``__init__`` (which may import heavy optional
dependencies, e.g. torchvision, that the loss itself never uses).

The peer adapters are loaded by file path (``adapters/peers/peer_lightly.py:nt_xent``); this
folder is not a package of the distribution and nothing in the project imports it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from _import_only import import_module_only

__all__ = ["TORCH_DTYPES", "grad_or_zero", "import_module_only", "numpy64", "tensor"]

TORCH_DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16}


def tensor(x: Any, dtype: str, device: str = "cpu", *, grad: bool = False) -> torch.Tensor:
    """A leaf tensor of the adapter's dtype (the suite's inputs are already representable in it)."""
    return torch.tensor(np.asarray(x), dtype=TORCH_DTYPES[dtype], device=device, requires_grad=grad)


def numpy64(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def grad_or_zero(t: torch.Tensor) -> np.ndarray:
    """``t.grad`` as float64 NumPy, zeros when nothing reached ``t`` (an input the loss ignores)."""
    return numpy64(t.grad if t.grad is not None else torch.zeros_like(t))
