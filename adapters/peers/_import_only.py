"""Importing one module of a library without running its package's ``__init__`` (which may import
heavy optional dependencies, e.g. torchvision or nmslib, that the loss itself never uses).

Torch-free, so that peer adapters of other frameworks (``peer_tf_similarity.py``) can use it;
:mod:`_peer_support` re-exports it for the torch peers.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

__all__ = ["import_module_only"]


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
