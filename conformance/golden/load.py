"""Golden vectors: the loader (cases found through MANIFEST.json, never by globbing)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from .format import FORMAT, decode


# loader
def _shipped_vectors() -> Path | None:
    """The vectors that come with the package: ``infonce_spec/vectors`` in a wheel, ``spec/vectors``
    of the checkout in an editable install (pyproject maps the one onto the other)."""
    found = importlib.util.find_spec("infonce_spec.vectors")
    locations = list(found.submodule_search_locations or []) if found is not None else []
    locations.append(str(Path(__file__).resolve().parents[2] / "spec" / "vectors"))  # a source checkout
    for location in locations:
        if (Path(location) / "MANIFEST.json").is_file():
            return Path(location)
    return None


def default_vectors_dir() -> Path:
    """``$INFONCE_VECTORS``, else the vectors shipped with the package (from any working folder)."""
    if os.environ.get("INFONCE_VECTORS"):
        return Path(os.environ["INFONCE_VECTORS"])
    shipped = _shipped_vectors()
    if shipped is None:
        raise FileNotFoundError(
            "the golden vectors are not installed with infonce_spec (package infonce_spec.vectors); "
            "pass --vectors DIR or set INFONCE_VECTORS"
        )
    return shipped


def load_cases(vectors: Path | str | None = None) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    """The manifest and every ``(file name, case)`` it lists, in manifest order (numbers decoded)."""
    path = Path(vectors) if vectors is not None else default_vectors_dir()
    manifest_path = path if path.is_file() else path / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{manifest_path} is not a {FORMAT} manifest")
    cases = []
    for entry in manifest["files"]:
        data = decode(json.loads((manifest_path.parent / entry["path"]).read_text()))
        by_id = {c["id"]: c for c in data["cases"]}
        for listed in entry["cases"]:
            if listed["id"] not in by_id:
                raise ValueError(f"{entry['path']} lacks case {listed['id']} listed in the manifest")
            cases.append((entry["path"], by_id[listed["id"]]))
    return manifest, cases
