"""Fixtures shared by the whole test session.

A conformance run is the expensive thing here: a run that several tests read is one module-scoped
fixture in the test file of its readers (``./run test`` distributes whole files over its pytest-xdist
workers, ``--dist loadfile``, so each is made once), and every in-process run of the session takes
its workers from one forkserver (:func:`one_forkserver_per_session`). Timings belong in
``benchmarks/``, never in a test's asserts.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import configuration

from infonce_spec.conformance.harnesses.processes import shared_forkserver

# hypothesis keeps its example database and constants cache in the current folder unless told
# otherwise: a plain `python -m pytest` from the checkout must not write `.hypothesis/` there.
os.environ.setdefault(
    "HYPOTHESIS_STORAGE_DIRECTORY", str(Path(tempfile.gettempdir()) / "infonce-spec-hypothesis")
)
configuration.set_hypothesis_home_dir(os.environ["HYPOTHESIS_STORAGE_DIRECTORY"])


@pytest.fixture(scope="session", autouse=True)
def one_forkserver_per_session() -> Iterator[None]:
    """The data-parallel pools and call workers of every in-process run come from one forkserver per
    test session (per pytest-xdist worker): a start imports torch, ``torch.distributed`` and
    ``torch._dynamo``, seconds each time. Each run still stops its own pools and workers."""
    with shared_forkserver():
        yield
