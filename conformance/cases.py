"""Cases as plain dicts, and their reproducer files (``.npz`` arrays + JSON metadata).

A case is a ``dict[str, Any]`` of NumPy arrays, a :class:`~infonce_spec.reference.Config` under
``"config"`` (and possibly others under keys ending in ``config``), and JSON scalars. The reproducer
holds exactly the inputs the adapter saw, so a replay is bit-for-bit the same call.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from infonce_spec.reference import Config

__all__ = ["config_from_dict", "config_to_dict", "config_with_directions", "load_case", "save_case"]

_META_KEY = "__meta__"


def config_to_dict(config: Config) -> dict[str, Any]:
    return {
        "directions": list(config.directions),
        "partition_mode": config.partition_mode,
        "scale": config.scale,
        "similarity": config.similarity,
        "hardness_mode": config.hardness_mode,
        "hardness_strength": config.hardness_strength,
    }


def config_with_directions(config: Config, directions: tuple[str, ...]) -> Config:
    """``config`` whose ``directions`` is exactly ``directions`` (any order, repeats kept; DIR-2).

    :class:`Config` canonicalises on construction; this copy is for handing to adapters only (the
    reference never needs it: it treats directions as a set)."""
    return config.with_given_directions(directions)


def config_from_dict(fields: dict[str, Any]) -> Config:
    fields = dict(fields)
    directions = tuple(fields["directions"])
    fields["directions"] = directions
    config = Config(**fields)
    if config.directions != directions:
        config = config_with_directions(config, directions)
    return config


def _encode(value: Any) -> Any:
    if isinstance(value, Config):
        return {"__config__": config_to_dict(value)}
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v) for v in value]}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and "__config__" in value:
        return config_from_dict(value["__config__"])
    if isinstance(value, dict) and "__tuple__" in value:
        return tuple(_decode(v) for v in value["__tuple__"])
    return value


def save_case(path: str | Path, case: dict[str, Any], meta: dict[str, Any]) -> Path:
    """Write ``case`` and ``meta`` (property, clause, adapter, ...) to ``path`` (``.npz``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.asarray(v) for k, v in case.items() if isinstance(v, np.ndarray)}
    scalars = {k: _encode(v) for k, v in case.items() if not isinstance(v, np.ndarray)}
    blob = json.dumps({"meta": meta, "scalars": scalars}, sort_keys=True)
    with path.open("wb") as fh:
        np.savez(fh, **arrays, **{_META_KEY: np.asarray(blob)})
    return path


def load_case(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(case, meta)`` from a reproducer written by :func:`save_case`."""
    with np.load(Path(path), allow_pickle=False) as npz:
        blob = json.loads(str(npz[_META_KEY]))
        case: dict[str, Any] = {k: np.array(npz[k]) for k in npz.files if k != _META_KEY}
    case.update({k: _decode(v) for k, v in blob["scalars"].items()})
    return case, blob["meta"]
