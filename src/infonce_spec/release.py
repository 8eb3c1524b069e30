"""The release: one version for the spec and the package, and the SHA-256 of the normative text.

Spec §16 is the policy. In short:

* :data:`SPEC_VERSION` -- the version of ``spec/infonce-spec.md`` (``MAJOR.MINOR.PATCH``, §16.1).
* :data:`PACKAGE_VERSION` -- the Python package's version: the spec version, or
  ``<spec version>.postN`` (PEP 440) for a release that changes the software, the golden vectors
  or the documentation but not the text. It always starts with :data:`SPEC_VERSION`.
* :data:`SPEC_SHA256` -- the SHA-256 of the text of :data:`SPEC_VERSION` (§16.2): the bytes of
  ``spec/infonce-spec.md``, whole, UTF-8, every CR LF read as LF. ``spec/CHANGELOG.md`` records it
  in the entry of the version; ``tests/test_release.py`` fails when the text, this constant and
  that entry disagree.

This module imports nothing of the project; reports and the command line call :func:`release_line`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = [
    "PACKAGE_VERSION",
    "SPEC_SHA256",
    "SPEC_VERSION",
    "citation",
    "release_line",
    "spec_sha256",
]

SPEC_VERSION = "1.1.0"
PACKAGE_VERSION = "1.1.0"
SPEC_SHA256 = "f84eec57d2ffde709208581e90791f16f41fbd08bce4317516f25eae09e746cd"


def spec_sha256(path: Path | str) -> str:
    """The SHA-256 (hex) of a copy of the spec text, as §16.2 defines it (CR LF read as LF)."""
    return hashlib.sha256(Path(path).read_bytes().replace(b"\r\n", b"\n")).hexdigest()


def release_line() -> str:
    """``infonce-spec 1.1.0 (sha256 <64 hex digits>)``: what ``--version`` and every report print."""
    return f"infonce-spec {SPEC_VERSION} (sha256 {SPEC_SHA256})"


def citation(clause: str | None = None) -> str:
    """The citation form of §16.4: ``infonce-spec 1.1.0 (sha256 1a2b3c4d...), clause MASK-DD-2``."""
    text = f"infonce-spec {SPEC_VERSION} (sha256 {SPEC_SHA256[:8]}...)"
    return f"{text}, clause {clause}" if clause else text
