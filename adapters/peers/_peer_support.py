"""Shared helpers of the peer adapters (``adapters/peers/``): tensors in and out, and importing one
module of a library without running its package's ``__init__`` (which may import heavy optional
dependencies, e.g. torchvision, that the loss itself never uses).

The peer adapters are loaded by file path (``adapters/peers/peer_lightly.py:nt_xent``); this
folder is not a package of the distribution and nothing in the project imports it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch

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


def import_module_only(package: str, module: str) -> types.ModuleType:
    """Import ``package.module`` with ``package`` and every subpackage of it registered as bare
    namespaces over their real folders, so that none of their ``__init__`` files runs. The module's
    own absolute imports of sibling modules (``from package.utils import dist``) still work."""
    full = f"{package}.{module}"
    if full in sys.modules:
        return sys.modules[full]
    registered = sys.modules.get(package)
    if registered is not None and getattr(registered, "__path__", None):
        root = Path(next(iter(registered.__path__)))
    else:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ImportError(f"{package} is not installed")
        root = Path(next(iter(spec.submodule_search_locations)))
    for init in sorted(root.rglob("__init__.py")):
        name = ".".join((package, *init.parent.relative_to(root).parts))
        if name not in sys.modules:
            stub = types.ModuleType(name)
            stub.__path__ = [str(init.parent)]  # type: ignore[attr-defined]
            sys.modules[name] = stub
    return importlib.import_module(full)
